#include "kernels/dlrm/interaction.cuh"
#include "runtime/cuda/device_types.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/gemm_gpu.h"

namespace flurry {

namespace {

// ---- The triangles: row i of an m x m triangle holds pairs (i, j) for j in [first_col, end_col),
// and starts at flat index row_start(i). Closed forms, so a thread finds its pair by a binary
// search over rows instead of a table.

__host__ __device__ __forceinline__ int64_t row_start(PairOrder p, int64_t m, int64_t i) {
  switch (p) {
    case PairOrder::StrictLower: return i * (i - 1) / 2;
    case PairOrder::LowerWithDiag: return i * (i + 1) / 2;
    case PairOrder::StrictUpper: return i * (m - 1) - i * (i - 1) / 2;
    case PairOrder::UpperWithDiag: return i * m - i * (i - 1) / 2;
  }
  return 0;
}
__device__ __forceinline__ int first_col(PairOrder p, int i) {
  return p == PairOrder::StrictUpper ? i + 1 : p == PairOrder::UpperWithDiag ? i : 0;
}
__device__ __forceinline__ int end_col(PairOrder p, int m, int i) {
  return p == PairOrder::StrictLower ? i : p == PairOrder::LowerWithDiag ? i + 1 : m;
}

// (i, j) of flat pair index q < pair count: i is the last row starting at or before q (rows with
// no pairs share their start with the next row and are never the last such row).
__device__ __forceinline__ void pair_of(PairOrder p, int m, int64_t q, int* i_out, int* j_out) {
  int lo = 0, hi = m - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (row_start(p, m, mid) <= q) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  *i_out = lo;
  *j_out = first_col(p, lo) + static_cast<int>(q - row_start(p, m, lo));
}

// ---- dot: one block per sample (grid-strided). The m vectors go to shared memory as fp32 with a
// row stride of dim + 1, so threads reading different rows at the same k hit different banks; a
// thread per pair then sums over k. m <= 64 vectors of dim <= ~256: at most a few thousand pairs.
constexpr int kDotThreads = 128;

template <typename T>
__global__ void __launch_bounds__(kDotThreads)
    dot_interaction_kernel(const T* __restrict__ feats, int64_t ld_feats, int64_t n, int m, int dim,
                           PairOrder pairs, bool include_first, T* __restrict__ out, int64_t ld_out) {
  extern __shared__ float sm[];
  const int stride = dim + 1;
  const int total = m * dim;
  const int64_t npairs = row_start(pairs, m, m);
  for (int64_t s = blockIdx.x; s < n; s += gridDim.x) {
    const T* row = feats + s * ld_feats;
    T* orow = out + s * ld_out;
    for (int e = threadIdx.x; e < total; e += blockDim.x) {
      const int r = e / dim;
      sm[r * stride + (e - r * dim)] = to_f32(row[e]);
    }
    if (include_first) {
      for (int k = threadIdx.x; k < dim; k += blockDim.x) orow[k] = row[k];
    }
    __syncthreads();
    T* pout = orow + (include_first ? dim : 0);
    for (int64_t q = threadIdx.x; q < npairs; q += blockDim.x) {
      int i, j;
      pair_of(pairs, m, q, &i, &j);
      const float* vi = sm + i * stride;
      const float* vj = sm + j * stride;
      float acc = 0.0f;
      for (int k = 0; k < dim; ++k) acc = fmaf(vi[k], vj[k], acc);
      pout[q] = from_f32<T>(acc);
    }
    __syncthreads();  // the next sample overwrites sm
  }
}

// ---- outer: z (width scalars) in shared memory; each thread writes VEC consecutive outputs of the
// row [z[0 .. prefix), z_p z_q ...] as one 16-byte store when the output allows, so a warp writes
// 512 contiguous bytes per instruction. The pair of the first output is found by binary search,
// the following ones by stepping along the row.
constexpr int kOuterThreads = 256;
constexpr int kOuterChunksPerThread = 4;

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T, int VEC>
__global__ void __launch_bounds__(kOuterThreads)
    outer_interaction_kernel(const T* __restrict__ feats, int64_t ld_feats, int64_t n, int width, int prefix,
                             PairOrder pairs, T* __restrict__ out, int64_t ld_out, int64_t out_width,
                             bool vec_store) {
  extern __shared__ float z[];
  const int64_t chunks = (out_width + VEC - 1) / VEC;
  for (int64_t s = blockIdx.y; s < n; s += gridDim.y) {
    const T* row = feats + s * ld_feats;
    for (int e = threadIdx.x; e < width; e += blockDim.x) z[e] = to_f32(row[e]);
    __syncthreads();
    T* orow = out + s * ld_out;
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t q0 = c * VEC;
      float v[VEC];
      int i = -1, j = 0;
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const int64_t q = q0 + e;
        if (q >= out_width) {
          v[e] = 0.0f;
        } else if (q < prefix) {
          v[e] = z[q];
        } else {
          if (i < 0) {
            pair_of(pairs, width, q - prefix, &i, &j);
          } else if (++j >= end_col(pairs, width, i)) {
            do {
              ++i;
              j = first_col(pairs, i);
            } while (j >= end_col(pairs, width, i));
          }
          v[e] = z[i] * z[j];
        }
      }
      if (vec_store && q0 + VEC <= out_width) {
        Pack<T, VEC> p;
#pragma unroll
        for (int e = 0; e < VEC; ++e) p.v[e] = from_f32<T>(v[e]);
        *reinterpret_cast<Pack<T, VEC>*>(orow + q0) = p;
      } else {
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          if (q0 + e < out_width) orow[q0 + e] = from_f32<T>(v[e]);
        }
      }
    }
    __syncthreads();  // the next sample overwrites z
  }
}

