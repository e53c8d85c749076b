#include "kernels/decode_attention.cuh"
#include "runtime/cuda/device_types.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {

constexpr int kD = 64;
constexpr int kThreads = 128;          // 4 warps
constexpr int kSlots = kThreads / 8;   // 8 lanes x 16 bytes cover one 64-dim row: 16 keys at a time
constexpr int kUnroll = 2;             // keys per slot loaded before the first is used
constexpr int kMaxSplits = 64;
constexpr int kMinKeysPerSplit = 64;
constexpr float kLog2e = 1.4426950408889634f;


struct Params {
  const void* q;
  void* out;
  int64_t q_ld, out_ld;
  const void* k;
  const void* v;
  int64_t k_ld, v_ld, k_bs, v_bs;
  const int32_t* kv_lens;
  int kv_len, heads, q_len, chunk, splits;
  float scale_log2;
  bool causal;
  float* ws;  // [batch, heads, q_len, splits] x (64 acc + max + sum)
};

// Merges (m2, l2, a2) into (m, l, a); maxima in the exp2 domain, -inf when nothing was seen.
template <int N>
__device__ __forceinline__ void merge_state(float& m, float& l, float (&a)[N], float m2, float l2,
                                            const float (&a2)[N]) {
  const float mn = fmaxf(m, m2);
  const float mu = mn == -INFINITY ? 0.0f : mn;
  const float s1 = exp2f(m - mu), s2 = exp2f(m2 - mu);
  l = l * s1 + l2 * s2;
#pragma unroll
  for (int e = 0; e < N; ++e) a[e] = a[e] * s1 + a2[e] * s2;
  m = mn;
}

// One block per (split, head, sequence). Lane layout: slot = thread / 8 takes keys
// start + slot, start + slot + 16, ...; the 8 lanes of a slot hold 8 dims each (16-byte loads), so
// a warp reads 4 whole 128-byte key rows per instruction. Each slot keeps its own online-softmax
// state per query; slots are merged through shuffles and then shared memory at the end.
template <typename T, int QN>
__global__ void __launch_bounds__(kThreads)
    decode_split_kernel(const Params p) {
  struct alignas(16) Pack {
    T v[8];
  };
  __shared__ float sh_m[kThreads / 32][QN], sh_l[kThreads / 32][QN];
  __shared__ float sh_a[kThreads / 32][QN][kD];
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid >> 5, lane = tid & 31;
  const int slot = tid >> 3, dg = tid & 7;
  const int split = static_cast<int>(blockIdx.x), head = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const int kv_len = p.kv_lens ? min(max(p.kv_lens[b], 0), p.kv_len) : p.kv_len;
  const int start = split * p.chunk, end = min(start + p.chunk, kv_len);
  const int past = kv_len - p.q_len;

  // Queries pre-scaled into the exp2 domain; this lane's 8 dims.
  float q[QN][8];
  const T* qg = static_cast<const T*>(p.q) + head * kD + dg * 8;
#pragma unroll
  for (int i = 0; i < QN; ++i) {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      q[i][e] = i < p.q_len
                    ? to_f32(qg[(static_cast<int64_t>(b) * p.q_len + i) * p.q_ld + e]) * p.scale_log2
                    : 0.0f;
    }
  }
  float m[QN], l[QN], acc[QN][8];
#pragma unroll
  for (int i = 0; i < QN; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[i][e] = 0.0f;
  }

  const T* kg = static_cast<const T*>(p.k) + b * p.k_bs + head * kD + dg * 8;
  const T* vg = static_cast<const T*>(p.v) + b * p.v_bs + head * kD + dg * 8;
  // Every lane runs the same number of iterations (the shuffles below need the whole warp);
  // keys past `end` are read as zeros and masked.
  for (int j0 = start; j0 < end; j0 += kSlots * kUnroll) {
    Pack kp[kUnroll], vp[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * kSlots + slot;
      if (j < end) {
        kp[u] = *reinterpret_cast<const Pack*>(kg + j * p.k_ld);
        vp[u] = *reinterpret_cast<const Pack*>(vg + j * p.v_ld);
      } else {
        kp[u] = Pack{};
        vp[u] = Pack{};
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * kSlots + slot;
      float kf[8], vf[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        kf[e] = to_f32(kp[u].v[e]);
        vf[e] = to_f32(vp[u].v[e]);
      }
#pragma unroll
      for (int i = 0; i < QN; ++i) {
        if (i >= p.q_len) continue;  // uniform over the block
        float s = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) s = fmaf(q[i][e], kf[e], s);
        s += __shfl_xor_sync(0xffffffffu, s, 1);
        s += __shfl_xor_sync(0xffffffffu, s, 2);
        s += __shfl_xor_sync(0xffffffffu, s, 4);
        if (j >= end || (p.causal && j > past + i)) s = -INFINITY;
        const float mn = fmaxf(m[i], s);
        const float mu = mn == -INFINITY ? 0.0f : mn;
        const float alpha = exp2f(m[i] - mu), pj = exp2f(s - mu);
        l[i] = l[i] * alpha + pj;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[i][e] = fmaf(pj, vf[e], acc[i][e] * alpha);
        m[i] = mn;
      }
    }
  }

  // Merge the 4 slots of each warp (lanes dg, dg + 8, dg + 16, dg + 24), then the 4 warps.
