#include "kernels/dlrm/outer_linear.cuh"
#include "runtime/cuda/device_types.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {

// A tile of the output is kBM samples x kBN outputs. z of the tile's samples sits in shared memory
// for the whole K loop (row stride width + 1: threads reading the same column of different samples
// hit different banks); each K step builds A's [kBM, BK] tile from it through the column table and
// stages W's [kBN, BK] tile, then multiplies.
constexpr int kBM = 64;
constexpr int kBN = 64;
constexpr uint32_t kCopy = 0xFFFFu;

// Tensor-core path (fp16/bf16, sm_80+): 4 warps as 2 x 2, each a 32 x 32 block of 2 x 2 WMMA
// 16x16x16 fragments. Tile rows of kTcLd elements (80 B) keep every fragment pointer 32 B aligned
// and spread the rows over the banks.
constexpr int kTcThreads = 128;
constexpr int kTcBK = 32;
constexpr int kTcLd = kTcBK + 8;
constexpr int kTcCLd = kBN + 4;  // the fp32 accumulator tile staged for the epilogue

// CUDA-core path (fp32, or 16-bit before sm_80): 16 x 16 threads, a 4 x 4 register block each.
constexpr int kSimtThreads = 256;
constexpr int kSimtBK = 16;

template <typename T>
struct alignas(16) Vec8 {
  T v[8];
};

// Column entry e of A for one sample's z (shared memory): z_i z_j in fp32, or z_i for a prefix
// column; rounded once to T, as outer_interaction stores it.
template <typename T>
__device__ __forceinline__ T a_value(const T* zrow, uint32_t e) {
  const uint32_t i = e >> 16, j = e & kCopy;
  if (j == kCopy) return zrow[i];
  return from_f32<T>(to_f32(zrow[i]) * to_f32(zrow[j]));
}

template <typename T>
__device__ __forceinline__ void load_z(T* zs, int zld, const T* __restrict__ feats, int64_t ld_feats, int64_t n,
                                       int width, int64_t m0) {
  for (int e = threadIdx.x; e < kBM * width; e += blockDim.x) {
    const int r = e / width, c = e - r * width;
    const int64_t s = m0 + r;
    zs[r * zld + c] = s < n ? feats[s * ld_feats + c] : from_f32<T>(0.0f);
  }
}

template <typename T>
__device__ __forceinline__ void store_y(void* y, int64_t ld_y, bool y_f32, int64_t s, int64_t o, float v,
                                        const float* bias, bool relu) {
  if (bias) v += bias[o];
  if (relu) v = fmaxf(v, 0.0f);
  if (y_f32) {
    static_cast<float*>(y)[s * ld_y + o] = v;
  } else {
    static_cast<T*>(y)[s * ld_y + o] = from_f32<T>(v);
  }
}

template <typename T>
__global__ void __launch_bounds__(kTcThreads)
    outer_linear_tc_kernel(const T* __restrict__ feats, int64_t ld_feats, int64_t n, int width,
                           const uint32_t* __restrict__ columns, int64_t in, const T* __restrict__ w, int64_t ldw,
                           const float* __restrict__ bias, int64_t out, bool relu, void* y, int64_t ld_y, bool y_f32,
                           bool vec_w) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem[];
  float* cs = reinterpret_cast<float*>(smem);       // [kBM][kTcCLd]
  T* as = reinterpret_cast<T*>(cs + kBM * kTcCLd);  // [kBM][kTcLd]
  T* ws = as + kBM * kTcLd;                         // [kBN][kTcLd]: B = W^T, column-major
  T* zs = ws + kBN * kTcLd;                         // [kBM][zld]
  const int zld = width + 1;
  const int tid = static_cast<int>(threadIdx.x), warp = tid >> 5, lane = tid & 31;
  const int64_t o0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBM;
  load_z(zs, zld, feats, ld_feats, n, width, m0);

  // W's tile: kBN rows x kTcBK columns = 256 vectors of 8, two per thread, fetched into registers
  // one step ahead so the global loads overlap the previous step's MMAs.
  Vec8<T> wreg[2];
  auto load_w = [&](int64_t k0) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int v = tid + kTcThreads * e, row = v >> 2, kv = (v & 3) * 8;
      const int64_t o = o0 + row, k = k0 + kv;
      if (vec_w && o < out && k + 8 <= in) {
        wreg[e] = *reinterpret_cast<const Vec8<T>*>(w + o * ldw + k);
      } else {
#pragma unroll
        for (int q = 0; q < 8; ++q) wreg[e].v[q] = (o < out && k + q < in) ? w[o * ldw + k + q] : from_f32<T>(0.0f);
      }
    }
  };
  load_w(0);
  __syncthreads();  // zs

  const int wm = warp >> 1, wn = warp & 1;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int a = 0; a < 2; ++a) {
#pragma unroll
    for (int b = 0; b < 2; ++b) wmma::fill_fragment(acc[a][b], 0.0f);
  }
  for (int64_t k0 = 0; k0 < in; k0 += kTcBK) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int v = tid + kTcThreads * e;
      *reinterpret_cast<Vec8<T>*>(ws + (v >> 2) * kTcLd + (v & 3) * 8) = wreg[e];
    }
    // A's tile: lane = column (one table lookup per K step), the warp's rows warp, warp + 4, ...
    const int64_t k = k0 + lane;
    const bool live = k < in;
    const uint32_t col = live ? __ldg(columns + k) : 0u;