// ---- cross: x_out = x0 * u + x_in, one thread per element (memory bound; rows are 100s wide).
constexpr int kCrossThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kCrossThreads)
    cross_combine_kernel(const T* __restrict__ x0, int64_t ld_x0, const T* x_in, T* x_out, int64_t ld_x,
                         const float* __restrict__ u, int64_t n, int64_t width) {
  // x_in and x_out may alias: each element is read and written by one thread.
  for (int64_t r = blockIdx.y; r < n; r += gridDim.y) {
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < width;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float v = fmaf(to_f32(x0[r * ld_x0 + c]), u[r * width + c], to_f32(x_in[r * ld_x + c]));
      x_out[r * ld_x + c] = from_f32<T>(v);
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Opts the kernel into more than the default 48 KiB of dynamic shared memory when it needs it.
template <typename K>
void reserve_smem(K kernel, size_t bytes, const char* what) {
  int dev = 0, optin = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  FLURRY_CHECK(bytes <= static_cast<size_t>(optin),
               what << ": needs " << bytes << " bytes of shared memory, the device offers " << optin);
  if (bytes > (size_t{48} << 10)) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

template <typename T>
void launch_dot(const DotInteractionArgs& a, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(a.m) * static_cast<size_t>(a.dim + 1) * sizeof(float);
  reserve_smem(dot_interaction_kernel<T>, smem, "dot_interaction");
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(a.n, int64_t{1} << 30));
  dot_interaction_kernel<T><<<grid, kDotThreads, smem, stream>>>(
      static_cast<const T*>(a.feats), a.ld_feats, a.n, static_cast<int>(a.m), static_cast<int>(a.dim), a.pairs,
      a.include_first, static_cast<T*>(a.out), a.ld_out);
  FLURRY_LAUNCH_CHECK("dot_interaction_kernel", stream);
}

template <typename T>
void launch_outer(const OuterInteractionArgs& a, cudaStream_t stream) {
  constexpr int kVec = static_cast<int>(16 / sizeof(T));
  const int64_t out_width = a.prefix + pair_order_count(a.pairs, a.width);
  const size_t smem = static_cast<size_t>(a.width) * sizeof(float);
  reserve_smem(outer_interaction_kernel<T, kVec>, smem, "outer_interaction");
  const bool vec_store = aligned16(a.out) && a.ld_out % kVec == 0;
  const int64_t chunks = (out_width + kVec - 1) / kVec;
  const int64_t per_block = static_cast<int64_t>(kOuterThreads) * kOuterChunksPerThread;
  const dim3 grid(static_cast<unsigned>((chunks + per_block - 1) / per_block),
                  static_cast<unsigned>(std::min<int64_t>(a.n, 65535)));
  outer_interaction_kernel<T, kVec><<<grid, kOuterThreads, smem, stream>>>(
      static_cast<const T*>(a.feats), a.ld_feats, a.n, static_cast<int>(a.width), static_cast<int>(a.prefix),
      a.pairs, static_cast<T*>(a.out), a.ld_out, out_width, vec_store);
  FLURRY_LAUNCH_CHECK("outer_interaction_kernel", stream);
}

template <typename T>
void launch_cross(const CrossLayerArgs& a, cudaStream_t stream) {
  const unsigned gx = static_cast<unsigned>(std::min<int64_t>((a.width + kCrossThreads - 1) / kCrossThreads, 1024));
  const unsigned gy = static_cast<unsigned>(std::min<int64_t>(a.n, 65535));
  cross_combine_kernel<T><<<dim3(gx, gy), kCrossThreads, 0, stream>>>(
      static_cast<const T*>(a.x0), a.ld_x0, static_cast<const T*>(a.x_in), static_cast<T*>(a.x_out), a.ld_x, a.u,
      a.n, a.width);
  FLURRY_LAUNCH_CHECK("cross_combine_kernel", stream);
}

void check_type(DType t, const char* what) {
  FLURRY_CHECK(t == DType::F32 || t == DType::F16 || t == DType::BF16,
               what << ": dtype " << dtype_name(t) << " is not f32, f16 or bf16");
}

}  // namespace

int64_t pair_order_count(PairOrder p, int64_t m) { return m <= 0 ? 0 : row_start(p, m, m); }

void dot_interaction(const DotInteractionArgs& a, cudaStream_t stream) {
  check_type(a.type, "dot_interaction");
  FLURRY_CHECK(a.n >= 0, "dot_interaction: n = " << a.n);
  FLURRY_CHECK(a.m >= 1 && a.m <= 64 && a.dim >= 1 && a.dim <= 4096,
               "dot_interaction: " << a.m << " vectors of dim " << a.dim << " (m in 1..64, dim in 1..4096)");
  FLURRY_CHECK(a.ld_feats >= a.m * a.dim, "dot_interaction: ld_feats " << a.ld_feats << " < " << a.m * a.dim);
  const int64_t width = (a.include_first ? a.dim : 0) + pair_order_count(a.pairs, a.m);
  FLURRY_CHECK(a.ld_out >= width, "dot_interaction: ld_out " << a.ld_out << " < output width " << width);
  if (a.n == 0 || width == 0) return;
  FLURRY_CHECK(a.feats && a.out, "dot_interaction: null pointer");
  switch (a.type) {
    case DType::F32: launch_dot<float>(a, stream); return;
    case DType::F16: launch_dot<__half>(a, stream); return;
    default: launch_dot<__nv_bfloat16>(a, stream); return;
  }
}

void outer_interaction(const OuterInteractionArgs& a, cudaStream_t stream) {
  check_type(a.type, "outer_interaction");
  FLURRY_CHECK(a.n >= 0, "outer_interaction: n = " << a.n);
  FLURRY_CHECK(a.width >= 1 && a.width <= 8192, "outer_interaction: width " << a.width << " (1..8192)");
  FLURRY_CHECK(a.prefix >= 0 && a.prefix <= a.width,
               "outer_interaction: prefix " << a.prefix << " outside the row's width " << a.width);
  FLURRY_CHECK(a.ld_feats >= a.width, "outer_interaction: ld_feats " << a.ld_feats << " < " << a.width);
  const int64_t width = a.prefix + pair_order_count(a.pairs, a.width);
  FLURRY_CHECK(a.ld_out >= width, "outer_interaction: ld_out " << a.ld_out << " < output width " << width);
  if (a.n == 0 || width == 0) return;
  FLURRY_CHECK(a.feats && a.out, "outer_interaction: null pointer");
  switch (a.type) {
    case DType::F32: launch_outer<float>(a, stream); return;
    case DType::F16: launch_outer<__half>(a, stream); return;
    default: launch_outer<__nv_bfloat16>(a, stream); return;
  }
}

void cat_interaction(const void* feats, int64_t ld_feats, int64_t n, int64_t width, void* out, int64_t ld_out,
                     DType type, cudaStream_t stream) {
  check_type(type, "cat_interaction");
  FLURRY_CHECK(n >= 0 && width >= 0 && ld_feats >= width && ld_out >= width,
               "cat_interaction: n " << n << " width " << width << " ld_feats " << ld_feats << " ld_out " << ld_out);
  if (n == 0 || width == 0 || (feats == out && ld_feats == ld_out)) return;
  FLURRY_CHECK(feats && out, "cat_interaction: null pointer");
  const size_t es = dtype_size(type);
  CUDA_CHECK(cudaMemcpy2DAsync(out, static_cast<size_t>(ld_out) * es, feats, static_cast<size_t>(ld_feats) * es,
                               static_cast<size_t>(width) * es, static_cast<size_t>(n), cudaMemcpyDeviceToDevice,
                               stream));
}

void cross_combine(const CrossLayerArgs& a, cudaStream_t stream) {
  check_type(a.type, "cross_combine");
  FLURRY_CHECK(a.n >= 0 && a.width >= 1 && a.ld_x >= a.width && a.ld_x0 >= a.width,
               "cross_combine: n " << a.n << " width " << a.width << " ld_x " << a.ld_x << " ld_x0 " << a.ld_x0);
  if (a.n == 0) return;
  FLURRY_CHECK(a.x0 && a.x_in && a.x_out && a.u, "cross_combine: null pointer");
  FLURRY_CHECK(a.x0 != a.x_out, "cross_combine: x_out may not alias x0");
  switch (a.type) {
    case DType::F32: launch_cross<float>(a, stream); return;
    case DType::F16: launch_cross<__half>(a, stream); return;
    default: launch_cross<__nv_bfloat16>(a, stream); return;
  }
}

void cross_layer(GemmLt& lt, const CrossLayerArgs& a, void* workspace, size_t workspace_bytes,
                 cudaStream_t stream) {
  check_type(a.type, "cross_layer");
  FLURRY_CHECK(a.n >= 0 && a.width >= 1 && a.rank >= 1, "cross_layer: n " << a.n << " width " << a.width
                                                                         << " rank " << a.rank);
  if (a.n == 0) return;
  FLURRY_CHECK(a.v && a.w && a.bias && a.t && a.u, "cross_layer: null weight or scratch");
  // t[n, rank] = x_in V^T
  GemmArgs g1;
  g1.m = a.n;
  g1.n = a.rank;
  g1.k = a.width;
  g1.trans_b = true;
  g1.a = a.x_in;
  g1.lda = a.ld_x;
  g1.b = a.v;
  g1.ldb = a.width;
  g1.c = a.t;
  g1.ldc = a.rank;
  g1.ab_type = g1.c_type = a.type;
  gemm_gpu(lt, g1, workspace, workspace_bytes, stream);
  // u[n, width] = t W^T + b, kept in fp32 so that the only rounding of the layer is x_out's.
  GemmArgs g2;
  g2.m = a.n;
  g2.n = a.width;
  g2.k = a.rank;
  g2.trans_b = true;
  g2.a = a.t;
  g2.lda = a.rank;
  g2.b = a.w;
  g2.ldb = a.rank;
  g2.c = a.u;
  g2.ldc = a.width;
  g2.bias = a.bias;
  g2.ab_type = a.type;
  g2.c_type = DType::F32;
  g2.epilogue = Epilogue::Bias;
  gemm_gpu(lt, g2, workspace, workspace_bytes, stream);
  cross_combine(a, stream);
}

}  // namespace flurry
