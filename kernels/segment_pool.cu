#include "kernels/segment_pool.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/device_types.cuh"

namespace flurry {

namespace {

// One block per sequence. Warp w reduces rows w, w + kWarps, ... into its own fp32 row of shared
// memory (lane i owns columns i, i + 32, ...: coalesced reads, no atomics); the kWarps partial rows
// are then combined by column, and the block reduces the squared norm. kWarps x d floats of
// dynamic shared memory: d <= 1536 stays within the 48 KiB default.
constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int64_t kMaxDim = 1536;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    segment_pool_kernel(const T* __restrict__ x, const int32_t* __restrict__ cu, float* __restrict__ out, int d,
                        SegmentPool mode, bool l2) {
  extern __shared__ float part[];  // [kWarps][d]
  __shared__ float red[kWarps];
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int b = static_cast<int>(blockIdx.x);
  const int64_t start = cu[b];
  const int n = cu[b + 1] - cu[b];
  const bool is_max = mode == SegmentPool::kMax;
  const int rows = mode == SegmentPool::kFirst ? min(n, 1) : n;
  float* mine = part + warp * d;
  for (int c = lane; c < d; c += 32) mine[c] = is_max ? -INFINITY : 0.0f;
  for (int t = warp; t < rows; t += kWarps) {
    const T* row = x + (start + t) * d;
    for (int c = lane; c < d; c += 32) {
      const float v = to_f32(row[c]);
      mine[c] = is_max ? fmaxf(mine[c], v) : mine[c] + v;
    }
  }
  __syncthreads();
  float div = 1.0f;
  if (mode == SegmentPool::kMean) div = static_cast<float>(n);
  if (mode == SegmentPool::kMeanSqrtLen) div = sqrtf(static_cast<float>(n));
  float sq = 0.0f;
  for (int c = tid; c < d; c += kThreads) {
    float v = part[c];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) v = is_max ? fmaxf(v, part[w * d + c]) : v + part[w * d + c];
    v = n == 0 ? 0.0f : v / div;
    part[c] = v;  // column c is read and written by this thread only
    sq += v * v;
  }
  float* o = out + static_cast<int64_t>(b) * d;
  if (!l2) {
    for (int c = tid; c < d; c += kThreads) o[c] = part[c];
    return;
  }
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, s);
  if (lane == 0) red[warp] = sq;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) total += red[w];
  const float inv = 1.0f / fmaxf(sqrtf(total), 1e-12f);
  for (int c = tid; c < d; c += kThreads) o[c] = part[c] * inv;
}

template <typename T>
void launch_typed(const SegmentPoolArgs& a, cudaStream_t stream) {
  const size_t smem = sizeof(float) * static_cast<size_t>(kWarps * a.d);
  segment_pool_kernel<T><<<static_cast<unsigned>(a.batch), kThreads, smem, stream>>>(
      static_cast<const T*>(a.x), a.cu_seqlens, a.out, static_cast<int>(a.d), a.mode, a.l2_normalize);
  FLURRY_LAUNCH_CHECK("segment_pool_kernel", stream);
}

}  // namespace

void segment_pool(const SegmentPoolArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.batch >= 0, "segment_pool: batch " << a.batch);
  if (a.batch == 0) return;
  FLURRY_CHECK(a.x && a.cu_seqlens && a.out, "segment_pool: null pointer");
  FLURRY_CHECK(a.d >= 1 && a.d <= kMaxDim, "segment_pool: d " << a.d << " outside [1, " << kMaxDim << "]");
  switch (a.type) {
    case DType::F16: launch_typed<__half>(a, stream); return;
    case DType::BF16: launch_typed<__nv_bfloat16>(a, stream); return;
    case DType::F32: launch_typed<float>(a, stream); return;
    default: FLURRY_FAIL("segment_pool: dtype " << dtype_name(a.type) << " is not f16, bf16 or f32");
  }
}

}  // namespace flurry
