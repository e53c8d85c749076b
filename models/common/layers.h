// Transformer blocks on the CPU reference path, written once for every model: linear, LayerNorm,
// an attention block and an FFN block, each pre-LN (Whisper: h += f(LN(h))) or post-LN (BERT:
// h = LN(h + f(h))). They take a small context (the scratch buffers and the LayerNorm epsilon) and
// the weights as bound from the weight table; the model supplies where keys and values come from.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "models/common/weight_table.h"
#include "runtime/gemm.h"

namespace flurry::models {

// Scratch the blocks write into, sized by the model for the most rows one call processes. Nothing in
// it outlives a call.
struct CpuContext {
  float eps = 1e-5f;        // LayerNorm epsilon
  float* normed = nullptr;  // [rows, d]
  float* qkv = nullptr;     // [rows, in_proj.out] (3d for a fused self-attention projection)
  float* attn = nullptr;    // [rows, d]
  float* proj = nullptr;    // [rows, d]
  float* ffn = nullptr;     // [rows, ffn_dim]
  float* scores = nullptr;  // attention_scratch_floats(rows, kv_len)
};

// The buffers behind a CpuContext, owned by a model's state and sized once for the most rows one
// call processes: qkv_cols is the widest in_proj output (3d for fused self-attention), score_floats
// attention_scratch_floats of the largest attention call.
struct CpuBuffers {
  std::vector<float> normed, qkv, attn, proj, ffn, scores;
  void resize(int64_t rows, int64_t d, int64_t qkv_cols, int64_t ffn_dim, int64_t score_floats);
  CpuContext context(float eps);
};

// y[rows, l.out] = x[rows, l.in] W^T (+ b, then the epilogue's activation). A bias-free linear takes
// only Epilogue::None or Bias (there is nothing to add).
void linear(const LinearW& l, const float* x, float* y, int64_t rows, Epilogue act = Epilogue::Bias);

// y[rows, d] = LN(x) * gamma + beta.
void layernorm(const LayerNormW& ln, const float* x, float* y, int64_t rows, int64_t d, float eps);

enum class NormPlacement { Pre, Post };

// The attention's weights: in_proj is the fused [3d, d] q|k|v projection of a self-attention or the
// [d, d] q projection when keys and values come from elsewhere (cross-attention).
struct AttentionWeights {
  const LayerNormW* ln = nullptr;
  const LinearW* in_proj = nullptr;
  const LinearW* out_proj = nullptr;
};

struct AttentionOptions {
  NormPlacement norm = NormPlacement::Pre;
  int64_t heads = 0, head_dim = 0;
  float scale = 1.0f;  // 1 when head_dim^-0.5 is folded into q at load time
  bool causal = false;  // query i sees keys up to its own position (a decoder)
  const uint8_t* key_valid = nullptr;  // [kv_len] non-zero = attend (a padded batch's key mask)
};

// Keys and values the queries attend over, rows of stride `ld`.
struct KeyValues {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t ld = 0, len = 0;
};
// Given the projected rows (ctx.qkv, [rows, in_proj.out]), says where the keys and values are:
// inside the projection (self-attention), in a cache it has just appended to (a decoder), or in a
// buffer computed once (cross-attention).
using KeyValueSource = std::function<KeyValues(const float* projected, int64_t ld)>;

// Pre-LN: h += out_proj(attention(in_proj(LN(h)))); post-LN: h = LN(h + out_proj(attention(in_proj(h)))).
// h: [rows, d], the residual stream, updated in place. Queries are the first d columns of the
// projection.
void attention_block(const AttentionWeights& w, const AttentionOptions& o, float* h, int64_t rows, int64_t d,
                     const KeyValueSource& kv, const CpuContext& ctx);

// Self-attention whose keys and values are columns d and 2d of the fused projection.
KeyValueSource self_attention_kv(int64_t d, int64_t rows);

// Pre-LN: h += fc2(gelu(fc1(LN(h)))); post-LN: h = LN(h + fc2(gelu(fc1(h)))). GELU is the exact erf
// form (Whisper, BERT).
void ffn_block(const LayerNormW& ln, const LinearW& fc1, const LinearW& fc2, NormPlacement norm, float* h,
               int64_t rows, int64_t d, const CpuContext& ctx);

}  // namespace flurry::models
