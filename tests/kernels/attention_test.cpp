// GPU flash attention (kernels/attention.cuh) against attention_cpu (runtime/ref/ops.h), one
// sequence at a time.
//
// Inputs are random (q, k in [-2, 2] so the softmax is peaked, not nearly uniform; v in [-1, 1]),
// rounded to the kernel's dtype before the fp32 reference. The output buffer is poisoned and has
// padding columns that must stay poisoned; every compared element must be finite, and a query with
// no visible key must be exactly zero. Layouts: the fused QKV buffer read in place (ld = 3 d),
// separate q/k/v with different padded strides, unpadded varlen batches (cu_seqlens) and padded
// batches with a key-padding mask. Shapes: Whisper large-v3 (T = 1500, 20 heads), BERT-like mixed
// lengths including 1, 7, 33, 64, 65, decoder prefill with a past (kv_len > q_len), empty
// sequences, causal and not, f16 and bf16. Batching must not change a sequence's result. Both
// built head dims: 64 (Whisper, bert-base) and 32 (MiniLM: 12 heads x 32), the latter with odd
// lengths, one-token sequences, the longest BERT sequence (512) and an empty batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/attention.cuh"
#include "runtime/check.h"
#include "runtime/ref/ops.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry {
namespace {

using test::DeviceBuffer;

enum class Layout { FusedVarlen, SeparateVarlen, Padded };

struct Problem {
  std::string name;
  DType t = DType::F16;
  int heads = 1;
  int head_dim = 64;
  bool causal = false;
  Layout layout = Layout::FusedVarlen;
  std::vector<int> q_lens, kv_lens;
  // Padded only: visible keys per sequence (the first n keys), -1 = no mask for this batch,
  // -2 = a random pattern for this sequence.
  std::vector<int> valid;
  // FusedVarlen only: use these [total, 3 d] inputs (already rounded) instead of drawing them.
  std::vector<float> fused_qkv;
};

struct Result {
  std::vector<float> out, ref;  // [total_q, out_ld]
  int64_t out_ld = 0;
};

std::vector<int32_t> prefix(const std::vector<int>& lens) {
  std::vector<int32_t> cu(lens.size() + 1, 0);
  for (size_t i = 0; i < lens.size(); ++i) cu[i + 1] = cu[i] + lens[i];
  return cu;
}

Result run_problem(const Problem& pb, std::mt19937_64& rng) {
  SCOPED_TRACE(pb.name);
  const int batch = static_cast<int>(pb.q_lens.size());
  const int64_t d = int64_t{pb.heads} * pb.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(pb.head_dim));
  const std::vector<int32_t> cu_q = prefix(pb.q_lens), cu_k = prefix(pb.kv_lens);
  const int64_t total_q = cu_q.back(), total_k = cu_k.back();
  const bool fused = pb.layout == Layout::FusedVarlen;
  if (fused) {
    EXPECT_EQ(pb.q_lens, pb.kv_lens) << "fused QKV is self-attention";
  }
  if (pb.layout == Layout::Padded) {
    for (int b = 0; b < batch; ++b) {
      EXPECT_EQ(pb.q_lens[b], pb.q_lens[0]);
      EXPECT_EQ(pb.kv_lens[b], pb.kv_lens[0]);
    }
  }

  // Host tensors in fp32, rounded to the kernel's dtype.
  const int64_t q_ld = fused ? 3 * d : d + 8, k_ld = fused ? 3 * d : d + 16,
                v_ld = fused ? 3 * d : d + 24, out_ld = d + 8;
  std::vector<float> qbuf, kbuf, vbuf;
  if (fused && !pb.fused_qkv.empty()) {
    qbuf = pb.fused_qkv;
    EXPECT_EQ(qbuf.size(), static_cast<size_t>(total_q * q_ld));
  } else if (fused) {
    qbuf = test::random_vector(static_cast<size_t>(total_q * q_ld), rng, -2.0f, 2.0f);
    // k columns like q, v columns in [-1, 1].
    for (int64_t r = 0; r < total_q; ++r) {
      for (int64_t c = 2 * d; c < 3 * d; ++c) qbuf[r * q_ld + c] *= 0.5f;
    }
  } else {
    qbuf = test::random_vector(static_cast<size_t>(std::max<int64_t>(total_q, 1) * q_ld), rng, -2, 2);
    kbuf = test::random_vector(static_cast<size_t>(std::max<int64_t>(total_k, 1) * k_ld), rng, -2, 2);
    vbuf = test::random_vector(static_cast<size_t>(std::max<int64_t>(total_k, 1) * v_ld), rng, -1, 1);
  }
  for (auto* v : {&qbuf, &kbuf, &vbuf}) test::round_inplace(*v, pb.t);
  const float* hq = qbuf.data();
  const float* hk = fused ? qbuf.data() + d : kbuf.data();
  const float* hv = fused ? qbuf.data() + 2 * d : vbuf.data();