#pragma unroll
  for (int i = 0; i < QN; ++i) {
#pragma unroll
    for (int off = 8; off <= 16; off <<= 1) {
      float a2[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) a2[e] = __shfl_xor_sync(0xffffffffu, acc[i][e], off);
      const float m2 = __shfl_xor_sync(0xffffffffu, m[i], off);
      const float l2 = __shfl_xor_sync(0xffffffffu, l[i], off);
      merge_state<8>(m[i], l[i], acc[i], m2, l2, a2);
    }
    if (lane < 8) {
      if (lane == 0) {
        sh_m[warp][i] = m[i];
        sh_l[warp][i] = l[i];
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) sh_a[warp][i][dg * 8 + e] = acc[i][e];
    }
  }
  __syncthreads();
  for (int idx = tid; idx < p.q_len * kD; idx += kThreads) {
    const int i = idx / kD, d = idx % kD;
    float mm = sh_m[0][i], ll = sh_l[0][i];
    float aa[1] = {sh_a[0][i][d]};
#pragma unroll
    for (int w = 1; w < kThreads / 32; ++w) {
      const float a2[1] = {sh_a[w][i][d]};
      merge_state<1>(mm, ll, aa, sh_m[w][i], sh_l[w][i], a2);
    }
    const int64_t qrow = static_cast<int64_t>(b) * p.q_len + i;
    if (p.splits == 1) {
      static_cast<T*>(p.out)[qrow * p.out_ld + head * kD + d] =
          from_f32<T>(ll > 0.0f ? aa[0] / ll : 0.0f);
    } else {
      float* part = p.ws + ((qrow * p.heads + head) * p.splits + split) * (kD + 2);
      part[d] = aa[0];
      if (d == 0) {
        part[kD] = mm;
        part[kD + 1] = ll;
      }
    }
  }
}

