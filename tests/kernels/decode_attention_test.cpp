// GPU split-KV decode attention (kernels/decode_attention.cuh) against attention_cpu
// (runtime/ref/ops.h), one sequence at a time.
//
// Inputs are random and rounded to the kernel's dtype; cache rows at or past a sequence's current
// length hold NaN, so a kernel that reads one fails; the output is poisoned with padding columns
// that must stay poisoned. Cases: Whisper large-v3's decoder self-attention cache (20 heads,
// max_len 448, lengths 1, 7, 33, 200, 448 in one batch, lengths on the device), its cross-attention
// over a fused [1500, 2 d] K/V buffer per sequence, a few queries per sequence with and without the
// causal mask (q_len 2..8), an empty cache (zero output), and every path of the split: one split
// (no combine kernel), 2, 3, 7, 64 splits forced, and the automatic choice.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/decode_attention.cuh"
#include "runtime/check.h"
#include "runtime/ref/ops.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry {
namespace {

using test::DeviceBuffer;

constexpr int kHd = 64;

struct DecCase {
  std::string name;
  DType t = DType::F16;
  int heads = 1;
  int q_len = 1;
  bool causal = false;
  std::vector<int> lens;      // per-sequence key counts
  int max_len = 0;            // cache rows per sequence
  bool lens_on_device = true; // false: every sequence uses max_len keys (cross-attention)
  bool fused_kv = false;      // K and V interleaved in one [rows, 2 d] buffer (v = k + d)
  int64_t q_ld_extra = 0;     // extra columns in q rows (e.g. 2 d: q read from a fused QKV row)
};

void run_case(const DecCase& c, int splits, std::mt19937_64& rng) {
  const std::string name = c.name + "_" + dtype_name(c.t) + "_splits" + std::to_string(splits);
  SCOPED_TRACE(name);
  const int batch = static_cast<int>(c.lens.size());
  const int64_t d = int64_t{c.heads} * kHd;
  const int64_t q_ld = d + c.q_ld_extra, out_ld = d + 8;
  const int64_t k_ld = c.fused_kv ? 2 * d : d, v_ld = k_ld;
  const int64_t bs = int64_t{c.max_len} * k_ld;  // batch stride of the cache
  const float nan = std::numeric_limits<float>::quiet_NaN();

  std::vector<float> q = test::random_vector(static_cast<size_t>(batch * c.q_len * q_ld), rng, -2, 2);
  std::vector<float> kcache = test::random_vector(static_cast<size_t>(batch * bs), rng, -2, 2);
  std::vector<float> vcache = c.fused_kv ? std::vector<float>()
                                         : test::random_vector(static_cast<size_t>(batch * bs), rng, -1, 1);
  test::round_inplace(q, c.t);
  test::round_inplace(kcache, c.t);
  test::round_inplace(vcache, c.t);
  // Rows at or past each sequence's length are NaN: reading one poisons the output.
  for (int b = 0; b < batch; ++b) {
    for (int64_t j = c.lens[b]; j < c.max_len; ++j) {
      for (int64_t col = 0; col < k_ld; ++col) {
        kcache[static_cast<size_t>(b * bs + j * k_ld + col)] = nan;
        if (!c.fused_kv) vcache[static_cast<size_t>(b * bs + j * v_ld + col)] = nan;
      }
    }
  }
  const float* hk = kcache.data();
  const float* hv = c.fused_kv ? kcache.data() + d : vcache.data();

  std::vector<float> ref(static_cast<size_t>(batch * c.q_len * out_ld), 0.0f);
  for (int b = 0; b < batch; ++b) {
    AttentionArgs r;
    r.q = q.data() + int64_t{b} * c.q_len * q_ld;
    r.k = hk + b * bs;
    r.v = hv + b * bs;
    r.out = ref.data() + int64_t{b} * c.q_len * out_ld;
    r.q_ld = q_ld;
    r.k_ld = k_ld;
    r.v_ld = v_ld;
    r.out_ld = out_ld;
    r.heads = c.heads;
    r.head_dim = kHd;
    r.q_len = c.q_len;
    r.kv_len = c.lens[b];
    r.scale = 0.125f;
    r.causal = c.causal;
    attention_cpu(r);
  }

  const size_t es = dtype_size(c.t);
  DeviceBuffer dq(q.size() * es), dk(kcache.size() * es), dv(std::max<size_t>(vcache.size(), 1) * es),
      dout(ref.size() * es), dlens(static_cast<size_t>(batch) * 4);
  test::upload(dq.get(), q, c.t);
  test::upload(dk.get(), kcache, c.t);
  if (!c.fused_kv) test::upload(dv.get(), vcache, c.t);
  std::vector<int32_t> lens32(c.lens.begin(), c.lens.end());
  CUDA_CHECK(cudaMemcpy(dlens.get(), lens32.data(), lens32.size() * 4, cudaMemcpyHostToDevice));
  dout.poison();

  DecodeAttentionArgs a;
  a.q = dq.get();
  a.out = dout.get();
  a.q_ld = q_ld;
  a.out_ld = out_ld;
  a.k = dk.get();
  a.v = c.fused_kv ? dk.bytes_ptr() + d * es : dv.get();
  a.k_ld = k_ld;
  a.v_ld = v_ld;
  a.k_batch_stride = a.v_batch_stride = bs;
  a.type = c.t;
  a.batch = batch;
  a.heads = c.heads;
  a.head_dim = kHd;
  a.q_len = c.q_len;
  a.kv_lens = c.lens_on_device ? static_cast<const int32_t*>(dlens.get()) : nullptr;
  a.kv_len = c.max_len;
  a.scale = 0.125f;
  a.causal = c.causal;
  a.num_splits = splits;
  const int used = decode_attention_splits(a);
  if (splits > 0) {
    EXPECT_LE(used, splits);
    EXPECT_GE(used, 1);
  }
  const size_t ws_bytes = decode_attention_workspace_bytes(a);
  DeviceBuffer ws(std::max<size_t>(ws_bytes, 1));
  ws.poison();  // every partial the combine reads must have been written
  a.workspace = ws_bytes ? ws.get() : nullptr;
  a.workspace_bytes = ws_bytes;
  decode_attention(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> out = test::download(dout.get(), ref.size(), c.t);

  std::vector<float> got, want;
  const int64_t rows = int64_t{batch} * c.q_len;
  for (int64_t r = 0; r < rows; ++r) {
    const int b = static_cast<int>(r / c.q_len);
    for (int64_t col = 0; col < out_ld; ++col) {
      const size_t i = static_cast<size_t>(r * out_ld + col);
      if (col >= d) {
        EXPECT_TRUE(std::isnan(out[i])) << "padding column written, row " << r;
      } else if (c.lens[b] == 0) {
        EXPECT_EQ(out[i], 0.0f) << "row " << r << " has no keys but is not zero";
      } else {
        got.push_back(out[i]);
        want.push_back(ref[i]);
      }
    }
  }
  if (!got.empty()) {
    EXPECT_TRUE(test::close_in_norm(name, got, want, test::rel_norm_bound(c.t)));
  }
}

const DType kTypes[] = {DType::F16, DType::BF16};
const int kSplits[] = {0, 1, 2, 3, 7, 64};

TEST(DecodeAttentionGpu, WhisperSelfAttentionCache) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DecodeAttentionGpu.self");
  for (DType t : kTypes) {
    DecCase c;
    c.name = "whisper_self_h20";
    c.t = t;
    c.heads = 20;
    c.causal = true;
    c.lens = {1, 7, 33, 448, 200};
    c.max_len = 448;
    c.q_ld_extra = 2 * 20 * kHd;  // q read in place from the step's fused QKV rows
    for (int s : kSplits) run_case(c, s, rng);
  }
}

TEST(DecodeAttentionGpu, WhisperCrossAttention) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DecodeAttentionGpu.cross");
  for (DType t : kTypes) {
    DecCase c;
    c.name = "whisper_cross_h20";
    c.t = t;
    c.heads = 20;
    c.lens = {1500, 1500};
    c.max_len = 1500;
    c.lens_on_device = false;
    c.fused_kv = true;
    for (int s : {0, 1, 5, 64}) run_case(c, s, rng);
  }
}

