#include "kernels/dlrm/embedding_bag.cuh"
#include "runtime/cuda/device_types.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {

// One warp per (bag, sample), kWarps of them per block. A bag is a handful of rows (one-hot Criteo
// features: 1; DLRM-v2 multi-hot: up to ~100) of 16..256 values, so a warp is the right grain: its
// lanes split the row into 16-byte vectors, and when the row has fewer vectors than 32 the spare
// lanes take other indices of the same bag (lane groups), reduced at the end with shuffles.
constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
// Bags described per launch (kernel parameter space); more bags take more launches.
constexpr int kMaxBags = 64;

struct BagDesc {
  const void* table;
  int32_t dim;
  int32_t out_col;
  int32_t mean;
  int32_t pad;
};
struct BagDescs {
  BagDesc bag[kMaxBags];
};

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// warp w = b * n + i is bag b of sample i: the index of its offsets entry.
template <typename T, typename TO, int VEC>
__global__ void __launch_bounds__(kThreads)
    embedding_bags_kernel(const __grid_constant__ BagDescs descs, int num_bags,
                          const int32_t* __restrict__ offsets, const int32_t* __restrict__ indices,
                          int64_t n, TO* __restrict__ out, int64_t ld_out, bool vec_store) {
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (w >= static_cast<int64_t>(num_bags) * n) return;  // whole warps leave together
  const int lane = threadIdx.x & 31;
  const int b = static_cast<int>(w / n);
  const int64_t sample = w - static_cast<int64_t>(b) * n;
  const BagDesc& d = descs.bag[b];
  const Pack<T, VEC>* table = static_cast<const Pack<T, VEC>*>(d.table);
  const int64_t row_vecs = d.dim / VEC;
  const int nvec = d.dim / VEC;
  int lanes = 1;  // lanes per row: the smallest power of two covering the row, at most 32
  while (lanes < nvec && lanes < 32) lanes <<= 1;
  const int groups = 32 / lanes;
  const int g = lane / lanes, sub = lane % lanes;
  const int begin = offsets[w], end = offsets[w + 1];
  TO* orow = out + sample * ld_out + d.out_col;

  for (int base = 0; base < nvec; base += lanes) {  // uniform across the warp (shuffles below)
    const int vi = base + sub;
    const bool active = vi < nvec;
    float acc[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[e] = 0.0f;
    if (active) {
      int p = begin + g;
      // Two rows in flight per lane: the loads are independent, the adds are not reordered within
      // a lane (a lane sums its rows in index order).
      for (; p + groups < end; p += 2 * groups) {
        const Pack<T, VEC> r0 = table[static_cast<int64_t>(__ldg(indices + p)) * row_vecs + vi];
        const Pack<T, VEC> r1 = table[static_cast<int64_t>(__ldg(indices + p + groups)) * row_vecs + vi];
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[e] += to_f32(r0.v[e]);
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[e] += to_f32(r1.v[e]);
      }
      if (p < end) {
        const Pack<T, VEC> r0 = table[static_cast<int64_t>(__ldg(indices + p)) * row_vecs + vi];
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[e] += to_f32(r0.v[e]);
      }
    }
    for (int o = lanes; o < 32; o <<= 1) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[e] += __shfl_xor_sync(0xffffffffu, acc[e], o);
    }
    if (active && g == 0) {
      const int count = end - begin;
      if (d.mean && count > 0) {
        const float inv = 1.0f / static_cast<float>(count);  // as the reference: sum * (1 / count)
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[e] *= inv;
      }
      TO* dst = orow + static_cast<int64_t>(vi) * VEC;
      if (vec_store) {
        Pack<TO, VEC> o;
#pragma unroll
        for (int e = 0; e < VEC; ++e) o.v[e] = from_f32<TO>(acc[e]);
        *reinterpret_cast<Pack<TO, VEC>*>(dst) = o;
      } else {
#pragma unroll
        for (int e = 0; e < VEC; ++e) dst[e] = from_f32<TO>(acc[e]);
      }
    }
  }
}

bool aligned_to(const void* p, size_t bytes) { return (reinterpret_cast<uintptr_t>(p) % bytes) == 0; }

