// The BERT-specific GPU kernels against the CPU reference (label gpu: skips without a GPU):
//   segment_pool (kernels/segment_pool.cuh) against bert::pool + bert::l2_normalize for every
//   pooling, with and without normalisation, f16/bf16/f32 inputs, widths 384, 768 and an odd 37,
//   sequences of 1, 2, 7, 33 and the longest (512) tokens, and an empty batch;
//   embed_layernorm (kernels/embed_layernorm.cuh) against the embedding sums of bert_forward and
//   layernorm_cpu, positions restarting per sequence, bad ids flagged and clamped, padding rows
//   past the last sequence written as zeros and never flagged.
// Inputs are rounded to the kernel's dtype before the fp32/fp64 reference; outputs are poisoned.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/embed_layernorm.cuh"
#include "kernels/segment_pool.cuh"
#include "models/bert/model.h"
#include "runtime/check.h"
#include "runtime/ref/ops.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry::bert {
namespace {

using test::DeviceBuffer;

std::vector<int32_t> prefix(const std::vector<int>& lens) {
  std::vector<int32_t> cu(lens.size() + 1, 0);
  for (size_t i = 0; i < lens.size(); ++i) cu[i + 1] = cu[i] + lens[i];
  return cu;
}

SegmentPool to_segment(Pooling p) {
  switch (p) {
    case Pooling::kMean: return SegmentPool::kMean;
    case Pooling::kCls: return SegmentPool::kFirst;
    case Pooling::kMax: return SegmentPool::kMax;
    case Pooling::kMeanSqrtLen: return SegmentPool::kMeanSqrtLen;
  }
  return SegmentPool::kMean;
}

const Pooling kPoolings[] = {Pooling::kMean, Pooling::kCls, Pooling::kMax, Pooling::kMeanSqrtLen};

void check_pool(DType t, int64_t d, const std::vector<int>& lens, std::mt19937_64& rng) {
  const std::vector<int32_t> cu = prefix(lens);
  const int batch = static_cast<int>(lens.size());
  const int64_t rows = cu.back();
  std::vector<float> x = test::random_vector(static_cast<size_t>(std::max<int64_t>(rows, 1) * d), rng, -3.0f, 3.0f);
  test::round_inplace(x, t);
  DeviceBuffer dx(x.size() * dtype_size(t)), dcu(cu.size() * sizeof(int32_t)),
      dout(static_cast<size_t>(std::max(batch, 1)) * static_cast<size_t>(d) * sizeof(float));
  test::upload(dx.get(), x, t);
  CUDA_CHECK(cudaMemcpy(dcu.get(), cu.data(), cu.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  for (Pooling p : kPoolings) {
    for (bool l2 : {false, true}) {
      const std::string name = std::string("pool_") + pooling_name(p) + (l2 ? "_l2_" : "_") + dtype_name(t) + "_d" +
                               std::to_string(d) + "_b" + std::to_string(batch);
      SCOPED_TRACE(name);
      dout.poison();
      SegmentPoolArgs a;
      a.x = dx.get();
      a.cu_seqlens = static_cast<const int32_t*>(dcu.get());
      a.out = static_cast<float*>(dout.get());
      a.type = t;
      a.batch = batch;
      a.d = d;
      a.mode = to_segment(p);
      a.l2_normalize = l2;
      segment_pool(a, nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<float> got =
          test::download(dout.get(), static_cast<size_t>(std::max(batch, 1)) * static_cast<size_t>(d), DType::F32);
      if (batch == 0) {  // nothing written
        for (float g : got) {
          ASSERT_TRUE(std::isnan(g)) << name;
        }
        continue;
      }
      for (int b = 0; b < batch; ++b) {
        std::vector<float> want(static_cast<size_t>(d));
        pool(x.data() + cu[static_cast<size_t>(b)] * d, lens[static_cast<size_t>(b)], d, p, want.data());
        if (l2) l2_normalize(want.data(), d);
        const float* g = got.data() + static_cast<size_t>(b) * static_cast<size_t>(d);
        // fp32 sums over at most 512 exactly representable rows: fp32 rounding only.
        EXPECT_TRUE(test::close_elementwise(name + "_seq" + std::to_string(b), g, want.data(),
                                            static_cast<size_t>(d), 1e-5, 1e-5));
      }
    }
  }
}

TEST(SegmentPoolGpu, MatchesCpuPoolingForEveryMode) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("SegmentPoolGpu.modes");
  for (DType t : {DType::F16, DType::BF16, DType::F32}) {
    check_pool(t, 384, {1, 7, 33, 256, 2, 1, 100}, rng);  // MiniLM width, odd lengths, one-token sequences
    check_pool(t, 768, {512, 1, 63, 511}, rng);            // bert-base width, the longest BERT sequence
    check_pool(t, 37, {3, 1, 70}, rng);                    // an odd width (scalar tails)
  }
}

TEST(SegmentPoolGpu, EmptyBatchWritesNothing) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("SegmentPoolGpu.empty");
  check_pool(DType::F16, 384, {}, rng);
}

TEST(SegmentPoolGpu, RejectsBadArguments) {
  FLURRY_REQUIRE_GPU();
  DeviceBuffer buf(1 << 12);
  SegmentPoolArgs a;
  a.x = buf.get();
  a.cu_seqlens = static_cast<const int32_t*>(buf.get());
  a.out = static_cast<float*>(buf.get());
  a.batch = 1;
  a.d = 2048;  // above the kernel's 1536
  EXPECT_THROW(segment_pool(a, nullptr), Error);
  a.d = 64;
  a.type = DType::I32;
  EXPECT_THROW(segment_pool(a, nullptr), Error);
}

// The CPU reference of embed_layernorm: bert_forward's embedding loop, then layernorm_cpu.
std::vector<float> embed_ln_ref(const std::vector<float>& word, const std::vector<float>& pos,
                                const std::vector<float>& type, const std::vector<float>& gamma,
                                const std::vector<float>& beta, const std::vector<int32_t>& ids,
                                const std::vector<int>& lens, int64_t d, float eps) {
  std::vector<float> h(ids.size() * static_cast<size_t>(d)), y(h.size());
  size_t r = 0;
  for (int n : lens) {
    for (int p = 0; p < n; ++p, ++r) {
      for (int64_t j = 0; j < d; ++j) {
        h[r * static_cast<size_t>(d) + static_cast<size_t>(j)] =
            word[static_cast<size_t>(ids[r] * d + j)] + pos[static_cast<size_t>(p * d + j)] + type[static_cast<size_t>(j)];
      }
    }
  }
  layernorm_cpu(h.data(), nullptr, nullptr, gamma.data(), beta.data(), y.data(), static_cast<int64_t>(ids.size()), d,
                eps);
  return y;
}

struct EmbedCase {
  int64_t vocab = 1000, n_pos = 512, d = 384;
  std::vector<int> lens;
};

// `pad`: rows past cu_seqlens[batch] (a CUDA graph's fixed row count), with invalid ids.
void check_embed(DType t, const EmbedCase& c, std::mt19937_64& rng, int64_t pad = 0) {
  const std::string name = std::string("embed_ln_") + dtype_name(t) + "_d" + std::to_string(c.d);
  SCOPED_TRACE(name);
  const int64_t d = c.d;
  std::vector<float> word = test::random_vector(static_cast<size_t>(c.vocab * d), rng, -0.5f, 0.5f);
  std::vector<float> pos = test::random_vector(static_cast<size_t>(c.n_pos * d), rng, -0.5f, 0.5f);
  std::vector<float> type = test::random_vector(static_cast<size_t>(2 * d), rng, -0.5f, 0.5f);
  std::vector<float> gamma = test::random_vector(static_cast<size_t>(d), rng, 0.8f, 1.2f);
  std::vector<float> beta = test::random_vector(static_cast<size_t>(d), rng, -0.1f, 0.1f);
  for (auto* v : {&word, &pos, &type, &gamma, &beta}) test::round_inplace(*v, t);
  const std::vector<int32_t> cu = prefix(c.lens);
  std::vector<int32_t> ids(static_cast<size_t>(cu.back()));
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(c.vocab - 1));
  for (auto& id : ids) id = pick(rng);
  const std::vector<float> want = embed_ln_ref(word, pos, type, gamma, beta, ids, c.lens, d, 1e-12f);
  std::vector<int32_t> dev_ids = ids;
  dev_ids.resize(ids.size() + static_cast<size_t>(pad), -7);  // read, they would be flagged
  const size_t all_rows = dev_ids.size();

  const size_t es = dtype_size(t);
  DeviceBuffer dword(word.size() * es), dpos(pos.size() * es), dtype_(type.size() * es), dgamma(gamma.size() * es),
      dbeta(beta.size() * es), dids(std::max<size_t>(all_rows, 1) * 4), dcu(cu.size() * 4),
      dout(std::max<size_t>(all_rows, 1) * static_cast<size_t>(d) * es), derr(4);
  test::upload(dword.get(), word, t);
  test::upload(dpos.get(), pos, t);
  test::upload(dtype_.get(), type, t);
  test::upload(dgamma.get(), gamma, t);
  test::upload(dbeta.get(), beta, t);
  CUDA_CHECK(cudaMemcpy(dids.get(), dev_ids.data(), all_rows * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dcu.get(), cu.data(), cu.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemset(derr.get(), 0, 4));
  dout.poison();
  EmbedLayerNormArgs a;
  a.ids = static_cast<const int32_t*>(dids.get());
  a.cu_seqlens = static_cast<const int32_t*>(dcu.get());
  a.word = dword.get();
  a.pos = dpos.get();
  a.type_row = dtype_.get();
  a.gamma = dgamma.get();
  a.beta = dbeta.get();
  a.out = dout.get();
  a.error = static_cast<int32_t*>(derr.get());
  a.type = t;
  a.batch = static_cast<int>(c.lens.size());
  a.rows = static_cast<int64_t>(all_rows);
  a.vocab = c.vocab;
  a.n_pos = c.n_pos;
  a.d = d;
  a.eps = 1e-12f;
  embed_layernorm(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  int32_t err = -1;
  CUDA_CHECK(cudaMemcpy(&err, derr.get(), 4, cudaMemcpyDeviceToHost));
  EXPECT_EQ(err, 0);
  if (ids.empty()) return;
  std::vector<float> got = test::download(dout.get(), all_rows * static_cast<size_t>(d), t);
  for (size_t i = ids.size() * static_cast<size_t>(d); i < got.size(); ++i) {
    ASSERT_EQ(got[i], 0.0f) << "padding row " << i / static_cast<size_t>(d) << " col " << i % static_cast<size_t>(d);
  }
  got.resize(ids.size() * static_cast<size_t>(d));
  EXPECT_TRUE(test::close_in_norm(name, got, want, test::rel_norm_bound(t)));

  // A bad id is clamped (finite output) and flagged.
  const int32_t bad = static_cast<int32_t>(c.vocab + 5);
  CUDA_CHECK(cudaMemcpy(dids.get(), &bad, 4, cudaMemcpyHostToDevice));
  embed_layernorm(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaMemcpy(&err, derr.get(), 4, cudaMemcpyDeviceToHost));
  EXPECT_EQ(err, kEmbedBadToken);
}

TEST(EmbedLayerNormGpu, MatchesCpuEmbeddingsAndLayerNorm) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("EmbedLayerNormGpu.match");
  for (DType t : {DType::F16, DType::BF16}) {
    check_embed(t, {1000, 512, 384, {1, 7, 33, 256, 2, 1}}, rng);
    check_embed(t, {3000, 512, 768, {512, 1, 65}}, rng);
    check_embed(t, {50, 40, 37, {3, 40, 1}}, rng);  // odd width
  }
}

// A CUDA graph runs a fixed row count: rows past cu_seqlens[batch] become zeros, their (invalid)
// ids unread and unflagged, the real rows unchanged.
TEST(EmbedLayerNormGpu, PaddingRowsPastTheLastSequenceAreZeros) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("EmbedLayerNormGpu.padding");
  for (DType t : {DType::F16, DType::BF16}) {
    check_embed(t, {1000, 512, 384, {1, 7, 33}}, rng, 23);
    check_embed(t, {1000, 40, 384, {40, 3}}, rng, 700);  // more padding rows than positions
  }
}

TEST(EmbedLayerNormGpu, EmptyBatchIsANoOp) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("EmbedLayerNormGpu.empty");
  check_embed(DType::F16, {100, 512, 384, {}}, rng);
}

}  // namespace
}  // namespace flurry::bert
