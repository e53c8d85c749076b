#include "kernels/dlrm/topk.cuh"

#include <algorithm>
#include <cmath>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;  // 8-bit radix digits

// Order-preserving key: a larger float has a larger key. -0 is folded onto +0 (they compare
// equal as floats, so they must tie here too). Key 0 would be a NaN's, so it marks "not valid".
__device__ __forceinline__ uint32_t score_key(float v) {
  if (v == 0.0f) v = 0.0f;
  const uint32_t b = __float_as_uint(v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ uint32_t load_key(const float* __restrict__ srow, const uint8_t* __restrict__ mrow,
                                             int64_t c) {
  const float v = srow[c];
  if (mrow != nullptr && mrow[c] == 0) return 0u;
  if (!(v > -INFINITY)) return 0u;  // -inf and NaN are excluded
  return score_key(v);
}

// Warp 0 finds the digit where the count of keys from the top reaches `remaining`: each lane owns
// 8 bins, a suffix sum across lanes locates the lane, the lane scans its bins from the top.
__device__ __forceinline__ void select_digit(const int* hist, int remaining, int* s_digit, int* s_above) {
  const int lane = threadIdx.x & 31;
  int cnt[8];
  int local = 0;
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    cnt[e] = hist[lane * 8 + e];
    local += cnt[e];
  }
  int suffix = local;  // keys in the bins of this lane and every lane above
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_down_sync(0xffffffffu, suffix, o);
    if (lane + o < 32) suffix += t;
  }
  const int above = suffix - local;
  if (above < remaining && remaining <= suffix) {
    int acc = above;
    for (int e = 7; e >= 0; --e) {
      if (acc + cnt[e] >= remaining) {
        *s_digit = lane * 8 + e;
        *s_above = acc;
        break;
      }
      acc += cnt[e];
    }
  }
}

