#include "kernels/embed_layernorm.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/device_types.cuh"

namespace flurry {

namespace {

// One warp per row, four rows per block. The fp32 sum row lives in the warp's slice of dynamic
// shared memory (d floats), so the variance is the centred sum over exact fp32 values and the
// tables are read once; d up to 3072 keeps 4 x 12 KiB within the 48 KiB default.
constexpr int kRowsPerBlock = 4;
constexpr int kThreads = 32 * kRowsPerBlock;
constexpr int64_t kMaxDim = 3072;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sequence of row r: the last b with cu[b] <= r (cu is non-decreasing; empty sequences repeat).
__device__ __forceinline__ int sequence_of(const int32_t* cu, int batch, int64_t r) {
  int lo = 0, hi = batch - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (cu[mid] <= r) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    embed_layernorm_kernel(const int32_t* __restrict__ ids, const int32_t* __restrict__ cu, int batch,
                           const T* __restrict__ word, const T* __restrict__ pos, const T* __restrict__ type_row,
                           const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ out,
                           int32_t* __restrict__ error, int64_t rows, int64_t vocab, int64_t n_pos, int d,
                           float eps) {
  extern __shared__ float srow[];
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + warp;
  if (r >= rows) return;
  float* h = srow + warp * d;
  int64_t p = 0;
  int padding = 0;  // a row past cu[batch]: the tail of a fixed-size (graph) batch
  if (lane == 0) {
    if (r >= cu[batch]) {
      padding = 1;
    } else {
      p = r - cu[sequence_of(cu, batch, r)];
    }
  }
  p = __shfl_sync(0xffffffffu, p, 0);
  padding = __shfl_sync(0xffffffffu, padding, 0);
  T* o = out + r * d;
  if (padding != 0) {  // zeros; its id is never read and nothing is flagged
    for (int i = lane; i < d; i += 32) o[i] = from_f32<T>(0.0f);
    return;
  }
  int64_t id = ids[r];
  int32_t bad = 0;
  if (id < 0 || id >= vocab) {
    bad |= kEmbedBadToken;
    id = id < 0 ? 0 : vocab - 1;
  }
  if (p < 0 || p >= n_pos) {
    bad |= kEmbedBadPosition;
    p = p < 0 ? 0 : n_pos - 1;
  }
  if (bad != 0 && lane == 0) atomicOr(error, bad);
  const T* w = word + id * d;
  const T* pe = pos + p * d;
  float sum = 0.0f;
  for (int i = lane; i < d; i += 32) {
    const float v = to_f32(w[i]) + to_f32(pe[i]) + to_f32(type_row[i]);
    h[i] = v;
    sum += v;
  }
  const float mean = warp_sum(sum) / static_cast<float>(d);
  float sq = 0.0f;
  for (int i = lane; i < d; i += 32) {  // each lane reads back only what it wrote: no sync needed
    const float c = h[i] - mean;
    sq += c * c;
  }
  const float inv = rsqrtf(warp_sum(sq) / static_cast<float>(d) + eps);
  for (int i = lane; i < d; i += 32) {
    o[i] = from_f32<T>((h[i] - mean) * inv * to_f32(gamma[i]) + to_f32(beta[i]));
  }
}

template <typename T>
void launch_typed(const EmbedLayerNormArgs& a, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((a.rows + kRowsPerBlock - 1) / kRowsPerBlock);
  const size_t smem = sizeof(float) * static_cast<size_t>(kRowsPerBlock * a.d);
  embed_layernorm_kernel<T><<<blocks, kThreads, smem, stream>>>(
      a.ids, a.cu_seqlens, a.batch, static_cast<const T*>(a.word), static_cast<const T*>(a.pos),
      static_cast<const T*>(a.type_row), static_cast<const T*>(a.gamma), static_cast<const T*>(a.beta),
      static_cast<T*>(a.out), a.error, a.rows, a.vocab, a.n_pos, static_cast<int>(a.d), a.eps);
  FLURRY_LAUNCH_CHECK("embed_layernorm_kernel", stream);
}

}  // namespace

void embed_layernorm(const EmbedLayerNormArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.rows >= 0 && a.batch >= 0, "embed_layernorm: rows " << a.rows << ", batch " << a.batch);
  if (a.rows == 0) return;
  FLURRY_CHECK(a.batch > 0, "embed_layernorm: " << a.rows << " rows in an empty batch");
  FLURRY_CHECK(a.ids && a.cu_seqlens && a.word && a.pos && a.type_row && a.gamma && a.beta && a.out && a.error,
               "embed_layernorm: null pointer");
  FLURRY_CHECK(a.d >= 1 && a.d <= kMaxDim, "embed_layernorm: d " << a.d << " outside [1, " << kMaxDim << "]");
  FLURRY_CHECK(a.vocab >= 1 && a.n_pos >= 1, "embed_layernorm: empty table");
  switch (a.type) {
    case DType::F16: launch_typed<__half>(a, stream); return;
    case DType::BF16: launch_typed<__nv_bfloat16>(a, stream); return;
    default: FLURRY_FAIL("embed_layernorm: dtype " << dtype_name(a.type) << " is not f16 or bf16");
  }
}

}  // namespace flurry
