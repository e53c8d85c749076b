#include "kernels/embed.cuh"
#include "runtime/cuda/device_types.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {


// grid.x covers the d columns (VEC per thread, 16-byte accesses when VEC * sizeof(T) == 16),
// grid.y strides over the output rows. The id and position of a row are read once per thread.
template <typename T, int VEC>
__global__ void embed_kernel(const int32_t* __restrict__ ids, const int32_t* __restrict__ offsets,
                             const T* __restrict__ tok, const T* __restrict__ pos,
                             T* __restrict__ out, int32_t* __restrict__ error, int64_t n_new,
                             int64_t vocab, int64_t n_pos, int64_t d, int64_t rows) {
  struct alignas(sizeof(T) * VEC) Pack {
    T v[VEC];
  };
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  if (c >= d) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t s = r / n_new;
    int64_t id = ids[r];
    int64_t p = static_cast<int64_t>(offsets[s]) + (r - s * n_new);
    int32_t bad = 0;
    if (id < 0 || id >= vocab) {
      bad |= kEmbedBadToken;
      id = id < 0 ? 0 : vocab - 1;
    }
    if (p < 0 || p >= n_pos) {
      bad |= kEmbedBadPosition;
      p = p < 0 ? 0 : n_pos - 1;
    }
    if (bad != 0 && c == 0) atomicOr(error, bad);
    const Pack a = *reinterpret_cast<const Pack*>(tok + id * d + c);
    const Pack b = *reinterpret_cast<const Pack*>(pos + p * d + c);
    Pack o;
#pragma unroll
    for (int i = 0; i < VEC; ++i) o.v[i] = from_f32<T>(to_f32(a.v[i]) + to_f32(b.v[i]));
    *reinterpret_cast<Pack*>(out + r * d + c) = o;
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename T>
void launch(const EmbedArgs& a, cudaStream_t stream) {
  constexpr int kThreads = 128;
  constexpr int kVec = 16 / sizeof(T);
  const int64_t rows = a.n_seq * a.n_new;
  const unsigned gy = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
  const bool vec = a.d % kVec == 0 && aligned16(a.tok) && aligned16(a.pos) && aligned16(a.out);
  const int v = vec ? kVec : 1;
  const unsigned gx = static_cast<unsigned>((a.d / v + kThreads - 1) / kThreads);
  const auto* ids = a.ids;
  const auto* tok = static_cast<const T*>(a.tok);
  const auto* pos = static_cast<const T*>(a.pos);
  auto* out = static_cast<T*>(a.out);
  if (vec) {
    embed_kernel<T, kVec><<<dim3(gx, gy), kThreads, 0, stream>>>(
        ids, a.offsets, tok, pos, out, a.error, a.n_new, a.vocab, a.n_pos, a.d, rows);
  } else {
    embed_kernel<T, 1><<<dim3(gx, gy), kThreads, 0, stream>>>(
        ids, a.offsets, tok, pos, out, a.error, a.n_new, a.vocab, a.n_pos, a.d, rows);
  }
  FLURRY_LAUNCH_CHECK("embed_kernel", stream);
}

}  // namespace

void embed_tokens_positions(const EmbedArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.ids && a.offsets && a.tok && a.pos && a.out && a.error, "embed: null pointer");
  FLURRY_CHECK(a.n_seq > 0 && a.n_new > 0 && a.vocab > 0 && a.n_pos > 0 && a.d > 0,
               "embed: bad shape n_seq=" << a.n_seq << " n_new=" << a.n_new << " vocab=" << a.vocab
                                         << " n_pos=" << a.n_pos << " d=" << a.d);
  switch (a.type) {
    case DType::F16: launch<__half>(a, stream); return;
    case DType::BF16: launch<__nv_bfloat16>(a, stream); return;
    default: FLURRY_FAIL("embed: dtype " << dtype_name(a.type) << " is not f16 or bf16");
  }
}

}  // namespace flurry