TEST(DecodeAttentionGpu, SeveralQueriesPerSequence) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DecodeAttentionGpu.multi");
  for (DType t : kTypes) {
    for (int q_len : {2, 3, 4, 5, 8}) {
      for (bool causal : {false, true}) {
        DecCase c;
        c.name = "q" + std::to_string(q_len) + (causal ? "_causal" : "") + "_h3";
        c.t = t;
        c.heads = 3;
        c.q_len = q_len;
        c.causal = causal;
        c.lens = {q_len, 17, 100, 64, 65};
        c.max_len = 130;
        for (int s : {0, 1, 3}) run_case(c, s, rng);
      }
    }
  }
}

TEST(DecodeAttentionGpu, EmptyCacheGivesZeros) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DecodeAttentionGpu.empty");
  for (DType t : kTypes) {
    DecCase c;
    c.name = "empty_h2";
    c.t = t;
    c.heads = 2;
    c.lens = {0, 5, 0, 1};
    c.max_len = 40;
    for (int s : {0, 1, 4}) run_case(c, s, rng);
    c.name = "all_empty_h2";
    c.lens = {0, 0};
    for (int s : {1, 3}) run_case(c, s, rng);
  }
}

TEST(DecodeAttentionGpu, RejectsBadArguments) {
  FLURRY_REQUIRE_GPU();
  DeviceBuffer buf(1 << 16);
  DecodeAttentionArgs a;
  a.q = a.k = a.v = buf.get();
  a.out = buf.get();
  a.q_ld = a.out_ld = a.k_ld = a.v_ld = 64;
  a.batch = 1;
  a.heads = 1;
  a.kv_len = 16;
  a.q_len = 9;  // beyond the decode kernel's 8
  EXPECT_THROW(decode_attention(a, nullptr), Error);
  a.q_len = 1;
  a.k_ld = 68;  // not a multiple of 8
  EXPECT_THROW(decode_attention(a, nullptr), Error);
  a.k_ld = 64;
  a.kv_len = 256;
  a.num_splits = 4;  // four splits of 64 keys need a workspace
  EXPECT_THROW(decode_attention(a, nullptr), Error);
}

}  // namespace
}  // namespace flurry