  std::vector<uint8_t> mask;
  const bool masked = pb.layout == Layout::Padded && !pb.valid.empty() && pb.valid[0] != -1;
  if (masked) {
    mask.assign(static_cast<size_t>(total_k), 0);
    std::uniform_int_distribution<int> coin(0, 2);
    for (int b = 0; b < batch; ++b) {
      for (int j = 0; j < pb.kv_lens[b]; ++j) {
        const bool on = pb.valid[b] == -2 ? coin(rng) != 0 : j < pb.valid[b];
        mask[static_cast<size_t>(cu_k[b] + j)] = on ? 1 : 0;
      }
    }
  }

  // Reference, one sequence at a time.
  Result res;
  res.out_ld = out_ld;
  res.ref.assign(static_cast<size_t>(total_q * out_ld), 0.0f);
  for (int b = 0; b < batch; ++b) {
    AttentionArgs r;
    r.q = hq + cu_q[b] * q_ld;
    r.k = hk + cu_k[b] * k_ld;
    r.v = hv + cu_k[b] * v_ld;
    r.out = res.ref.data() + cu_q[b] * out_ld;
    r.q_ld = q_ld;
    r.k_ld = k_ld;
    r.v_ld = v_ld;
    r.out_ld = out_ld;
    r.heads = pb.heads;
    r.head_dim = pb.head_dim;
    r.q_len = pb.q_lens[b];
    r.kv_len = pb.kv_lens[b];
    r.scale = scale;
    r.causal = pb.causal;
    r.key_valid = masked ? mask.data() + cu_k[b] : nullptr;
    attention_cpu(r);
  }

  // GPU.
  const size_t es = dtype_size(pb.t);
  DeviceBuffer dq(qbuf.size() * es), dk(std::max<size_t>(kbuf.size(), 1) * es),
      dv(std::max<size_t>(vbuf.size(), 1) * es), dout(static_cast<size_t>(total_q * out_ld) * es),
      dcu_q(cu_q.size() * 4), dcu_k(cu_k.size() * 4), dmask(std::max<size_t>(mask.size(), 1));
  test::upload(dq.get(), qbuf, pb.t);
  if (!fused) {
    test::upload(dk.get(), kbuf, pb.t);
    test::upload(dv.get(), vbuf, pb.t);
  }
  CUDA_CHECK(cudaMemcpy(dcu_q.get(), cu_q.data(), cu_q.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dcu_k.get(), cu_k.data(), cu_k.size() * 4, cudaMemcpyHostToDevice));
  if (masked) CUDA_CHECK(cudaMemcpy(dmask.get(), mask.data(), mask.size(), cudaMemcpyHostToDevice));
  dout.poison();

