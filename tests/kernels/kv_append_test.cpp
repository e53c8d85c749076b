// The decoder K/V append kernel (kernels/kv_append.cuh) against a host reference of the cache
// contents: a memcpy per new row into a copy of the poisoned cache. The comparison is byte-exact
// over the WHOLE cache, so a row written to the wrong slot or position, a row not written, and a
// row written where nothing should be all fail. Cases: Whisper's layout (new K/V at columns d and
// 2d of fused QKV rows, cache [slots, max_len, d]), slots out of order with gaps, random positions
// including the first and the last row, one to 37 new rows per sequence with a grid hint smaller
// than the longest (the blocks loop), one sequence, many (200), padded cache rows and slot strides,
// f16 / bf16 / f32, d = 1280 (large-v3), and rows outside the cache: skipped and flagged.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/kv_append.cuh"
#include "runtime/check.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry {
namespace {

using test::DeviceBuffer;

struct AppendCase {
  std::string name;
  DType t = DType::F16;
  int64_t width = 128;
  int slots = 9, max_len = 37;
  int64_t ld_pad = 0, slot_pad = 0;  // extra elements per cache row / per slot
  int batch = 4;
  int max_n_new = 3;
  int max_new_hint = 0;  // 0: the true maximum
  bool out_of_range = false;  // add one sequence past the cache end and one in a missing slot
};

struct Seq {
  int slot = 0, pos = 0, n_new = 0;
};

void run_case(const AppendCase& c, std::mt19937_64& rng) {
  SCOPED_TRACE(c.name + "_" + dtype_name(c.t));
  const size_t es = dtype_size(c.t);
  const int64_t w = c.width, src_ld = 3 * w, cache_ld = w + c.ld_pad;
  const int64_t slot_stride = int64_t{c.max_len} * cache_ld + c.slot_pad;
  const int64_t cache_elems = int64_t{c.slots} * slot_stride;

  // Distinct slots in a shuffled order; random lengths and positions that fit.
  std::vector<int> order(static_cast<size_t>(c.slots));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  ASSERT_LE(c.batch, c.slots);
  std::vector<Seq> seqs;
  for (int b = 0; b < c.batch; ++b) {
    Seq q;
    q.slot = order[static_cast<size_t>(b)];
    q.n_new = std::uniform_int_distribution<int>(1, std::min(c.max_n_new, c.max_len))(rng);
    const int pick = std::uniform_int_distribution<int>(0, 3)(rng);
    // The first rows, the last rows, or anywhere in between.
    const int anywhere = std::uniform_int_distribution<int>(0, c.max_len - q.n_new)(rng);
    q.pos = pick == 0 ? 0 : pick == 1 ? c.max_len - q.n_new : anywhere;
    seqs.push_back(q);
  }
  if (c.out_of_range) {
    seqs[0].n_new = 3;
    seqs[0].pos = c.max_len - 1;  // rows 1 and 2 fall past the end
    if (c.batch > 1) seqs[1].slot = c.slots;  // no such slot
  }
  int64_t rows = 0;
  int most = 0;
  std::vector<int32_t> slots32, pos32, starts{0};
  for (const Seq& q : seqs) {
    slots32.push_back(q.slot);
    pos32.push_back(q.pos);
    rows += q.n_new;
    starts.push_back(static_cast<int32_t>(rows));
    most = std::max(most, q.n_new);
  }

  // Fused QKV rows (q | k | v), random values in the dtype; the cache poisoned.
  std::vector<float> qkv = test::random_vector(static_cast<size_t>(rows * src_ld), rng, -3, 3);
  std::vector<uint8_t> src_bytes(qkv.size() * es);
  convert_from_f32(qkv.data(), src_bytes.data(), qkv.size(), c.t);
  std::vector<uint8_t> ref_k(static_cast<size_t>(cache_elems) * es, 0xFF), ref_v = ref_k;
  size_t written = 0;
  for (size_t b = 0; b < seqs.size(); ++b) {
    const Seq& q = seqs[b];
    for (int t = 0; t < q.n_new; ++t) {
      if (q.slot < 0 || q.slot >= c.slots || q.pos + t >= c.max_len) continue;
      const int64_t src = (starts[b] + t) * src_ld, dst = q.slot * slot_stride + int64_t{q.pos + t} * cache_ld;
      std::memcpy(&ref_k[static_cast<size_t>(dst) * es], &src_bytes[static_cast<size_t>(src + w) * es],
                  static_cast<size_t>(w) * es);
      std::memcpy(&ref_v[static_cast<size_t>(dst) * es], &src_bytes[static_cast<size_t>(src + 2 * w) * es],
                  static_cast<size_t>(w) * es);
      ++written;
    }
  }
  ASSERT_GT(written, 0u);

  DeviceBuffer dsrc(src_bytes.size()), dk(ref_k.size()), dv(ref_v.size()), dslots(slots32.size() * 4),
      dpos(pos32.size() * 4), dstarts(starts.size() * 4), derr(4);
  CUDA_CHECK(cudaMemcpy(dsrc.get(), src_bytes.data(), src_bytes.size(), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dslots.get(), slots32.data(), slots32.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dpos.get(), pos32.data(), pos32.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(dstarts.get(), starts.data(), starts.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemset(derr.get(), 0, 4));
  dk.poison();
  dv.poison();

  KvAppendArgs a;
  a.k_src = dsrc.bytes_ptr() + w * es;
  a.v_src = dsrc.bytes_ptr() + 2 * w * es;
  a.src_ld = src_ld;
  a.k_cache = dk.get();
  a.v_cache = dv.get();
  a.cache_ld = cache_ld;
  a.slot_stride = slot_stride;
  a.slots = c.slots;
  a.max_len = c.max_len;
  a.width = w;
  a.type = c.t;
  a.batch = static_cast<int>(seqs.size());
  a.seq_slots = static_cast<const int32_t*>(dslots.get());
  a.seq_positions = static_cast<const int32_t*>(dpos.get());
  a.row_starts = static_cast<const int32_t*>(dstarts.get());
  a.max_new = c.max_new_hint > 0 ? c.max_new_hint : most;
  a.error = static_cast<int32_t*>(derr.get());
  kv_append(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<uint8_t> got_k(ref_k.size()), got_v(ref_v.size());
  CUDA_CHECK(cudaMemcpy(got_k.data(), dk.get(), got_k.size(), cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(got_v.data(), dv.get(), got_v.size(), cudaMemcpyDeviceToHost));
  int32_t err = -1;
  CUDA_CHECK(cudaMemcpy(&err, derr.get(), 4, cudaMemcpyDeviceToHost));
  const auto first_diff = [&](const std::vector<uint8_t>& got, const std::vector<uint8_t>& ref) -> int64_t {
    const auto m = std::mismatch(got.begin(), got.end(), ref.begin());
    return m.first == got.end() ? -1 : static_cast<int64_t>(m.first - got.begin()) / static_cast<int64_t>(es);
  };
  const int64_t dk_at = first_diff(got_k, ref_k), dv_at = first_diff(got_v, ref_v);
  EXPECT_EQ(dk_at, -1) << "K cache differs at element " << dk_at << " (slot " << dk_at / slot_stride << ", row "
                       << dk_at % slot_stride / cache_ld << ")";
  EXPECT_EQ(dv_at, -1) << "V cache differs at element " << dv_at << " (slot " << dv_at / slot_stride << ", row "
                       << dv_at % slot_stride / cache_ld << ")";
  EXPECT_EQ(err, c.out_of_range ? kKvAppendOutOfRange : 0);
}

TEST(KvAppend, MatchesTheHostReferenceOfTheCache) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("KvAppend.Cache");
  std::vector<AppendCase> cases;
  AppendCase c;
  c.name = "decode_step";  // every sequence brings one token
  c.max_n_new = 1;
  cases.push_back(c);
  c.name = "one_slot";
  c.batch = 1;
  c.max_n_new = 5;
  cases.push_back(c);
  c.name = "prefill_mixed_grid_loops";  // lengths up to 37, grid sized for 2: blocks loop
  c.batch = 7;
  c.max_n_new = 37;
  c.max_new_hint = 2;
  cases.push_back(c);
  c = AppendCase();
  c.name = "padded_rows_and_slots";
  c.ld_pad = 8;
  c.slot_pad = 24;
  c.batch = 5;
  c.max_n_new = 4;
  cases.push_back(c);
  c = AppendCase();
  c.name = "many_sequences_large_v3_width";
  c.width = 1280;
  c.slots = 233;
  c.max_len = 48;
  c.batch = 200;
  c.max_n_new = 2;
  cases.push_back(c);
  c = AppendCase();
  c.name = "out_of_range_rows_are_skipped_and_flagged";
  c.batch = 4;
  c.out_of_range = true;
  cases.push_back(c);
  for (DType t : {DType::F16, DType::BF16, DType::F32}) {
    for (AppendCase k : cases) {
      k.t = t;
      run_case(k, rng);
    }
  }
}

TEST(KvAppend, RefusesMisalignedRows) {
  KvAppendArgs a;
  int32_t dummy[2] = {0, 0};
  char buf[64];
  a.k_src = a.v_src = buf;
  a.k_cache = a.v_cache = buf;
  a.seq_slots = a.seq_positions = a.row_starts = dummy;
  a.batch = 1;
  a.width = 7;  // 14 bytes of f16: not whole 16-byte vectors
  a.src_ld = a.cache_ld = 8;
  a.max_len = 1;
  a.slot_stride = 8;
  a.slots = 1;
  EXPECT_THROW(kv_append(a, nullptr), Error);
}

}  // namespace
}  // namespace flurry
