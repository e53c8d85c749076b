#include "kernels/retrieval_topk.cuh"

#include <cmath>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {

constexpr int kThreads = 256;
// Room for a full running list and a full tile: the next power of two above 1024 + 2048.
constexpr int kKeys = 4096;
static_assert(kKeys >= kRetrievalTopKMax + kRetrievalTileMaxCols, "shared key buffer too small");

// Order-preserving score bits: a larger float has a larger key, -0 folds onto +0. The low half of
// the 64-bit key is the inverted candidate index (running slots first, then tile columns), so on
// equal scores the earlier candidate, i.e. the lower global row, has the larger key. Key 0 is
// never made (the score half of -inf is 0x007fffff), so it marks padding.
__device__ __forceinline__ unsigned long long make_key(float v, uint32_t index) {
  if (v == 0.0f) v = 0.0f;
  const uint32_t b = __float_as_uint(v);
  const uint32_t s = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (static_cast<unsigned long long>(s) << 32) | static_cast<unsigned long long>(0xffffffffu - index);
}

__device__ __forceinline__ float key_score(unsigned long long key) {
  const uint32_t s = static_cast<uint32_t>(key >> 32);
  return __uint_as_float((s & 0x80000000u) ? (s & 0x7fffffffu) : ~s);
}

__device__ __forceinline__ uint32_t key_index(unsigned long long key) {
  return 0xffffffffu - static_cast<uint32_t>(key & 0xffffffffu);
}

__global__ void __launch_bounds__(kThreads)
    merge_kernel(const float* __restrict__ scores, int64_t ld, const uint8_t* __restrict__ valid, int cols,
                 int64_t base, int k, const float* __restrict__ in_scores, const int64_t* __restrict__ in_rows,
                 float* __restrict__ out_scores, int64_t* __restrict__ out_rows) {
  __shared__ unsigned long long keys[kKeys];
  __shared__ int count;
  const int64_t q = blockIdx.x;
  const float* srow = scores + q * ld;
  const float* ls = in_scores + q * k;
  const int64_t* lr = in_rows + q * k;
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  // The running k-th: a tile entry must beat it to matter (0 while the list is not full).
  const unsigned long long threshold = lr[k - 1] >= 0 ? make_key(ls[k - 1], static_cast<uint32_t>(k - 1)) : 0ull;
  for (int i = threadIdx.x; i < k; i += kThreads) {
    if (lr[i] >= 0) keys[atomicAdd(&count, 1)] = make_key(ls[i], static_cast<uint32_t>(i));
  }
  for (int j = threadIdx.x; j < cols; j += kThreads) {
    const float v = srow[j];
    if ((valid != nullptr && valid[j] == 0) || isnan(v)) continue;
    const unsigned long long key = make_key(v, static_cast<uint32_t>(k + j));
    if (key > threshold) keys[atomicAdd(&count, 1)] = key;
  }
  __syncthreads();
  const int n = count;
  int padded = 1;
  while (padded < n) padded <<= 1;
  for (int i = n + threadIdx.x; i < padded; i += kThreads) keys[i] = 0ull;
  __syncthreads();
  // Bitonic sort, descending: the keys are distinct, so the order is the same on every run.
  for (int size = 2; size <= padded; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < padded; i += kThreads) {
        const int j = i ^ stride;
        if (j > i) {
          const unsigned long long a = keys[i], b = keys[j];
          const bool descending = (i & size) == 0;
          if (descending ? a < b : a > b) {
            keys[i] = b;
            keys[j] = a;
          }
        }
      }
      __syncthreads();
    }
  }
  for (int i = threadIdx.x; i < k; i += kThreads) {
    float s = -INFINITY;
    int64_t r = -1;
    if (i < n) {
      const unsigned long long key = keys[i];
      const uint32_t idx = key_index(key);
      s = key_score(key);
      r = idx < static_cast<uint32_t>(k) ? lr[idx] : base + static_cast<int64_t>(idx - static_cast<uint32_t>(k));
    }
    out_scores[q * k + i] = s;
    out_rows[q * k + i] = r;
  }
}

__global__ void clear_kernel(float* scores, int64_t* rows, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    scores[i] = -INFINITY;
    rows[i] = -1;
  }
}

}  // namespace

void retrieval_topk_merge(const RetrievalTopkArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.k >= 1 && a.k <= kRetrievalTopKMax,
               "retrieval_topk_merge: k = " << a.k << " (1.." << kRetrievalTopKMax << ")");
  FLURRY_CHECK(a.rows >= 0 && a.rows < (int64_t{1} << 31) && a.cols >= 0 && a.cols <= kRetrievalTileMaxCols,
               "retrieval_topk_merge: " << a.rows << " x " << a.cols << " tile (at most " << kRetrievalTileMaxCols
                                        << " columns)");
  FLURRY_CHECK(a.ld_scores >= a.cols && a.base >= 0, "retrieval_topk_merge: ld " << a.ld_scores << ", base " << a.base);
  if (a.rows == 0) return;
  FLURRY_CHECK(a.in_scores && a.in_rows && a.out_scores && a.out_rows && (a.cols == 0 || a.scores),
               "retrieval_topk_merge: null pointer");
  FLURRY_CHECK(a.in_scores != a.out_scores && a.in_rows != a.out_rows, "retrieval_topk_merge: in place");
  merge_kernel<<<static_cast<unsigned>(a.rows), kThreads, 0, stream>>>(a.scores, a.ld_scores, a.valid,
                                                                        static_cast<int>(a.cols), a.base, a.k,
                                                                        a.in_scores, a.in_rows, a.out_scores,
                                                                        a.out_rows);
  FLURRY_LAUNCH_CHECK("retrieval_topk_merge", stream);
}

void retrieval_topk_clear(float* scores, int64_t* rows_out, int64_t rows, int k, cudaStream_t stream) {
  const int64_t n = rows * k;
  if (n == 0) return;
  clear_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(scores, rows_out, n);
  FLURRY_LAUNCH_CHECK("retrieval_topk_clear", stream);
}

}  // namespace flurry