  FlashAttentionArgs a;
  a.q = dq.get();
  a.k = fused ? dq.bytes_ptr() + d * es : dk.get();
  a.v = fused ? dq.bytes_ptr() + 2 * d * es : dv.get();
  a.out = dout.get();
  a.q_ld = q_ld;
  a.k_ld = k_ld;
  a.v_ld = v_ld;
  a.out_ld = out_ld;
  a.type = pb.t;
  a.heads = pb.heads;
  a.head_dim = pb.head_dim;
  a.batch = batch;
  if (pb.layout == Layout::Padded) {
    a.q_len = pb.q_lens[0];
    a.kv_len = pb.kv_lens[0];
  } else {
    a.cu_seqlens_q = static_cast<const int32_t*>(dcu_q.get());
    a.cu_seqlens_k = static_cast<const int32_t*>(dcu_k.get());
    a.q_len = *std::max_element(pb.q_lens.begin(), pb.q_lens.end());
  }
  a.key_valid = masked ? static_cast<const uint8_t*>(dmask.get()) : nullptr;
  a.scale = scale;
  a.causal = pb.causal;
  flash_attention(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  res.out = test::download(dout.get(), static_cast<size_t>(total_q * out_ld), pb.t);

  // Compare the d real columns; padding columns keep their poison.
  std::vector<float> got, want;
  int64_t zero_rows = 0;
  for (int64_t r = 0; r < total_q; ++r) {
    bool ref_zero_row = true;
    for (int64_t c = 0; c < out_ld; ++c) {
      const size_t i = static_cast<size_t>(r * out_ld + c);
      if (c < d) {
        got.push_back(res.out[i]);
        want.push_back(res.ref[i]);
        ref_zero_row = ref_zero_row && res.ref[i] == 0.0f;
      } else {
        EXPECT_TRUE(std::isnan(res.out[i])) << pb.name << ": padding column written, row " << r;
      }
    }
    if (ref_zero_row) {  // no visible key: exactly zero
      ++zero_rows;
      for (int64_t c = 0; c < d; ++c) {
        EXPECT_EQ(res.out[static_cast<size_t>(r * out_ld + c)], 0.0f)
            << pb.name << ": row " << r << " sees no key but is not zero";
      }
    }
  }
  if (!got.empty()) {
    if (zero_rows == total_q) {
      for (float g : got) EXPECT_EQ(g, 0.0f);
    } else {
      EXPECT_TRUE(test::close_in_norm(pb.name, got, want, test::rel_norm_bound(pb.t)));
    }
  }
  return res;
}

const DType kTypes[] = {DType::F16, DType::BF16};

std::string tname(const std::string& base, DType t, bool causal) {
  return base + "_" + dtype_name(t) + (causal ? "_causal" : "");
}

TEST(FlashAttentionGpu, WhisperLargeV3Encoder) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("FlashAttentionGpu.whisper");
  for (DType t : kTypes) {
    Problem pb;
    pb.name = tname("whisper_T1500_h20", t, false);
    pb.t = t;
    pb.heads = 20;
    pb.q_lens = pb.kv_lens = {1500};
    run_problem(pb, rng);
  }
}

TEST(FlashAttentionGpu, VarlenMixedLengths) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("FlashAttentionGpu.varlen");
  for (DType t : kTypes) {
    for (bool causal : {false, true}) {
      Problem pb;
      pb.name = tname("varlen_h6", t, causal);
      pb.t = t;
      pb.heads = 6;
      pb.causal = causal;
      pb.q_lens = pb.kv_lens = {1, 7, 33, 64, 65, 130, 200, 2};
      run_problem(pb, rng);
    }
  }
}

TEST(FlashAttentionGpu, PrefillWithPastKeys) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("FlashAttentionGpu.prefill");
  for (DType t : kTypes) {
    for (bool causal : {false, true}) {
      Problem pb;
      pb.name = tname("prefill_separate_h3", t, causal);
      pb.t = t;
      pb.heads = 3;
      pb.causal = causal;
      pb.layout = Layout::SeparateVarlen;
      pb.q_lens = {1, 7, 33, 64, 100, 4};
      pb.kv_lens = {1, 40, 33, 200, 164, 448};
      run_problem(pb, rng);
    }
  }
}

TEST(FlashAttentionGpu, PaddedBatchWithKeyMask) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("FlashAttentionGpu.padded");
  for (DType t : kTypes) {
    for (bool causal : {false, true}) {
      Problem pb;
      pb.name = tname("padded_mask_h4", t, causal);
      pb.t = t;
      pb.heads = 4;
      pb.causal = causal;
      pb.layout = Layout::Padded;
      pb.q_lens = pb.kv_lens = {70, 70, 70, 70, 70};
      pb.valid = {70, 1, 0, 33, -2};  // full, one key, no key (zero output), a prefix, random
      run_problem(pb, rng);
      // Padded without a mask, odd length.
      pb.name = tname("padded_nomask_h2", t, causal);
      pb.heads = 2;
      pb.q_lens = pb.kv_lens = {7, 7, 7};
      pb.valid = {-1};
      run_problem(pb, rng);
    }
  }
}

