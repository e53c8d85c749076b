// Transformer blocks on the CPU reference path (see layers.h).
#include "models/common/layers.h"

#include <cstring>

#include "runtime/check.h"
#include "runtime/ref/ops.h"

namespace flurry::models {
namespace {

// Post-LN tail: h = LN(h + add). The sum goes through ctx.normed, so h and the output never alias
// inside layernorm_cpu.
void add_and_norm(const LayerNormW& ln, float* h, const float* add, int64_t rows, int64_t d, const CpuContext& ctx) {
  layernorm_cpu(h, add, nullptr, ln.gamma.data(), ln.beta.data(), ctx.normed, rows, d, ctx.eps);
  std::memcpy(h, ctx.normed, sizeof(float) * static_cast<size_t>(rows * d));
}

}  // namespace

void CpuBuffers::resize(int64_t rows, int64_t d, int64_t qkv_cols, int64_t ffn_dim, int64_t score_floats) {
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  normed.resize(sz(rows * d));
  qkv.resize(sz(rows * qkv_cols));
  attn.resize(sz(rows * d));
  proj.resize(sz(rows * d));
  ffn.resize(sz(rows * ffn_dim));
  scores.resize(sz(score_floats));
}

CpuContext CpuBuffers::context(float eps) {
  CpuContext ctx;
  ctx.eps = eps;
  ctx.normed = normed.data();
  ctx.qkv = qkv.data();
  ctx.attn = attn.data();
  ctx.proj = proj.data();
  ctx.ffn = ffn.data();
  ctx.scores = scores.data();
  return ctx;
}

void linear(const LinearW& l, const float* x, float* y, int64_t rows, Epilogue act) {
  if (l.b.empty()) {
    FLURRY_CHECK(act == Epilogue::None || act == Epilogue::Bias, "linear: activation on a bias-free linear");
    linear_cpu(x, l.w.data(), nullptr, y, rows, l.in, l.out, Epilogue::None);
  } else {
    linear_cpu(x, l.w.data(), l.b.data(), y, rows, l.in, l.out, act);
  }
}

void layernorm(const LayerNormW& ln, const float* x, float* y, int64_t rows, int64_t d, float eps) {
  layernorm_cpu(x, nullptr, nullptr, ln.gamma.data(), ln.beta.data(), y, rows, d, eps);
}

KeyValueSource self_attention_kv(int64_t d, int64_t rows) {
  return [d, rows](const float* projected, int64_t ld) {
    return KeyValues{projected + d, projected + 2 * d, ld, rows};
  };
}

void attention_block(const AttentionWeights& w, const AttentionOptions& o, float* h, int64_t rows, int64_t d,
                     const KeyValueSource& kv, const CpuContext& ctx) {
  const bool pre = o.norm == NormPlacement::Pre;
  const float* x = h;
  if (pre) {
    layernorm(*w.ln, h, ctx.normed, rows, d, ctx.eps);
    x = ctx.normed;
  }
  linear(*w.in_proj, x, ctx.qkv, rows);
  const KeyValues keys = kv(ctx.qkv, w.in_proj->out);
  AttentionArgs a;
  a.q = ctx.qkv;
  a.q_ld = w.in_proj->out;
  a.k = keys.k;
  a.v = keys.v;
  a.k_ld = a.v_ld = keys.ld;
  a.out = ctx.attn;
  a.out_ld = d;
  a.heads = o.heads;
  a.head_dim = o.head_dim;
  a.q_len = rows;
  a.kv_len = keys.len;
  a.scale = o.scale;
  a.causal = o.causal;
  a.key_valid = o.key_valid;
  attention_cpu(a, ctx.scores);
  linear(*w.out_proj, ctx.attn, ctx.proj, rows);
  if (pre) {
    add_cpu(h, ctx.proj, h, rows * d);
  } else {
    add_and_norm(*w.ln, h, ctx.proj, rows, d, ctx);
  }
}

void ffn_block(const LayerNormW& ln, const LinearW& fc1, const LinearW& fc2, NormPlacement norm, float* h,
               int64_t rows, int64_t d, const CpuContext& ctx) {
  const bool pre = norm == NormPlacement::Pre;
  const float* x = h;
  if (pre) {
    layernorm(ln, h, ctx.normed, rows, d, ctx.eps);
    x = ctx.normed;
  }
  linear(fc1, x, ctx.ffn, rows, Epilogue::BiasGeluErf);
  linear(fc2, ctx.ffn, ctx.proj, rows);
  if (pre) {
    add_cpu(h, ctx.proj, h, rows * d);
  } else {
    add_and_norm(ln, h, ctx.proj, rows, d, ctx);
  }
}

}  // namespace flurry::models
