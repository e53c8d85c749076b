#include "kernels/layernorm.cuh"
#include "runtime/cuda/device_types.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {


__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per row (rows are short: 384..4096 features, so a warp's 32 lanes with 16-byte accesses
// cover 256..1024 bytes per instruction), kRowsPerBlock rows per block.
constexpr int kRowsPerBlock = 4;
constexpr int kThreads = 32 * kRowsPerBlock;

// The row lives in registers: lane owns vectors lane, lane + 32, ... (ITEMS of them, VEC elements
// each), so each load instruction of the warp is contiguous. Two-pass statistics from registers.
template <typename T, int VEC, int ITEMS>
__global__ void __launch_bounds__(kThreads)
    layernorm_reg_kernel(const T* x, const T* __restrict__ add, T* sum_out,
                         const T* __restrict__ gamma, const T* __restrict__ beta, T* y,
                         int64_t rows, int dim, float eps) {
  struct alignas(sizeof(T) * VEC) Pack {
    T v[VEC];
  };
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int nvec = dim / VEC;
  const int64_t base = row * dim;
  // x and y/sum_out may alias, so no __restrict__ on them and all reads precede all writes.
  float h[ITEMS][VEC];
  float sum = 0.0f;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int vi = lane + it * 32;
    if (vi < nvec) {
      const Pack px = reinterpret_cast<const Pack*>(x + base)[vi];
      Pack pa{};
      if (add) pa = reinterpret_cast<const Pack*>(add + base)[vi];
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        h[it][e] = to_f32(px.v[e]) + (add ? to_f32(pa.v[e]) : 0.0f);
        sum += h[it][e];
      }
    } else {
#pragma unroll
      for (int e = 0; e < VEC; ++e) h[it][e] = 0.0f;
    }
  }
  const float mean = warp_sum(sum) / static_cast<float>(dim);
  float sq = 0.0f;
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    if (lane + it * 32 < nvec) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const float d = h[it][e] - mean;
        sq += d * d;
      }
    }
  }
  const float inv = rsqrtf(warp_sum(sq) / static_cast<float>(dim) + eps);
#pragma unroll
  for (int it = 0; it < ITEMS; ++it) {
    const int vi = lane + it * 32;
    if (vi < nvec) {
      const Pack g = reinterpret_cast<const Pack*>(gamma)[vi];
      const Pack b = reinterpret_cast<const Pack*>(beta)[vi];
      Pack out, s;
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        s.v[e] = from_f32<T>(h[it][e]);
        out.v[e] = from_f32<T>((h[it][e] - mean) * inv * to_f32(g.v[e]) + to_f32(b.v[e]));
      }
      if (sum_out) reinterpret_cast<Pack*>(sum_out + base)[vi] = s;
      reinterpret_cast<Pack*>(y + base)[vi] = out;
    }
  }
}

// Any dim and alignment: scalar accesses, three passes over the row (sum, centred squares, output).
// The row is re-read from global memory (L1/L2 hits for these sizes) instead of held in registers.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    layernorm_loop_kernel(const T* x, const T* __restrict__ add, T* sum_out,
                          const T* __restrict__ gamma, const T* __restrict__ beta, T* y,
                          int64_t rows, int dim, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const T* xr = x + row * dim;
  const T* ar = add ? add + row * dim : nullptr;
  float sum = 0.0f;
  for (int i = lane; i < dim; i += 32) sum += to_f32(xr[i]) + (ar ? to_f32(ar[i]) : 0.0f);
  const float mean = warp_sum(sum) / static_cast<float>(dim);
  float sq = 0.0f;
  for (int i = lane; i < dim; i += 32) {
    const float d = to_f32(xr[i]) + (ar ? to_f32(ar[i]) : 0.0f) - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(warp_sum(sq) / static_cast<float>(dim) + eps);
  // Each element is read and then written by the same lane, after every lane's reads of the
  // statistics passes (the reductions depend on them), so sum_out / y may alias x.
  for (int i = lane; i < dim; i += 32) {
    const float hv = to_f32(xr[i]) + (ar ? to_f32(ar[i]) : 0.0f);
    if (sum_out) sum_out[row * dim + i] = from_f32<T>(hv);
    y[row * dim + i] = from_f32<T>((hv - mean) * inv * to_f32(gamma[i]) + to_f32(beta[i]));
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename T>
void launch_typed(const LayerNormArgs& a, cudaStream_t stream) {
  constexpr int kVec = static_cast<int>(16 / sizeof(T));
  const T* x = static_cast<const T*>(a.x);
  const T* add = static_cast<const T*>(a.add);
  T* sum_out = static_cast<T*>(a.sum_out);
  const T* gamma = static_cast<const T*>(a.gamma);
  const T* beta = static_cast<const T*>(a.beta);
  T* y = static_cast<T*>(a.y);
  const int dim = static_cast<int>(a.dim);
  const unsigned grid = static_cast<unsigned>((a.rows + kRowsPerBlock - 1) / kRowsPerBlock);
  const bool vec_ok = a.dim % kVec == 0 && aligned16(x) && aligned16(add) && aligned16(sum_out) &&
                      aligned16(gamma) && aligned16(beta) && aligned16(y);
  const int64_t per_lane = (a.dim / kVec + 31) / 32;  // vectors per lane
#define FLURRY_LN_REG(ITEMS)                                                                      \
  layernorm_reg_kernel<T, kVec, ITEMS>                                                           \
      <<<grid, kThreads, 0, stream>>>(x, add, sum_out, gamma, beta, y, a.rows, dim, a.eps);       \
  FLURRY_LAUNCH_CHECK("layernorm_reg_kernel", stream);                                            \
  return
  if (vec_ok) {
    if (per_lane <= 1) { FLURRY_LN_REG(1); }
    if (per_lane <= 2) { FLURRY_LN_REG(2); }
    if (per_lane <= 4) { FLURRY_LN_REG(4); }
    if (per_lane <= 8) { FLURRY_LN_REG(8); }
    if (per_lane <= 16) { FLURRY_LN_REG(16); }
  }
#undef FLURRY_LN_REG
  layernorm_loop_kernel<T>
      <<<grid, kThreads, 0, stream>>>(x, add, sum_out, gamma, beta, y, a.rows, dim, a.eps);
  FLURRY_LAUNCH_CHECK("layernorm_loop_kernel", stream);
}

}  // namespace

void layernorm(const LayerNormArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.x && a.gamma && a.beta && a.y, "layernorm: null pointer");
  FLURRY_CHECK(a.rows >= 0 && a.dim > 0 && a.dim <= (int64_t{1} << 24),
               "layernorm: bad shape rows=" << a.rows << " dim=" << a.dim);
  FLURRY_CHECK(a.sum_out == nullptr || a.add != nullptr, "layernorm: sum_out needs add");
  if (a.rows == 0) return;
  switch (a.type) {
    case DType::F32: launch_typed<float>(a, stream); return;
    case DType::F16: launch_typed<__half>(a, stream); return;
    case DType::BF16: launch_typed<__nv_bfloat16>(a, stream); return;
    default: FLURRY_FAIL("layernorm: dtype " << dtype_name(a.type) << " is not f32, f16 or bf16");
  }
}

}  // namespace flurry
