#include "kernels/kv_append.cuh"

#include <algorithm>
#include <cstdint>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {

// One row of K plus one of V is 2 x d x 2 bytes = 320 16-byte vectors at large-v3 (d = 1280):
// 128 threads move it in three passes, and a decode step (one row per sequence) is one block per
// sequence.
constexpr int kThreads = 128;
constexpr int kMaxRowBlocks = 1024;  // rows of one sequence per grid column before blocks loop

struct Params {
  const uint4* k_src;
  const uint4* v_src;
  uint4* k_cache;
  uint4* v_cache;
  int64_t src_ld, cache_ld, slot_stride;  // in 16-byte vectors
  int64_t vecs;                           // 16-byte vectors per row
  int slots, max_len;
  const int32_t* seq_slots;
  const int32_t* seq_positions;
  const int32_t* row_starts;
  int32_t* error;
};

// Block (x, b) copies rows x, x + gridDim.x, ... of sequence b; its threads stride over the K then
// the V vectors of a row, so consecutive threads touch consecutive 16 bytes of one row.
__global__ void __launch_bounds__(kThreads) kv_append_kernel(const Params p) {
  const int b = static_cast<int>(blockIdx.y);
  const int slot = p.seq_slots[b];
  const int pos = p.seq_positions[b];
  const int first = p.row_starts[b];
  const int n = p.row_starts[b + 1] - first;
  for (int t = static_cast<int>(blockIdx.x); t < n; t += static_cast<int>(gridDim.x)) {
    const int64_t at = int64_t{pos} + t;
    if (slot < 0 || slot >= p.slots || pos < 0 || at >= p.max_len) {
      if (threadIdx.x == 0 && p.error != nullptr) atomicOr(p.error, kKvAppendOutOfRange);
      continue;
    }
    const int64_t src = (int64_t{first} + t) * p.src_ld;
    const int64_t dst = int64_t{slot} * p.slot_stride + at * p.cache_ld;
    for (int64_t i = threadIdx.x; i < 2 * p.vecs; i += kThreads) {
      if (i < p.vecs) {
        p.k_cache[dst + i] = p.k_src[src + i];
      } else {
        p.v_cache[dst + i - p.vecs] = p.v_src[src + i - p.vecs];
      }
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

void kv_append(const KvAppendArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.batch >= 0 && a.batch <= 65535, "kv_append: batch " << a.batch << " outside 0..65535");
  if (a.batch == 0) return;
  FLURRY_CHECK(a.k_src && a.v_src && a.k_cache && a.v_cache && a.seq_slots && a.seq_positions && a.row_starts,
               "kv_append: null pointer");
  const int64_t elt = static_cast<int64_t>(dtype_size(a.type));
  const int64_t row_bytes = a.width * elt;
  FLURRY_CHECK(a.width > 0 && row_bytes % 16 == 0,
               "kv_append: rows of " << a.width << " x " << elt << " bytes are not whole 16-byte vectors");
  FLURRY_CHECK(a.src_ld >= a.width && a.cache_ld >= a.width && a.slot_stride >= int64_t{a.max_len} * a.cache_ld,
               "kv_append: strides src_ld=" << a.src_ld << " cache_ld=" << a.cache_ld << " slot_stride="
                                            << a.slot_stride << " below the rows they hold");
  FLURRY_CHECK((a.src_ld * elt) % 16 == 0 && (a.cache_ld * elt) % 16 == 0 && (a.slot_stride * elt) % 16 == 0 &&
                   aligned16(a.k_src) && aligned16(a.v_src) && aligned16(a.k_cache) && aligned16(a.v_cache),
               "kv_append: pointers must be 16-byte aligned and strides multiples of 16 bytes");
  FLURRY_CHECK(a.slots >= 0 && a.max_len >= 0, "kv_append: negative cache bounds");
  Params p;
  p.k_src = static_cast<const uint4*>(a.k_src);
  p.v_src = static_cast<const uint4*>(a.v_src);
  p.k_cache = static_cast<uint4*>(a.k_cache);
  p.v_cache = static_cast<uint4*>(a.v_cache);
  p.src_ld = a.src_ld * elt / 16;
  p.cache_ld = a.cache_ld * elt / 16;
  p.slot_stride = a.slot_stride * elt / 16;
  p.vecs = row_bytes / 16;
  p.slots = a.slots;
  p.max_len = a.max_len;
  p.seq_slots = a.seq_slots;
  p.seq_positions = a.seq_positions;
  p.row_starts = a.row_starts;
  p.error = a.error;
  const dim3 grid(static_cast<unsigned>(std::min(std::max(a.max_new, 1), kMaxRowBlocks)),
                  static_cast<unsigned>(a.batch));
  kv_append_kernel<<<grid, kThreads, 0, stream>>>(p);
  FLURRY_LAUNCH_CHECK("kv_append_kernel", stream);
}

}  // namespace flurry