// One block of 64 threads (one per dim) per (sequence, query, head): weights each split's partial
// by 2^(m_s - M) with M the largest split max.
template <typename T>
__global__ void __launch_bounds__(kD) decode_combine_kernel(const Params p) {
  const int d = static_cast<int>(threadIdx.x);
  const int64_t qrow = blockIdx.x;  // b * q_len + i
  const int head = static_cast<int>(blockIdx.y);
  const float* part = p.ws + (qrow * p.heads + head) * p.splits * (kD + 2);
  float mx = -INFINITY;
  for (int s = 0; s < p.splits; ++s) mx = fmaxf(mx, part[s * (kD + 2) + kD]);
  float l = 0.0f, a = 0.0f;
  if (mx != -INFINITY) {
    for (int s = 0; s < p.splits; ++s) {
      const float* ps = part + s * (kD + 2);
      const float w = exp2f(ps[kD] - mx);  // -inf (empty split) -> 0
      l = fmaf(ps[kD + 1], w, l);
      a = fmaf(ps[d], w, a);
    }
  }
  static_cast<T*>(p.out)[qrow * p.out_ld + head * kD + d] = from_f32<T>(l > 0.0f ? a / l : 0.0f);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

int sm_count() {
  int dev = 0, n = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

// Keys per split, a multiple of kSlots, and the split count that covers kv_len with it.
void plan_splits(const DecodeAttentionArgs& a, int* splits, int* chunk) {
  if (a.kv_len <= 0) {
    *splits = 1;
    *chunk = kSlots;
    return;
  }
  int want = a.num_splits;
  if (want <= 0) {
    // About four 128-thread blocks per SM keep enough 16-byte loads in flight to stream HBM.
    const int64_t base = int64_t{a.batch} * a.heads;
    const int64_t target = 4 * int64_t{sm_count()};
    want = static_cast<int>(std::min<int64_t>((target + base - 1) / base, kMaxSplits));
    want = std::min(want, std::max(1, (a.kv_len + kMinKeysPerSplit - 1) / kMinKeysPerSplit));
  }
  want = std::max(1, std::min(want, kMaxSplits));
  int c = (a.kv_len + want - 1) / want;
  c = (c + kSlots - 1) / kSlots * kSlots;
  *chunk = c;
  *splits = (a.kv_len + c - 1) / c;
}

template <typename T, int QN>
void launch_typed(const DecodeAttentionArgs& a, cudaStream_t stream) {
  Params p;
  p.q = a.q;
  p.out = a.out;
  p.q_ld = a.q_ld;
  p.out_ld = a.out_ld;
  p.k = a.k;
  p.v = a.v;
  p.k_ld = a.k_ld;
  p.v_ld = a.v_ld;
  p.k_bs = a.k_batch_stride;
  p.v_bs = a.v_batch_stride;
  p.kv_lens = a.kv_lens;
  p.kv_len = a.kv_len;
  p.heads = a.heads;
  p.q_len = a.q_len;
  plan_splits(a, &p.splits, &p.chunk);
  p.scale_log2 = a.scale * kLog2e;
  p.causal = a.causal;
  p.ws = static_cast<float*>(a.workspace);
  const dim3 grid(static_cast<unsigned>(p.splits), static_cast<unsigned>(a.heads),
                  static_cast<unsigned>(a.batch));
  decode_split_kernel<T, QN><<<grid, kThreads, 0, stream>>>(p);
  FLURRY_LAUNCH_CHECK("decode_split_kernel", stream);
  if (p.splits > 1) {
    const dim3 cgrid(static_cast<unsigned>(int64_t{a.batch} * a.q_len), static_cast<unsigned>(a.heads));
    decode_combine_kernel<T><<<cgrid, kD, 0, stream>>>(p);
    FLURRY_LAUNCH_CHECK("decode_combine_kernel", stream);
  }
}

template <typename T>
void launch_qn(const DecodeAttentionArgs& a, cudaStream_t stream) {
  if (a.q_len == 1) return launch_typed<T, 1>(a, stream);
  if (a.q_len == 2) return launch_typed<T, 2>(a, stream);
  if (a.q_len <= 4) return launch_typed<T, 4>(a, stream);
  return launch_typed<T, 8>(a, stream);
}

}  // namespace

int decode_attention_splits(const DecodeAttentionArgs& a) {
  int splits = 1, chunk = 0;
  plan_splits(a, &splits, &chunk);
  return splits;
}

size_t decode_attention_workspace_bytes(const DecodeAttentionArgs& a) {
  const int splits = decode_attention_splits(a);
  if (splits <= 1) return 0;
  return static_cast<size_t>(a.batch) * a.q_len * a.heads * splits * (kD + 2) * sizeof(float);
}

void decode_attention(const DecodeAttentionArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.q && a.k && a.v && a.out, "decode_attention: null pointer");
  FLURRY_CHECK(a.head_dim == kD, "decode_attention: head_dim " << a.head_dim << " (only 64 is built)");
  FLURRY_CHECK(a.q_len >= 1 && a.q_len <= 8,
               "decode_attention: q_len " << a.q_len << " outside 1..8 (use flash_attention)");
  FLURRY_CHECK(a.batch >= 0 && a.batch <= 65535 && a.heads > 0 && a.heads <= 65535 && a.kv_len >= 0,
               "decode_attention: bad shape batch=" << a.batch << " heads=" << a.heads
                                                    << " kv_len=" << a.kv_len);
  const int64_t width = int64_t{a.heads} * a.head_dim;
  FLURRY_CHECK(a.q_ld >= width && a.out_ld >= width && a.k_ld >= width && a.v_ld >= width,
               "decode_attention: a row stride is below heads*head_dim=" << width);
  FLURRY_CHECK(a.k_ld % 8 == 0 && a.v_ld % 8 == 0 && a.k_batch_stride % 8 == 0 &&
                   a.v_batch_stride % 8 == 0 && aligned16(a.k) && aligned16(a.v),
               "decode_attention: k/v must be 16-byte aligned with strides multiples of 8");
  FLURRY_CHECK(a.batch <= 1 || (a.k_batch_stride >= int64_t{a.kv_len} * a.k_ld &&
                                a.v_batch_stride >= int64_t{a.kv_len} * a.v_ld),
               "decode_attention: batch strides smaller than kv_len rows");
  if (a.batch == 0) return;
  const size_t need = decode_attention_workspace_bytes(a);
  FLURRY_CHECK(need == 0 || (a.workspace != nullptr && a.workspace_bytes >= need),
               "decode_attention: workspace of " << a.workspace_bytes << " bytes, needs " << need);
  switch (a.type) {
    case DType::F16: launch_qn<__half>(a, stream); return;
    case DType::BF16: launch_qn<__nv_bfloat16>(a, stream); return;
    default: FLURRY_FAIL("decode_attention: dtype " << dtype_name(a.type) << " is not f16 or bf16");
  }
}

}  // namespace flurry
