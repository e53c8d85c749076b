// The shared GPU self-attention block (models/common/gpu/layers.h) against the CPU reference ops it
// composes (linear_cpu, attention_cpu per sequence, linear_cpu): fp16 and bf16, an unpadded varlen
// batch with odd lengths (1, 7, 33, 64, 100 rows: BERT's path), a padded batch (Whisper's encoder)
// and causal masking; fresh random inputs, poisoned outputs, a relative-norm bound per dtype.
#include <gtest/gtest.h>

#include <vector>

#include "models/common/gpu/layers.h"
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

}  // namespace
}  // namespace flurry::models