TEST(FlashAttentionGpu, EmptySequencesAndNoVisibleKey) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("FlashAttentionGpu.empty");
  for (DType t : kTypes) {
    Problem pb;
    pb.name = tname("empty_kv", t, false);
    pb.t = t;
    pb.heads = 2;
    pb.layout = Layout::SeparateVarlen;
    pb.q_lens = {5, 3, 0, 66};
    pb.kv_lens = {0, 9, 4, 1};  // sequence 0 has no keys at all: zeros
    run_problem(pb, rng);
  }
}

// A sequence gives the same bits alone as inside a batch (same tiles, same order of operations),
// and two runs on the same inputs give the same bits (a race would not).
void check_batching_invariance(int head_dim, std::mt19937_64& rng) {
  const int heads = 2;
  const int64_t d = int64_t{heads} * head_dim;
  const std::vector<int> lens = {33, 130, 7};
  const int64_t total = 33 + 130 + 7, first = 33, len = 130;
  for (DType t : kTypes) {
    for (bool causal : {false, true}) {
      std::vector<float> qkv = test::random_vector(static_cast<size_t>(total * 3 * d), rng, -2, 2);
      test::round_inplace(qkv, t);
      Problem batched;
      batched.name = tname("batched_hd" + std::to_string(head_dim), t, causal);
      batched.t = t;
      batched.heads = heads;
      batched.head_dim = head_dim;
      batched.causal = causal;
      batched.q_lens = batched.kv_lens = lens;
      batched.fused_qkv = qkv;
      const Result all = run_problem(batched, rng);
      const Result again = run_problem(batched, rng);
      ASSERT_EQ(all.out.size(), again.out.size());
      EXPECT_EQ(0, std::memcmp(all.out.data(), again.out.data(), all.out.size() * sizeof(float)))
          << "two runs on the same inputs differ: a race";

      Problem single = batched;
      single.name = tname("single_hd" + std::to_string(head_dim), t, causal);
      single.q_lens = single.kv_lens = {static_cast<int>(len)};
      single.fused_qkv.assign(qkv.begin() + first * 3 * d, qkv.begin() + (first + len) * 3 * d);
      const Result one = run_problem(single, rng);
      ASSERT_EQ(one.out_ld, all.out_ld);
      const size_t off = static_cast<size_t>(first * all.out_ld);
      for (int64_t r = 0; r < len; ++r) {
        for (int64_t c = 0; c < d; ++c) {
          const size_t i = static_cast<size_t>(r * one.out_ld + c);
          ASSERT_EQ(one.out[i], all.out[off + i]) << single.name << ": row " << r << " col " << c;
        }
      }
    }
  }
}

TEST(FlashAttentionGpu, BatchingDoesNotChangeResults) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("FlashAttentionGpu.batching");
  check_batching_invariance(64, rng);
}

// Head dim 32 (MiniLM: 384 = 12 x 32), the fused QKV [tokens, 3 x 384] read in place as BERT does.
TEST(FlashAttentionGpu, HeadDim32VarlenMixedLengths) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("FlashAttentionGpu.hd32_varlen");
  for (DType t : kTypes) {
    for (bool causal : {false, true}) {
      Problem pb;
      pb.name = tname("hd32_varlen_h12", t, causal);
      pb.t = t;
      pb.heads = 12;
      pb.head_dim = 32;
      pb.causal = causal;
      pb.q_lens = pb.kv_lens = {1, 7, 33, 64, 65, 130, 255, 256, 2, 1};
      run_problem(pb, rng);
    }
  }
}

