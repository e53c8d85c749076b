// The shared GPU self-attention block (models/common/gpu/layers.h) against the CPU reference ops it
// composes (linear_cpu, attention_cpu per sequence, linear_cpu): fp16 and bf16, an unpadded varlen
// batch with odd lengths (1, 7, 33, 64, 100 rows: BERT's path), a padded batch (Whisper's encoder)
// and causal masking; fresh random inputs, poisoned outputs, a relative-norm bound per dtype.
//
// The shared decoder attention blocks (models/common/gpu/decoder_attention.h) against the CPU
// attention_block (models/common/layers.h) run per sequence, pre-LN, with its key source appending
// to a CPU copy of the cache: many live slots out of order at odd positions, one live slot, every
// dispatch path (one batched decode_attention over consecutive slots; per-sequence decode_attention
// and flash_attention for prefill chunks of more than eight rows; cross-attention queries packed per
// shared source, runs of consecutive sources batched). The cache rows past each slot's length and
// the slots nobody uses hold NaN before the call: the attention must not read them and the append
// must leave them so; the appended rows must equal the CPU cache.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "models/common/gpu/decoder_attention.h"
#include "models/common/gpu/layers.h"
#include "models/common/layers.h"
#include "runtime/ref/ops.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry::models {
namespace {

struct Case {
  std::vector<int> lens;
  bool varlen = true;
  bool causal = false;
};

void run_case(const Case& c, DType t, std::mt19937_64& rng) {
  const int heads = 2, head_dim = 64;
  const int64_t d = heads * head_dim;
  int64_t rows = 0;
  int max_len = 0;
  for (int n : c.lens) {
    rows += n;
    max_len = std::max(max_len, n);
  }
  std::vector<float> x = test::random_vector(static_cast<size_t>(rows * d), rng);
  std::vector<float> wqkv = test::random_vector(static_cast<size_t>(3 * d * d), rng, -0.15f, 0.15f);
  std::vector<float> bqkv = test::random_vector(static_cast<size_t>(3 * d), rng, -0.1f, 0.1f);
  std::vector<float> wo = test::random_vector(static_cast<size_t>(d * d), rng, -0.15f, 0.15f);
  std::vector<float> bo = test::random_vector(static_cast<size_t>(d), rng, -0.1f, 0.1f);
  for (auto* v : {&x, &wqkv, &bqkv, &wo, &bo}) test::round_inplace(*v, t);

  // CPU reference in fp32.
  std::vector<float> qkv(static_cast<size_t>(rows * 3 * d)), attn(static_cast<size_t>(rows * d)),
      ref(static_cast<size_t>(rows * d));
  linear_cpu(x.data(), wqkv.data(), bqkv.data(), qkv.data(), rows, d, 3 * d, Epilogue::Bias);
  int64_t r0 = 0;
  for (int n : c.lens) {
    AttentionArgs a;
    a.q = qkv.data() + r0 * 3 * d;
    a.k = a.q + d;
    a.v = a.q + 2 * d;
    a.out = attn.data() + r0 * d;
    a.q_ld = a.k_ld = a.v_ld = 3 * d;
    a.out_ld = d;
    a.heads = heads;
    a.head_dim = head_dim;
    a.q_len = a.kv_len = n;
    a.scale = 0.125f;
    a.causal = c.causal;
    attention_cpu(a);
    r0 += n;
  }
  linear_cpu(attn.data(), wo.data(), bo.data(), ref.data(), rows, d, d, Epilogue::Bias);

  const size_t elt = dtype_size(t);
  test::DeviceBuffer dx(static_cast<size_t>(rows * d) * elt), dwqkv(wqkv.size() * elt), dbqkv(bqkv.size() * elt),
      dwo(wo.size() * elt), dbo(bo.size() * elt), dqkv(qkv.size() * elt), dattn(attn.size() * elt),
      dout(ref.size() * elt), dcu(sizeof(int32_t) * (c.lens.size() + 1));
  test::upload(dx.get(), x, t);
  test::upload(dwqkv.get(), wqkv, t);
  test::upload(dbqkv.get(), bqkv, t);
  test::upload(dwo.get(), wo, t);
  test::upload(dbo.get(), bo, t);
  std::vector<int32_t> cu{0};
  for (int n : c.lens) cu.push_back(cu.back() + n);
  CUDA_CHECK(cudaMemcpy(dcu.get(), cu.data(), cu.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  dqkv.poison();
  dattn.poison();
  dout.poison();

  GpuContext ctx;
  ctx.lt = &test::shared_gemm_lt();
  ctx.gemm_ws = test::shared_gemm_workspace().get();
  ctx.gemm_ws_bytes = test::shared_gemm_workspace().size();
  ctx.dtype = t;
  ctx.d = d;
  GpuLinear lq{dwqkv.get(), dbqkv.get(), d, 3 * d};
  GpuLinear lo{dwo.get(), dbo.get(), d, d};
  GpuAttentionShape s;
  s.heads = heads;
  s.head_dim = head_dim;
  s.batch = static_cast<int>(c.lens.size());
  s.max_len = max_len;
  s.cu_seqlens = c.varlen ? static_cast<const int32_t*>(dcu.get()) : nullptr;
  s.scale = 0.125f;
  s.causal = c.causal;
  gpu_self_attention(ctx, lq, lo, s, dx.get(), dqkv.get(), dattn.get(), dout.get(), rows);
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> out = test::download(dout.get(), ref.size(), t);
  EXPECT_TRUE(test::close_in_norm("gpu_self_attention", out, ref, test::rel_norm_bound(t)));
}

TEST(GpuLayers, SelfAttentionMatchesTheCpuReference) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("GpuLayers.SelfAttention");
  for (DType t : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(t));
    run_case({{1, 7, 33, 64, 100}, true, false}, t, rng);   // BERT: unpadded varlen batch
    run_case({{48, 48, 48}, false, false}, t, rng);        // Whisper's encoder: padded, full windows
    run_case({{5, 40}, true, true}, t, rng);               // causal
  }
  // A padded batch whose rows do not add up is refused before any launch.
  GpuContext ctx;
  ctx.d = 128;
  GpuLinear lq{nullptr, nullptr, 128, 384}, lo{nullptr, nullptr, 128, 128};
  GpuAttentionShape s;
  s.heads = 2;
  s.head_dim = 64;
  s.batch = 2;
  s.max_len = 10;
  EXPECT_THROW(gpu_self_attention(ctx, lq, lo, s, nullptr, nullptr, nullptr, nullptr, 21), Error);
}

// ---- decoder attention blocks --------------------------------------------------------------------

constexpr int kDecHeads = 2, kDecHd = 64;
constexpr int64_t kDecD = kDecHeads * kDecHd;
constexpr int kDecSlots = 24, kDecMaxLen = 48, kDecSources = 5, kDecSrcLen = 37;
constexpr float kDecScale = 0.125f;

struct DecCase {
  std::string name;
  std::vector<GpuDecodeSeq> seqs;
};

LinearW random_linear(int64_t in, int64_t out, std::mt19937_64& rng, DType t) {
  LinearW l;
  l.in = in;
  l.out = out;
  l.w = test::random_vector(static_cast<size_t>(in * out), rng, -0.15f, 0.15f);
  l.b = test::random_vector(static_cast<size_t>(out), rng, -0.1f, 0.1f);
  test::round_inplace(l.w, t);
  test::round_inplace(l.b, t);
  return l;
}

struct DecWeights {
  LayerNormW ln;
  LinearW qkv, out, q, cross_out;
};

DecWeights random_decoder_weights(std::mt19937_64& rng, DType t) {
  DecWeights w;
  w.ln.gamma = test::random_vector(static_cast<size_t>(kDecD), rng, 0.5f, 1.5f);
  w.ln.beta = test::random_vector(static_cast<size_t>(kDecD), rng, -0.2f, 0.2f);
  test::round_inplace(w.ln.gamma, t);
  test::round_inplace(w.ln.beta, t);
  w.qkv = random_linear(kDecD, 3 * kDecD, rng, t);
  w.out = random_linear(kDecD, kDecD, rng, t);
  w.q = random_linear(kDecD, kDecD, rng, t);
  w.cross_out = random_linear(kDecD, kDecD, rng, t);
  return w;
}

// Device copies of a LinearW / LayerNormW in dtype t.
struct DeviceLinear {
  test::DeviceBuffer w, b;
  GpuLinear view;
  DeviceLinear(const LinearW& l, DType t) : w(l.w.size() * dtype_size(t)), b(l.b.size() * dtype_size(t)) {
    test::upload(w.get(), l.w, t);
    test::upload(b.get(), l.b, t);
    view = GpuLinear{w.get(), b.get(), l.in, l.out};
  }
};

AttentionOptions decoder_options(bool causal) {
  AttentionOptions o;
  o.norm = NormPlacement::Pre;
  o.heads = kDecHeads;
  o.head_dim = kDecHd;
  o.scale = kDecScale;
  o.causal = causal;
  return o;
}

// attention_block's update (h_after - h_before) of each sequence's rows, run one sequence at a time.
// Self-attention appends the projected keys and values to k_cache / v_cache ([slots, max_len, d]).
std::vector<float> cpu_decoder_reference(const DecWeights& w, const std::vector<GpuDecodeSeq>& seqs,
                                         const std::vector<float>& h, bool self, std::vector<float>& k_cache,
                                         std::vector<float>& v_cache, const std::vector<float>& cross_kv) {
  std::vector<float> delta(h.size());
  int64_t r0 = 0;
  for (const GpuDecodeSeq& q : seqs) {
    const int64_t n = q.n_new;
    std::vector<float> hb(h.begin() + r0 * kDecD, h.begin() + (r0 + n) * kDecD);
    const std::vector<float> h0 = hb;
    CpuBuffers buf;
    buf.resize(n, kDecD, 3 * kDecD, 1, attention_scratch_floats(n, std::max(kDecMaxLen, kDecSrcLen)));
    const CpuContext ctx = buf.context(1e-5f);
    float* kc = k_cache.data() + int64_t{q.slot} * kDecMaxLen * kDecD;
    float* vc = v_cache.data() + int64_t{q.slot} * kDecMaxLen * kDecD;
    const KeyValueSource append = [&](const float* proj, int64_t ld) {
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(kc + (q.pos + i) * kDecD, proj + i * ld + kDecD, sizeof(float) * kDecD);
        std::memcpy(vc + (q.pos + i) * kDecD, proj + i * ld + 2 * kDecD, sizeof(float) * kDecD);
      }
      return KeyValues{kc, vc, kDecD, q.pos + n};
    };
    const float* src = cross_kv.data() + int64_t{q.source} * kDecSrcLen * 2 * kDecD;
    const KeyValueSource cross = [src](const float*, int64_t) {
      return KeyValues{src, src + kDecD, 2 * kDecD, kDecSrcLen};
    };
    if (self) {
      attention_block({&w.ln, &w.qkv, &w.out}, decoder_options(true), hb.data(), n, kDecD, append, ctx);
    } else {
      attention_block({&w.ln, &w.q, &w.cross_out}, decoder_options(false), hb.data(), n, kDecD, cross, ctx);
    }
    for (size_t i = 0; i < hb.size(); ++i) delta[static_cast<size_t>(r0 * kDecD) + i] = hb[i] - h0[i];
    r0 += n;
  }
  return delta;
}

