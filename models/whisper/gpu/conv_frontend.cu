#include "models/whisper/gpu/conv_frontend.cuh"
#include "runtime/cuda/device_types.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "runtime/cuda/gemm_gpu.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {

constexpr int kTileT = 32;  // time steps per block of the mel im2col
constexpr int kTileCols = kTileT + 2;  // plus one padding step each side


size_t align256(size_t n) { return (n + 255) & ~size_t{255}; }

// col[b * t_in + t, c * 3 + kk] = mel[b, c, t + kk - 1] (zero outside [0, t_in)).
// Block (blockIdx.x, blockIdx.y = b): time steps t0 .. t0 + 31. The mel rows' slice [t0 - 1,
// t0 + 33) of every channel is staged in shared memory ([n_mels][34]), then the block writes its
// up-to-32 column rows, which are contiguous in memory, with consecutive threads on consecutive
// elements.
template <typename T>
__global__ void im2col_mel_kernel(const T* __restrict__ mel, T* __restrict__ col, int n_mels,
                                  int t_in) {
  extern __shared__ unsigned char smem_raw[];
  T* tile = reinterpret_cast<T*>(smem_raw);
  const int b = blockIdx.y;
  const int t0 = blockIdx.x * kTileT;
  const int nt = min(kTileT, t_in - t0);
  const T* src = mel + static_cast<int64_t>(b) * n_mels * t_in;
  const T zero = from_f32<T>(0.0f);
  for (int i = threadIdx.x; i < n_mels * kTileCols; i += blockDim.x) {
    const int c = i / kTileCols, j = i - c * kTileCols;
    const int t = t0 - 1 + j;
    tile[i] = (t >= 0 && t < t_in) ? src[static_cast<int64_t>(c) * t_in + t] : zero;
  }
  __syncthreads();
  const int k = 3 * n_mels;
  T* dst = col + (static_cast<int64_t>(b) * t_in + t0) * k;
  for (int i = threadIdx.x; i < nt * k; i += blockDim.x) {
    const int tt = i / k, j = i - tt * k;
    const int c = j / 3, kk = j - c * 3;
    dst[i] = tile[c * kTileCols + tt + kk];  // tile column tt + kk is time t0 + tt + kk - 1
  }
}

// col[b * t_out + t, c * 3 + kk] = x[b, 2 t + kk - 1, c] for time-major x [batch, t_in, d].
// Thread (row, c) gathers the three taps of channel c: its reads are coalesced across the warp
// (consecutive c in one row of x), its three writes fill 96 consecutive elements per warp.
template <typename T>
__global__ void im2col_strided_kernel(const T* __restrict__ x, T* __restrict__ col, int64_t d,
                                      int t_in, int t_out, int64_t total_rows) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= d) return;
  const T zero = from_f32<T>(0.0f);
  for (int64_t r = blockIdx.y; r < total_rows; r += gridDim.y) {
    const int64_t b = r / t_out;
    const int t = static_cast<int>(r - b * t_out);
    const T* xb = x + b * t_in * d;
    T* dst = col + r * 3 * d + 3 * c;
#pragma unroll
    for (int kk = 0; kk < 3; ++kk) {
      const int s = 2 * t + kk - 1;
      dst[kk] = (s >= 0 && s < t_in) ? xb[static_cast<int64_t>(s) * d + c] : zero;
    }
  }
}