#pragma unroll 4
    for (int r = warp; r < kBM; r += kTcThreads / 32) {
      as[r * kTcLd + lane] = live ? a_value(zs + r * zld, col) : from_f32<T>(0.0f);
    }
    __syncthreads();
    if (k0 + kTcBK < in) load_w(k0 + kTcBK);
#pragma unroll
    for (int kk = 0; kk < kTcBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb[2];
#pragma unroll
      for (int a = 0; a < 2; ++a) wmma::load_matrix_sync(fa[a], as + (wm * 32 + 16 * a) * kTcLd + kk, kTcLd);
#pragma unroll
      for (int b = 0; b < 2; ++b) wmma::load_matrix_sync(fb[b], ws + (wn * 32 + 16 * b) * kTcLd + kk, kTcLd);
#pragma unroll
      for (int a = 0; a < 2; ++a) {
#pragma unroll
        for (int b = 0; b < 2; ++b) wmma::mma_sync(acc[a][b], fa[a], fb[b], acc[a][b]);
      }
    }
    __syncthreads();  // the next step overwrites as and ws
  }
#pragma unroll
  for (int a = 0; a < 2; ++a) {
#pragma unroll
    for (int b = 0; b < 2; ++b) {
      wmma::store_matrix_sync(cs + (wm * 32 + 16 * a) * kTcCLd + wn * 32 + 16 * b, acc[a][b], kTcCLd,
                              wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int e = tid; e < kBM * kBN; e += kTcThreads) {
    const int r = e / kBN, c = e - r * kBN;
    const int64_t s = m0 + r, o = o0 + c;
    if (s < n && o < out) store_y<T>(y, ld_y, y_f32, s, o, cs[r * kTcCLd + c], bias, relu);
  }
#else
  __trap();  // the launcher sends 16-bit operands here only on sm_80 and later
#endif
}

template <typename T>
__global__ void __launch_bounds__(kSimtThreads)
    outer_linear_simt_kernel(const T* __restrict__ feats, int64_t ld_feats, int64_t n, int width,
                             const uint32_t* __restrict__ columns, int64_t in, const T* __restrict__ w, int64_t ldw,
                             const float* __restrict__ bias, int64_t out, bool relu, void* y, int64_t ld_y,
                             bool y_f32) {
  extern __shared__ __align__(128) unsigned char smem[];
  float* as = reinterpret_cast<float*>(smem);          // [kSimtBK][kBM]
  float* ws = as + kSimtBK * kBM;                      // [kSimtBK][kBN + 1]
  T* zs = reinterpret_cast<T*>(ws + kSimtBK * (kBN + 1));  // [kBM][zld]
  const int zld = width + 1;
  const int tid = static_cast<int>(threadIdx.x), tx = tid & 15, ty = tid >> 4;
  const int64_t o0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBM;
  load_z(zs, zld, feats, ld_feats, n, width, m0);
  __syncthreads();
  float acc[4][4];
#pragma unroll
  for (int p = 0; p < 4; ++p) {
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[p][q] = 0.0f;
  }
  for (int64_t k0 = 0; k0 < in; k0 += kSimtBK) {
    {  // A: thread (tx, ty) -> column ty, rows tx + 16 p
      const int64_t k = k0 + ty;
      const bool live = k < in;
      const uint32_t col = live ? __ldg(columns + k) : 0u;
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        const int r = tx + 16 * p;
        as[ty * kBM + r] = live ? to_f32(a_value(zs + r * zld, col)) : 0.0f;
      }
    }
    {  // W: thread (tx, ty) -> column tx, outputs ty + 16 q
      const int64_t k = k0 + tx;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int c = ty + 16 * q;
        const int64_t o = o0 + c;
        ws[tx * (kBN + 1) + c] = (o < out && k < in) ? to_f32(w[o * ldw + k]) : 0.0f;
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kSimtBK; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int p = 0; p < 4; ++p) av[p] = as[kk * kBM + ty + 16 * p];
#pragma unroll
      for (int q = 0; q < 4; ++q) bv[q] = ws[kk * (kBN + 1) + tx + 16 * q];
#pragma unroll
      for (int p = 0; p < 4; ++p) {
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[p][q] = fmaf(av[p], bv[q], acc[p][q]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int p = 0; p < 4; ++p) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t s = m0 + ty + 16 * p, o = o0 + tx + 16 * q;
      if (s < n && o < out) store_y<T>(y, ld_y, y_f32, s, o, acc[p][q], bias, relu);
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename K>
void reserve_smem(K kernel, size_t bytes) {
  int dev = 0, optin = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  FLURRY_CHECK(bytes <= static_cast<size_t>(optin),
               "outer_linear: needs " << bytes << " bytes of shared memory, the device offers " << optin);
  if (bytes > (size_t{48} << 10)) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

template <typename T>
void launch(const OuterLinearArgs& a, cudaStream_t stream) {
  const size_t zbytes = static_cast<size_t>(kBM) * static_cast<size_t>(a.width + 1) * sizeof(T);
  const dim3 grid(static_cast<unsigned>((a.out + kBN - 1) / kBN), static_cast<unsigned>((a.n + kBM - 1) / kBM));
  const T* feats = static_cast<const T*>(a.feats);
  const T* w = static_cast<const T*>(a.w);
  const bool y_f32 = a.y_type == DType::F32;
  const int width = static_cast<int>(a.width);
  if constexpr (sizeof(T) == 2) {
    int dev = 0, major = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    if (major >= 8) {
      const size_t smem = static_cast<size_t>(kBM * kTcCLd) * sizeof(float) +
                          static_cast<size_t>((kBM + kBN) * kTcLd) * sizeof(T) + zbytes;
      reserve_smem(outer_linear_tc_kernel<T>, smem);
      const bool vec_w = aligned16(a.w) && a.ldw % 8 == 0;
      outer_linear_tc_kernel<T><<<grid, kTcThreads, smem, stream>>>(feats, a.ld_feats, a.n, width, a.columns, a.in, w,
                                                                    a.ldw, a.bias, a.out, a.relu, a.y, a.ld_y, y_f32,
                                                                    vec_w);
      FLURRY_LAUNCH_CHECK("outer_linear_tc_kernel", stream);
      return;
    }
  }
  const size_t smem = static_cast<size_t>(kSimtBK * kBM + kSimtBK * (kBN + 1)) * sizeof(float) + zbytes;
  reserve_smem(outer_linear_simt_kernel<T>, smem);
  outer_linear_simt_kernel<T><<<grid, kSimtThreads, smem, stream>>>(feats, a.ld_feats, a.n, width, a.columns, a.in, w,
                                                                    a.ldw, a.bias, a.out, a.relu, a.y, a.ld_y, y_f32);
  FLURRY_LAUNCH_CHECK("outer_linear_simt_kernel", stream);
}

}  // namespace

std::vector<uint32_t> outer_linear_columns(PairOrder pairs, int64_t width, int64_t prefix) {
  FLURRY_CHECK(width >= 1 && width < static_cast<int64_t>(kCopy) && prefix >= 0 && prefix <= width,
               "outer_linear_columns: width " << width << " prefix " << prefix);
  std::vector<uint32_t> cols;
  cols.reserve(static_cast<size_t>(prefix + pair_order_count(pairs, width)));
  for (int64_t i = 0; i < prefix; ++i) cols.push_back((static_cast<uint32_t>(i) << 16) | kCopy);
  for (int64_t i = 0; i < width; ++i) {
    int64_t j0 = 0, j1 = width;  // the row's pairs (i, j), j in [j0, j1), as interaction.cu enumerates them
    switch (pairs) {
      case PairOrder::StrictLower: j1 = i; break;
      case PairOrder::LowerWithDiag: j1 = i + 1; break;
      case PairOrder::StrictUpper: j0 = i + 1; break;
      case PairOrder::UpperWithDiag: j0 = i; break;
    }
    for (int64_t j = j0; j < j1; ++j) cols.push_back((static_cast<uint32_t>(i) << 16) | static_cast<uint32_t>(j));
  }
  return cols;
}

int64_t outer_linear_max_width(DType type) { return type == DType::F32 ? 512 : 1024; }

void outer_linear(const OuterLinearArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.type == DType::F32 || a.type == DType::F16 || a.type == DType::BF16,
               "outer_linear: dtype " << dtype_name(a.type) << " is not f32, f16 or bf16");
  FLURRY_CHECK(a.y_type == DType::F32 || a.y_type == a.type,
               "outer_linear: output dtype " << dtype_name(a.y_type) << " is neither f32 nor the operands'");
  FLURRY_CHECK(a.n >= 0 && a.n <= int64_t{kBM} * 65535, "outer_linear: n = " << a.n);
  FLURRY_CHECK(a.width >= 1 && a.width <= outer_linear_max_width(a.type),
               "outer_linear: z of width " << a.width << " (1.." << outer_linear_max_width(a.type) << " at "
                                           << dtype_name(a.type) << ")");
  FLURRY_CHECK(a.ld_feats >= a.width && a.in >= 1 && a.ldw >= a.in && a.out >= 1 && a.ld_y >= a.out,
               "outer_linear: ld_feats " << a.ld_feats << " width " << a.width << " in " << a.in << " ldw " << a.ldw
                                         << " out " << a.out << " ld_y " << a.ld_y);
  if (a.n == 0) return;
  FLURRY_CHECK(a.feats && a.columns && a.w && a.y, "outer_linear: null pointer");
  switch (a.type) {
    case DType::F32: launch<float>(a, stream); return;
    case DType::F16: launch<__half>(a, stream); return;
    default: launch<__nv_bfloat16>(a, stream); return;
  }
}

}  // namespace flurry