// Rows at or past each slot's length (and unused slots) are NaN; rows before hold random keys.
std::vector<float> initial_cache(const std::vector<GpuDecodeSeq>& seqs, std::mt19937_64& rng, DType t) {
  std::vector<float> c(static_cast<size_t>(kDecSlots) * kDecMaxLen * kDecD, std::numeric_limits<float>::quiet_NaN());
  for (const GpuDecodeSeq& q : seqs) {
    std::vector<float> rows = test::random_vector(static_cast<size_t>(int64_t{q.pos} * kDecD), rng, -2, 2);
    test::round_inplace(rows, t);
    std::copy(rows.begin(), rows.end(), c.begin() + int64_t{q.slot} * kDecMaxLen * kDecD);
  }
  return c;
}

// The device cache equals the CPU one: NaN exactly where it is NaN, close in norm elsewhere.
::testing::AssertionResult cache_matches(const std::string& name, const std::vector<float>& got,
                                         const std::vector<float>& want, DType t) {
  std::vector<float> g, w;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i]) != std::isnan(got[i])) {
      return ::testing::AssertionFailure() << name << ": element " << i << " (slot " << i / (kDecMaxLen * kDecD)
                                           << ", row " << i / kDecD % kDecMaxLen << ") is " << got[i]
                                           << ", expected " << want[i];
    }
    if (!std::isnan(want[i])) {
      g.push_back(got[i]);
      w.push_back(want[i]);
    }
  }
  return test::close_in_norm(name, g, w, test::rel_norm_bound(t));
}