// y[b, t, :] = gelu_erf(y[b, t, :]) + pos[t, :], in place, VEC elements per thread.
template <typename T, int VEC>
__global__ void gelu_add_pos_kernel(T* y, const T* __restrict__ pos, int64_t d, int t_out,
                                    int64_t total_rows) {
  struct alignas(sizeof(T) * VEC) Pack {
    T v[VEC];
  };
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  if (c >= d) return;
  for (int64_t r = blockIdx.y; r < total_rows; r += gridDim.y) {
    const int64_t t = r % t_out;
    Pack* p = reinterpret_cast<Pack*>(y + r * d + c);
    Pack v = *p;
    const Pack q = *reinterpret_cast<const Pack*>(pos + t * d + c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const float x = to_f32(v.v[i]);
      const float g = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
      v.v[i] = from_f32<T>(g + to_f32(q.v[i]));
    }
    *p = v;
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

struct Sizes {
  int64_t t_out, col_elems, h1_elems;
};
Sizes sizes_of(const ConvFrontendArgs& a) {
  Sizes s;
  s.t_out = conv_frontend_out_len(a.t_in);
  s.col_elems = std::max(a.batch * a.t_in * 3 * a.n_mels, a.batch * s.t_out * 3 * a.d);
  s.h1_elems = a.batch * a.t_in * a.d;
  return s;
}

template <typename T>
void run_typed(GemmLt& lt, const ConvFrontendArgs& a, void* workspace, void* gemm_ws,
               size_t gemm_ws_bytes, cudaStream_t stream) {
  const Sizes s = sizes_of(a);
  T* col = static_cast<T*>(workspace);
  T* h1 = reinterpret_cast<T*>(static_cast<char*>(workspace) +
                               align256(static_cast<size_t>(s.col_elems) * sizeof(T)));
  const int t_in = static_cast<int>(a.t_in), t_out = static_cast<int>(s.t_out);

  // conv1: im2col + GEMM [batch * t_in, 3 n_mels] x w1^T, bias, exact GELU.
  {
    const unsigned gx = static_cast<unsigned>((a.t_in + kTileT - 1) / kTileT);
    const size_t smem = static_cast<size_t>(a.n_mels) * kTileCols * sizeof(T);
    im2col_mel_kernel<T><<<dim3(gx, static_cast<unsigned>(a.batch)), 256, smem, stream>>>(
        static_cast<const T*>(a.mel), col, static_cast<int>(a.n_mels), t_in);
    FLURRY_LAUNCH_CHECK("im2col_mel_kernel", stream);
    GemmArgs g = gemm_dense(a.batch * a.t_in, a.d, 3 * a.n_mels, false, true, a.type, a.type);
    g.a = col;
    g.b = a.w1;
    g.c = h1;
    g.bias = a.b1;
    g.epilogue = Epilogue::BiasGeluErf;
    gemm_gpu(lt, g, gemm_ws, gemm_ws_bytes, stream);
  }
  // conv2: im2col (stride 2) + GEMM [batch * t_out, 3 d] x w2^T with bias into `out`.
  const int64_t rows = a.batch * s.t_out;
  const unsigned gy = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
  {
    constexpr int kThreads = 128;
    const unsigned gx = static_cast<unsigned>((a.d + kThreads - 1) / kThreads);
    im2col_strided_kernel<T><<<dim3(gx, gy), kThreads, 0, stream>>>(h1, col, a.d, t_in, t_out, rows);
    FLURRY_LAUNCH_CHECK("im2col_strided_kernel", stream);
    GemmArgs g = gemm_dense(rows, a.d, 3 * a.d, false, true, a.type, a.type);
    g.a = col;
    g.b = a.w2;
    g.c = a.out;
    g.bias = a.b2;
    g.epilogue = Epilogue::Bias;
    gemm_gpu(lt, g, gemm_ws, gemm_ws_bytes, stream);
  }
  // GELU + positions in one pass over `out`.
  {
    constexpr int kThreads = 128;
    constexpr int kVec = 16 / sizeof(T);
    T* y = static_cast<T*>(a.out);
    const T* pos = static_cast<const T*>(a.pos);
    if (a.d % kVec == 0 && aligned16(y) && aligned16(pos)) {
      const unsigned gx = static_cast<unsigned>((a.d / kVec + kThreads - 1) / kThreads);
      gelu_add_pos_kernel<T, kVec><<<dim3(gx, gy), kThreads, 0, stream>>>(y, pos, a.d, t_out, rows);
    } else {
      const unsigned gx = static_cast<unsigned>((a.d + kThreads - 1) / kThreads);
      gelu_add_pos_kernel<T, 1><<<dim3(gx, gy), kThreads, 0, stream>>>(y, pos, a.d, t_out, rows);
    }
    FLURRY_LAUNCH_CHECK("gelu_add_pos_kernel", stream);
  }
}

}  // namespace

int64_t conv_frontend_out_len(int64_t t_in) { return (t_in - 1) / 2 + 1; }

size_t conv_frontend_workspace_bytes(const ConvFrontendArgs& a) {
  const Sizes s = sizes_of(a);
  const size_t e = dtype_size(a.type);
  return align256(static_cast<size_t>(s.col_elems) * e) + align256(static_cast<size_t>(s.h1_elems) * e);
}

void conv_frontend(GemmLt& lt, const ConvFrontendArgs& a, void* workspace, size_t workspace_bytes,
                   void* gemm_workspace, size_t gemm_workspace_bytes, cudaStream_t stream) {
  FLURRY_CHECK(a.mel && a.w1 && a.b1 && a.w2 && a.b2 && a.pos && a.out,
               "conv_frontend: null tensor pointer");
  FLURRY_CHECK(a.batch > 0 && a.n_mels > 0 && a.t_in > 0 && a.d > 0,
               "conv_frontend: bad shape batch=" << a.batch << " n_mels=" << a.n_mels
                                                 << " t_in=" << a.t_in << " d=" << a.d);
  FLURRY_CHECK(a.t_in < (int64_t{1} << 30) && a.batch < 65536,
               "conv_frontend: t_in " << a.t_in << " or batch " << a.batch << " too large");
  // The mel tile of one block must fit the default 48 KB of shared memory.
  FLURRY_CHECK(a.n_mels * kTileCols * static_cast<int64_t>(dtype_size(a.type)) <= 48 * 1024,
               "conv_frontend: n_mels " << a.n_mels << " too large for the im2col tile");
  FLURRY_CHECK(workspace != nullptr && (reinterpret_cast<uintptr_t>(workspace) & 255u) == 0,
               "conv_frontend: workspace null or not 256-byte aligned");
  FLURRY_CHECK(workspace_bytes >= conv_frontend_workspace_bytes(a),
               "conv_frontend: workspace " << workspace_bytes << " bytes < "
                                           << conv_frontend_workspace_bytes(a));
  switch (a.type) {
    case DType::F16:
      run_typed<__half>(lt, a, workspace, gemm_workspace, gemm_workspace_bytes, stream);
      return;
    case DType::BF16:
      run_typed<__nv_bfloat16>(lt, a, workspace, gemm_workspace, gemm_workspace_bytes, stream);
      return;
    default: FLURRY_FAIL("conv_frontend: dtype " << dtype_name(a.type) << " is not f16 or bf16");
  }
}

}  // namespace flurry