template <typename T, typename TO>
void launch_typed(const EmbeddingBagsArgs& a, cudaStream_t stream) {
  constexpr int kVec = static_cast<int>(16 / sizeof(T));
  bool vec_load = true, vec_store = aligned_to(a.out, kVec * sizeof(TO)) && a.ld_out % kVec == 0;
  for (const EmbeddingBagSpec& s : a.bags) {
    vec_load = vec_load && s.dim % kVec == 0 && aligned_to(s.table, 16);
    vec_store = vec_store && s.out_col % kVec == 0;
  }
  vec_store = vec_store && vec_load;  // the store packs are the load packs' width
  TO* out = static_cast<TO*>(a.out);
  const int64_t total_bags = static_cast<int64_t>(a.bags.size());
  for (int64_t b0 = 0; b0 < total_bags; b0 += kMaxBags) {
    const int nb = static_cast<int>(std::min<int64_t>(kMaxBags, total_bags - b0));
    BagDescs descs{};
    for (int b = 0; b < nb; ++b) {
      const EmbeddingBagSpec& s = a.bags[static_cast<size_t>(b0 + b)];
      descs.bag[b] = BagDesc{s.table, static_cast<int32_t>(s.dim), static_cast<int32_t>(s.out_col),
                             s.pooling == BagPooling::Mean ? 1 : 0, 0};
    }
    const int32_t* offsets = a.offsets + b0 * a.n;
    const int64_t warps = static_cast<int64_t>(nb) * a.n;
    const unsigned grid = static_cast<unsigned>((warps + kWarps - 1) / kWarps);
    if (vec_load) {
      embedding_bags_kernel<T, TO, kVec><<<grid, kThreads, 0, stream>>>(descs, nb, offsets, a.indices, a.n,
                                                                       out, a.ld_out, vec_store);
    } else {
      embedding_bags_kernel<T, TO, 1><<<grid, kThreads, 0, stream>>>(descs, nb, offsets, a.indices, a.n,
                                                                    out, a.ld_out, false);
    }
    FLURRY_LAUNCH_CHECK("embedding_bags_kernel", stream);
  }
}

template <typename T>
void dispatch_out(const EmbeddingBagsArgs& a, cudaStream_t stream) {
  switch (a.out_type) {
    case DType::F32: launch_typed<T, float>(a, stream); return;
    case DType::F16: launch_typed<T, __half>(a, stream); return;
    case DType::BF16: launch_typed<T, __nv_bfloat16>(a, stream); return;
    default: FLURRY_FAIL("embedding_bags: output dtype " << dtype_name(a.out_type) << " is not f32, f16 or bf16");
  }
}

}  // namespace

void embedding_bags(const EmbeddingBagsArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.n >= 0, "embedding_bags: n = " << a.n);
  if (a.n == 0 || a.bags.empty()) return;
  FLURRY_CHECK(a.offsets && a.out, "embedding_bags: null offsets or output");
  FLURRY_CHECK(static_cast<int64_t>(a.bags.size()) * a.n < (int64_t{1} << 31) - 1,
               "embedding_bags: " << a.bags.size() << " bags x " << a.n << " samples overflow int32 offsets");
  for (size_t b = 0; b < a.bags.size(); ++b) {
    const EmbeddingBagSpec& s = a.bags[b];
    FLURRY_CHECK(s.table != nullptr, "embedding_bags: bag " << b << " has no table");
    FLURRY_CHECK(s.dim > 0 && s.dim <= (int64_t{1} << 20), "embedding_bags: bag " << b << " dim " << s.dim);
    FLURRY_CHECK(s.out_col >= 0 && s.out_col + s.dim <= a.ld_out,
                 "embedding_bags: bag " << b << " slot [" << s.out_col << ", " << s.out_col + s.dim
                                        << ") does not fit ld_out " << a.ld_out);
  }
  switch (a.table_type) {
    case DType::F32: dispatch_out<float>(a, stream); return;
    case DType::F16: dispatch_out<__half>(a, stream); return;
    case DType::BF16: dispatch_out<__nv_bfloat16>(a, stream); return;
    default: FLURRY_FAIL("embedding_bags: table dtype " << dtype_name(a.table_type) << " is not f32, f16 or bf16");
  }
}

}  // namespace flurry