void run_decoder_case(const DecCase& c, DType t, std::mt19937_64& rng) {
  SCOPED_TRACE(c.name);
  const size_t elt = dtype_size(t);
  const DecWeights w = random_decoder_weights(rng, t);
  const int batch = static_cast<int>(c.seqs.size());
  int64_t rows = 0;
  for (const GpuDecodeSeq& q : c.seqs) rows += q.n_new;
  std::vector<float> h = test::random_vector(static_cast<size_t>(rows * kDecD), rng, -2, 2);
  std::vector<float> cross_kv =
      test::random_vector(static_cast<size_t>(kDecSources) * kDecSrcLen * 2 * kDecD, rng, -2, 2);
  test::round_inplace(h, t);
  test::round_inplace(cross_kv, t);
  std::vector<float> k_cache = initial_cache(c.seqs, rng, t), v_cache = initial_cache(c.seqs, rng, t);

  const size_t cache_bytes = k_cache.size() * elt;
  test::DeviceBuffer dh(h.size() * elt), dnormed(h.size() * elt), dqkv(h.size() * 3 * elt), dattn(h.size() * elt),
      dout(h.size() * elt), dk(cache_bytes), dv(cache_bytes), dcross(cross_kv.size() * elt),
      dgamma(kDecD * elt), dbeta(kDecD * elt), dindex(static_cast<size_t>(decode_index_ints(batch)) * 4), derr(4);
  test::upload(dh.get(), h, t);
  test::upload(dk.get(), k_cache, t);
  test::upload(dv.get(), v_cache, t);
  test::upload(dcross.get(), cross_kv, t);
  test::upload(dgamma.get(), w.ln.gamma, t);
  test::upload(dbeta.get(), w.ln.beta, t);
  std::vector<int32_t> index(static_cast<size_t>(decode_index_ints(batch)));
  fill_decode_index(c.seqs.data(), batch, index.data());
  CUDA_CHECK(cudaMemcpy(dindex.get(), index.data(), index.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemset(derr.get(), 0, 4));
  const DeviceLinear qkv(w.qkv, t), out(w.out, t), q(w.q, t), cross_out(w.cross_out, t);

  const size_t ws_bytes = gpu_decode_attention_workspace_bytes(kDecHeads, kDecHd, batch, kDecMaxLen);
  test::DeviceBuffer ws(std::max<size_t>(ws_bytes, 1));
  GpuContext ctx;
  ctx.lt = &test::shared_gemm_lt();
  ctx.gemm_ws = test::shared_gemm_workspace().get();
  ctx.gemm_ws_bytes = test::shared_gemm_workspace().size();
  ctx.attn_ws = ws.get();
  ctx.attn_ws_bytes = ws_bytes;
  ctx.dtype = t;
  ctx.d = kDecD;
  GpuDecodeAttentionShape shape;
  shape.heads = kDecHeads;
  shape.head_dim = kDecHd;
  shape.scale = kDecScale;
  shape.seqs = c.seqs.data();
  shape.batch = batch;
  shape.index = decode_index_view(static_cast<const int32_t*>(dindex.get()), batch);
  EXPECT_EQ(decode_rows(shape), rows);
  GpuKvCache cache{dk.get(), dv.get(), kDecD, kDecMaxLen * kDecD, kDecSlots, kDecMaxLen,
                   static_cast<int32_t*>(derr.get())};
  GpuCrossKv kv{dcross.get(), dcross.bytes_ptr() + kDecD * elt, 2 * kDecD, kDecSrcLen * 2 * kDecD, kDecSrcLen};
  GpuLayerNorm ln{dgamma.get(), dbeta.get()};

  const std::vector<float> ref_cross = cpu_decoder_reference(w, c.seqs, h, false, k_cache, v_cache, cross_kv);
  const std::vector<float> ref_self = cpu_decoder_reference(w, c.seqs, h, true, k_cache, v_cache, cross_kv);

  for (test::DeviceBuffer* b : {&dnormed, &dqkv, &dattn, &dout}) b->poison();
  gpu_residual_layernorm(ctx, dh.get(), nullptr, ln, dnormed.get(), rows);
  gpu_decode_self_attention(ctx, qkv.view, out.view, cache, shape, dnormed.get(), dqkv.get(), dattn.get(), dout.get());
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(test::close_in_norm("decode_self_attention", test::download(dout.get(), h.size(), t), ref_self,
                                  test::rel_norm_bound(t)));
  EXPECT_TRUE(cache_matches("k_cache", test::download(dk.get(), k_cache.size(), t), k_cache, t));
  EXPECT_TRUE(cache_matches("v_cache", test::download(dv.get(), v_cache.size(), t), v_cache, t));

  for (test::DeviceBuffer* b : {&dqkv, &dattn, &dout}) b->poison();
  gpu_decode_cross_attention(ctx, q.view, cross_out.view, kv, shape, dnormed.get(), dqkv.get(), dattn.get(),
                             dout.get());
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_TRUE(test::close_in_norm("decode_cross_attention", test::download(dout.get(), h.size(), t), ref_cross,
                                  test::rel_norm_bound(t)));
  int32_t err = -1;
  CUDA_CHECK(cudaMemcpy(&err, derr.get(), 4, cudaMemcpyDeviceToHost));
  EXPECT_EQ(err, 0);
}

std::vector<DecCase> decoder_cases() {
  std::vector<DecCase> cases;
  // One live slot, one token, at an odd position in the middle of the cache.
  cases.push_back({"one_live_slot", {{13, 17, 1, 3}}});
  // A decode step over 20 consecutive slots at odd positions (one batched self-attention launch);
  // ten sequences share source 0 (beams: packed 8 + 2 queries), then runs of consecutive sources.
  DecCase step{"decode_step_consecutive_slots", {}};
  const int src[20] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 4, 2, 1, 0, 4};
  for (int i = 0; i < 20; ++i) step.seqs.push_back({2 + i, (7 * i + 3) % 45, 1, src[i]});
  step.seqs[5].pos = 0;   // an empty cache before the step
  step.seqs[9].pos = 47;  // the last row of the cache
  cases.push_back(step);
  // Three tokens each, slots out of order (per-sequence self-attention), sources shared and not.
  cases.push_back({"uniform_3_slots_out_of_order", {{7, 5, 3, 1}, {2, 0, 3, 1}, {19, 44, 3, 2}, {0, 31, 3, 4}}});
  // Two tokens each over consecutive slots: one batched causal launch with two queries.
  cases.push_back({"uniform_2_consecutive", {{4, 9, 2, 0}, {5, 1, 2, 1}, {6, 33, 2, 2}}});
  // Mixed lengths: prefill chunks past eight rows (flash_attention) next to short ones.
  cases.push_back({"mixed_prefill", {{11, 0, 33, 2}, {3, 5, 12, 2}, {8, 40, 7, 0}, {21, 47, 1, 4}, {1, 10, 9, 3}}});
  return cases;
}