TEST(FlashAttentionGpu, HeadDim32OneTokenSequencesAndLongest) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("FlashAttentionGpu.hd32_edges");
  for (DType t : kTypes) {
    Problem ones;
    ones.name = tname("hd32_one_token_h12", t, false);
    ones.t = t;
    ones.heads = 12;
    ones.head_dim = 32;
    ones.q_lens = ones.kv_lens = {1, 1, 1, 1, 1};
    run_problem(ones, rng);
    Problem longest = ones;
    longest.name = tname("hd32_longest512_h12", t, false);
    longest.q_lens = longest.kv_lens = {512, 1, 511, 3};  // BERT's max_position_embeddings
    run_problem(longest, rng);
  }
}

TEST(FlashAttentionGpu, HeadDim32SeparateAndPaddedMask) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("FlashAttentionGpu.hd32_layouts");
  for (DType t : kTypes) {
    for (bool causal : {false, true}) {
      Problem sep;
      sep.name = tname("hd32_separate_h3", t, causal);
      sep.t = t;
      sep.heads = 3;
      sep.head_dim = 32;
      sep.causal = causal;
      sep.layout = Layout::SeparateVarlen;
      sep.q_lens = {1, 7, 33, 64, 100, 4, 0};
      sep.kv_lens = {1, 40, 33, 200, 164, 448, 5};
      run_problem(sep, rng);
      Problem pad = sep;
      pad.name = tname("hd32_padded_mask_h4", t, causal);
      pad.heads = 4;
      pad.layout = Layout::Padded;
      pad.q_lens = pad.kv_lens = {77, 77, 77, 77, 77};
      pad.valid = {77, 1, 0, 33, -2};
      run_problem(pad, rng);
    }
  }
}

TEST(FlashAttentionGpu, HeadDim32BatchingDoesNotChangeResults) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("FlashAttentionGpu.hd32_batching");
  check_batching_invariance(32, rng);
}

// batch = 0 (an empty request list) and q_len = 0 launch nothing and write nothing.
TEST(FlashAttentionGpu, EmptyBatchWritesNothing) {
  FLURRY_REQUIRE_GPU();
  for (int hd : {32, 64}) {
    DeviceBuffer buf(1 << 12), out(1 << 12), cu(16);
    CUDA_CHECK(cudaMemset(cu.get(), 0, 16));
    out.poison();
    FlashAttentionArgs a;
    a.q = a.k = a.v = buf.get();
    a.out = out.get();
    a.q_ld = a.k_ld = a.v_ld = a.out_ld = 12 * hd;
    a.heads = 12;
    a.head_dim = hd;
    a.batch = 0;
    a.cu_seqlens_q = a.cu_seqlens_k = static_cast<const int32_t*>(cu.get());
    a.q_len = 0;
    flash_attention(a, nullptr);
    a.batch = 1;  // one sequence of no tokens
    flash_attention(a, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> got = test::download(out.get(), (1 << 12) / 2, DType::F16);
    for (float g : got) {
      ASSERT_TRUE(std::isnan(g)) << "head_dim " << hd << ": an empty batch wrote output";
    }
  }
}

TEST(FlashAttentionGpu, RejectsBadArguments) {
  FLURRY_REQUIRE_GPU();
  DeviceBuffer buf(1 << 16);
  FlashAttentionArgs a;
  a.q = a.k = a.v = buf.get();
  a.out = buf.get();
  a.q_ld = a.k_ld = a.v_ld = a.out_ld = 64;
  a.heads = 1;
  a.batch = 1;
  a.q_len = a.kv_len = 4;
  a.head_dim = 128;
  EXPECT_THROW(flash_attention(a, nullptr), Error);
  a.head_dim = 48;
  EXPECT_THROW(flash_attention(a, nullptr), Error);
  a.head_dim = 64;
  a.q_ld = 60;  // below heads * head_dim
  EXPECT_THROW(flash_attention(a, nullptr), Error);
  a.q_ld = 68;  // not a multiple of 8
  EXPECT_THROW(flash_attention(a, nullptr), Error);
  a.q_ld = 64;
  a.type = DType::F32;
  EXPECT_THROW(flash_attention(a, nullptr), Error);
}

}  // namespace
}  // namespace flurry