template <bool CACHED>
__global__ void __launch_bounds__(kThreads)
    topk_kernel(const float* __restrict__ scores, int64_t ld_scores, const uint8_t* __restrict__ mask,
                int64_t ld_mask, int64_t rows, int64_t cols, int k, float* __restrict__ out_scores,
                int32_t* __restrict__ out_index) {
  extern __shared__ uint32_t cached[];  // [cols] keys when CACHED
  __shared__ int hist[kBins];
  __shared__ uint32_t sel_key[kTopKMax];
  __shared__ int32_t sel_idx[kTopKMax];
  __shared__ int s_valid, s_digit, s_above, s_slot;
  __shared__ int s_warp[kWarps];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* srow = scores + row * ld_scores;
    const uint8_t* mrow = mask ? mask + row * ld_mask : nullptr;
    auto key_at = [&](int64_t c) -> uint32_t { return CACHED ? cached[c] : load_key(srow, mrow, c); };

    // Pass 0 also counts the valid columns (and fills the cache).
    for (int b = tid; b < kBins; b += kThreads) hist[b] = 0;
    if (tid == 0) {
      s_valid = 0;
      s_slot = 0;
    }
    __syncthreads();
    int local_valid = 0;
    for (int64_t c = tid; c < cols; c += kThreads) {
      const uint32_t key = load_key(srow, mrow, c);
      if (CACHED) cached[c] = key;
      if (key != 0u) {
        ++local_valid;
        atomicAdd(&hist[key >> 24], 1);
      }
    }
    if (local_valid) atomicAdd(&s_valid, local_valid);
    __syncthreads();
    const int kk = min(k, s_valid);

    uint32_t prefix = 0, pmask = 0;
    int remaining = kk;
    for (int pass = 0; pass < 4 && kk > 0; ++pass) {
      const int shift = 24 - 8 * pass;
      if (pass > 0) {
        for (int b = tid; b < kBins; b += kThreads) hist[b] = 0;
        __syncthreads();
        for (int64_t c = tid; c < cols; c += kThreads) {
          const uint32_t key = key_at(c);
          if (key != 0u && (key & pmask) == prefix) atomicAdd(&hist[(key >> shift) & 0xFFu], 1);
        }
        __syncthreads();
      }
      if (warp == 0) select_digit(hist, remaining, &s_digit, &s_above);
      __syncthreads();
      remaining -= s_above;
      prefix |= static_cast<uint32_t>(s_digit) << shift;
      pmask |= 0xFFu << shift;
      __syncthreads();  // s_digit / s_above are rewritten by the next pass
    }

    // Gather: every key above the threshold (any order: they are ranked below), then the first
    // `remaining` columns equal to it in index order (a block-wide scan per tile of columns).
    const uint32_t thr = prefix;
    const int n_above = kk - remaining;
    int eq_base = 0;
    for (int64_t base = 0; kk > 0 && base < cols; base += kThreads) {
      const int64_t c = base + tid;
      const uint32_t key = c < cols ? key_at(c) : 0u;
      if (key != 0u && key > thr) {
        const int slot = atomicAdd(&s_slot, 1);
        sel_key[slot] = key;
        sel_idx[slot] = static_cast<int32_t>(c);
      }
      const bool eq = key != 0u && key == thr;
      const unsigned ballot = __ballot_sync(0xffffffffu, eq);
      if (lane == 0) s_warp[warp] = __popc(ballot);
      __syncthreads();
      int before = 0, tile = 0;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        before += w < warp ? s_warp[w] : 0;
        tile += s_warp[w];
      }
      const int rank = eq_base + before + __popc(ballot & ((1u << lane) - 1u));
      if (eq && rank < remaining) {
        sel_key[n_above + rank] = key;
        sel_idx[n_above + rank] = static_cast<int32_t>(c);
      }
      eq_base += tile;
      __syncthreads();  // s_warp is rewritten by the next tile
    }
    __syncthreads();

    // Rank the kk winners: descending key, then ascending index.
    if (tid < kk) {
      const uint32_t key = sel_key[tid];
      const int32_t idx = sel_idx[tid];
      int rank = 0;
      for (int u = 0; u < kk; ++u) {
        const uint32_t ku = sel_key[u];
        rank += (ku > key || (ku == key && sel_idx[u] < idx)) ? 1 : 0;
      }
      out_scores[row * k + rank] = srow[idx];
      out_index[row * k + rank] = idx;
    } else if (tid < k) {
      out_scores[row * k + tid] = -INFINITY;
      out_index[row * k + tid] = -1;
    }
    __syncthreads();  // the shared state is reset for the next row
  }
}

}  // namespace

void topk_rows(const TopKArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.k >= 1 && a.k <= kTopKMax, "topk_rows: k = " << a.k << " (1.." << kTopKMax << ")");
  FLURRY_CHECK(a.rows >= 0 && a.cols >= 0 && a.cols < (int64_t{1} << 31),
               "topk_rows: bad shape rows=" << a.rows << " cols=" << a.cols);
  FLURRY_CHECK(a.ld_scores >= a.cols && (a.mask == nullptr || a.ld_mask >= a.cols),
               "topk_rows: ld_scores " << a.ld_scores << " / ld_mask " << a.ld_mask << " < cols " << a.cols);
  if (a.rows == 0) return;
  FLURRY_CHECK(a.out_scores && a.out_index && (a.cols == 0 || a.scores), "topk_rows: null pointer");
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(a.rows, int64_t{1} << 20));
  if (a.cols <= kTopKCachedCols) {
    const size_t smem = static_cast<size_t>(std::max<int64_t>(a.cols, 1)) * sizeof(uint32_t);
    topk_kernel<true><<<grid, kThreads, smem, stream>>>(a.scores, a.ld_scores, a.mask, a.ld_mask, a.rows, a.cols,
                                                       a.k, a.out_scores, a.out_index);
  } else {
    topk_kernel<false><<<grid, kThreads, 0, stream>>>(a.scores, a.ld_scores, a.mask, a.ld_mask, a.rows, a.cols,
                                                     a.k, a.out_scores, a.out_index);
  }
  FLURRY_LAUNCH_CHECK("topk_kernel", stream);
}

}  // namespace flurry