TEST(GpuLayers, DecoderAttentionMatchesTheCpuAttentionBlock) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("GpuLayers.DecoderAttention");
  for (DType t : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(t));
    for (const DecCase& c : decoder_cases()) run_decoder_case(c, t, rng);
  }
}

TEST(GpuLayers, DecoderAttentionRefusesRowsOutsideTheCache) {
  GpuContext ctx;
  ctx.d = kDecD;
  GpuLinear lq{nullptr, nullptr, kDecD, 3 * kDecD}, lo{nullptr, nullptr, kDecD, kDecD};
  const std::vector<GpuDecodeSeq> seqs = {{0, 46, 3, 0}};  // rows 46..48 of a 48-row cache
  GpuDecodeAttentionShape shape;
  shape.heads = kDecHeads;
  shape.head_dim = kDecHd;
  shape.seqs = seqs.data();
  shape.batch = 1;
  GpuKvCache cache;
  cache.slots = 1;
  cache.max_len = kDecMaxLen;
  // Refused before anything is launched (no GPU needed).
  EXPECT_THROW(gpu_decode_self_attention(ctx, lq, lo, cache, shape, nullptr, nullptr, nullptr, nullptr), Error);
  shape.batch = 0;
  EXPECT_THROW(gpu_decode_self_attention(ctx, lq, lo, cache, shape, nullptr, nullptr, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace flurry::models
