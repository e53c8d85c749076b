#include "kernels/attention.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {

// Fragment layouts of mma.sync.m16n8k16 (PTX ISA "Matrix Fragments for mma.m16n8k16"), with
// g = lane / 4 and t = lane % 4, each register holding two 16-bit values, lower column first:
//   A (16 x 16, row-major): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 8+2t..), a3 = (g+8, 8+2t..)
//   B (16 x 8, "col"):      b0 = (k 2t..2t+1, n g), b1 = (k 8+2t.., n g)
//   C (16 x 8, fp32):       c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// So the C fragments of two adjacent n8 tiles are, packed to 16 bits, exactly the A fragment of the
// 16 x 16 block they form: the scores of S = Q K^T feed P V without leaving registers.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; src_bytes = 0 reads nothing and zero-fills the 16 bytes.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x8 16-bit matrices; lanes 8i..8i+7 give the row addresses of matrix i, register i receives
// matrix i's (row g, cols 2t..2t+1), or with .trans its (rows 2t..2t+1, col g).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += A B for one m16n8k16 tile, fp32 accumulators, 16-bit operands of type T.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4],
                                                  uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two fp32 values rounded to T and packed, `lo` in the lower 16 bits (the lower column).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Tiles: a block takes 64 queries of one (sequence, head) with 4 warps of 16 query rows each and
// walks the keys in tiles of 64. K/V tiles are double-buffered in shared memory through cp.async,
// so the next tile's copy overlaps this tile's two products. Rows are padded by 8 elements (D = 64:
// 144-byte rows, D = 32: 80-byte rows): the 8 row addresses of one ldmatrix then fall in 8 different
// 16-byte bank groups. 64 x (D + 8) x 2 bytes x (Q + 2 K + 2 V) = 45 KiB for D = 64 (under the
// 48 KiB static limit), 25 KiB for D = 32.
//
// D is the head dimension (a template parameter: 64 for Whisper and bert-base-sized encoders, 32
// for MiniLM-L6/L12 and bge-micro). Only the Q K^T reduction and the P V output width depend on it;
// the 64-key tile and the softmax do not.
constexpr int kBlockQ = 64;
constexpr int kBlockK = 64;
constexpr int kWarps = kBlockQ / 16;
constexpr int kThreads = 32 * kWarps;
constexpr float kLog2e = 1.4426950408889634f;

template <int D>
struct Tile {
  static constexpr int kLds = D + 8;            // shared-memory row stride, elements
  static constexpr int kElems = 64 * kLds;      // one 64-row tile
  static constexpr int kChunks = D / 8;         // 16-byte chunks per row
  static constexpr int kK16 = D / 16;           // k16 steps of Q K^T, n16 column pairs of P V
  static constexpr int kN8 = D / 8;             // n8 output tiles
  static_assert(D % 16 == 0 && (64 * kChunks) % kThreads == 0, "head dim must be a multiple of 16");
};

// Blocks per SM the register budget is set for: the D = 32 kernel holds half the accumulators.
template <int D>
constexpr int min_blocks() {
  return D == 32 ? 4 : 3;
}

struct Params {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  int64_t q_ld, k_ld, v_ld, out_ld;
  const int32_t* cu_q;
  const int32_t* cu_k;
  const uint8_t* key_valid;
  int q_len, kv_len;
  float scale_log2;  // scale * log2(e): scores live in the exp2 domain
  bool causal;
};

// Copies rows [0, nvalid) of a 64 x D tile (global rows `src`, stride ld) into shared memory at
// `dst` (stride D + 8) and zero-fills the rest, 16 bytes per cp.async. `fallback` is any readable
// address: the zero-fill reads nothing, but the operand must still be a pointer.
template <int D, typename T>
__device__ __forceinline__ void load_tile(uint32_t dst, const T* src, int64_t ld, int nvalid,
                                          const void* fallback) {
  using TL = Tile<D>;
#pragma unroll
  for (int i = 0; i < (64 * TL::kChunks) / kThreads; ++i) {
    const int c = static_cast<int>(threadIdx.x) + i * kThreads;
    const int r = c / TL::kChunks, ch = c % TL::kChunks;
    const bool ok = r < nvalid;
    const void* s = ok ? static_cast<const void*>(src + r * ld + ch * 8) : fallback;
    cp_async16(dst + static_cast<uint32_t>((r * TL::kLds + ch * 8) * 2), s, ok ? 16 : 0);
  }
}

template <int D, typename T>
__global__ void __launch_bounds__(kThreads, min_blocks<D>()) flash_attention_kernel(const Params p) {
  using TL = Tile<D>;
  constexpr int kLds = TL::kLds;
  constexpr int kTileElems = TL::kElems;
  __shared__ alignas(128) uint16_t smem[5 * kTileElems];  // Q, K[2], V[2]
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int head = static_cast<int>(blockIdx.y), b = static_cast<int>(blockIdx.z);
  const int q0 = static_cast<int>(blockIdx.x) * kBlockQ;

  int q_start, q_len, k_start, kv_len;
  if (p.cu_q) {
    q_start = p.cu_q[b];
    q_len = p.cu_q[b + 1] - q_start;
  } else {
    q_start = b * p.q_len;
    q_len = p.q_len;
  }
  if (p.cu_k) {
    k_start = p.cu_k[b];
    kv_len = p.cu_k[b + 1] - k_start;
  } else {
    k_start = b * p.kv_len;
    kv_len = p.kv_len;
  }
  if (q0 >= q_len) return;
  const int past = kv_len - q_len;  // causal: query i sees keys j <= past + i
  int kv_end = kv_len;
  if (p.causal) kv_end = min(kv_end, past + min(q0 + kBlockQ, q_len));

  const T* qg = static_cast<const T*>(p.q) + static_cast<int64_t>(q_start + q0) * p.q_ld + head * D;
  const T* kg = static_cast<const T*>(p.k) + static_cast<int64_t>(k_start) * p.k_ld + head * D;
  const T* vg = static_cast<const T*>(p.v) + static_cast<int64_t>(k_start) * p.v_ld + head * D;
  T* og = static_cast<T*>(p.out) + static_cast<int64_t>(q_start + q0) * p.out_ld + head * D;
  const int q_rows = min(kBlockQ, q_len - q0);

  if (kv_end <= 0) {  // no query of this block sees a key: zero rows, as attention_cpu defines
    for (int c = tid; c < kBlockQ * TL::kChunks; c += kThreads) {
      const int r = c / TL::kChunks, ch = c % TL::kChunks;
      if (r < q_rows) *reinterpret_cast<uint4*>(og + r * p.out_ld + ch * 8) = make_uint4(0, 0, 0, 0);
    }
    return;
  }
  const int n_tiles = (kv_end + kBlockK - 1) / kBlockK;

  const uint32_t s_q = smem_addr(smem);
  const uint32_t s_k0 = s_q + kTileElems * 2, s_v0 = s_q + 3 * kTileElems * 2;
  const uint32_t tile_bytes = kTileElems * 2;
  load_tile<D, T>(s_q, qg, p.q_ld, q_rows, p.q);
  load_tile<D, T>(s_k0, kg, p.k_ld, min(kBlockK, kv_end), p.k);
  load_tile<D, T>(s_v0, vg, p.v_ld, min(kBlockK, kv_end), p.v);
  cp_async_commit();

  uint32_t qf[TL::kK16][4];      // this warp's 16 query rows as A fragments, D / 16 chunks of 16 dims
  float o[TL::kN8][4];           // output accumulator, D / 8 n-tiles of 8 dims
  float m_run[2], l_run[2];      // rows g and g + 8: running max (exp2 domain) and partial sum
#pragma unroll
  for (int n = 0; n < TL::kN8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  m_run[0] = m_run[1] = -INFINITY;
  l_run[0] = l_run[1] = 0.0f;
  const int row0 = q0 + warp * 16 + g;  // sequence-relative query index of rows g and g + 8

  for (int t = 0; t < n_tiles; ++t) {
    const int n0 = t * kBlockK;
    if (t + 1 < n_tiles) {  // prefetch the next K/V tile into the other buffer
      const int nn = n0 + kBlockK, buf = (t + 1) & 1;
      const int nvalid = min(kBlockK, kv_end - nn);
      load_tile<D, T>(s_k0 + buf * tile_bytes, kg + static_cast<int64_t>(nn) * p.k_ld, p.k_ld, nvalid, p.k);
      load_tile<D, T>(s_v0 + buf * tile_bytes, vg + static_cast<int64_t>(nn) * p.v_ld, p.v_ld, nvalid, p.v);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int kc = 0; kc < TL::kK16; ++kc) {
        const int r = warp * 16 + (lane & 15), c = kc * 16 + (lane >> 4) * 8;
        ldmatrix_x4(qf[kc], s_q + static_cast<uint32_t>((r * kLds + c) * 2));
      }
    }
    const uint32_t s_k = s_k0 + (t & 1) * tile_bytes, s_v = s_v0 + (t & 1) * tile_bytes;

    // S = Q K^T for 16 rows x 64 keys: s[n] covers keys n*8 .. n*8+7.
    float s[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kc = 0; kc < TL::kK16; ++kc) {
#pragma unroll
      for (int pr = 0; pr < 4; ++pr) {
        uint32_t kb[4];
        const int r = pr * 16 + (lane & 7) + ((lane >> 4) << 3);
        const int c = kc * 16 + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(kb, s_k + static_cast<uint32_t>((r * kLds + c) * 2));
        mma_16816<T>(s[2 * pr], qf[kc], kb[0], kb[1]);
        mma_16816<T>(s[2 * pr + 1], qf[kc], kb[2], kb[3]);
      }
    }

    // Scale into the exp2 domain and mask: keys past the sequence, padding keys, future keys.
    const bool need_mask = n0 + kBlockK > kv_len || p.key_valid != nullptr ||
                           (p.causal && n0 + kBlockK - 1 > past + q0 + warp * 16);
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[n][e] * p.scale_log2;
        if (need_mask) {
          const int j = n0 + n * 8 + 2 * t4 + (e & 1);
          const int qi = row0 + (e >> 1) * 8;
          bool vis = j < kv_len;
          if (vis && p.key_valid) vis = p.key_valid[k_start + j] != 0;
          if (p.causal && j > past + qi) vis = false;
          if (!vis) x = -INFINITY;
        }
        s[n][e] = x;
      }
    }

    // Online softmax for rows g (r = 0) and g + 8 (r = 1); a row's four values live in one quad.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run[r], mx);
      // A row that has seen only masked keys keeps max -inf; subtract 0 then so exp2 gives 0, not NaN.
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m_run[r] - m_use);
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        s[n][2 * r] = exp2f(s[n][2 * r] - m_use);
        s[n][2 * r + 1] = exp2f(s[n][2 * r + 1] - m_use);
        sum += s[n][2 * r] + s[n][2 * r + 1];
      }
#pragma unroll
      for (int n = 0; n < TL::kN8; ++n) {
        o[n][2 * r] *= alpha;
        o[n][2 * r + 1] *= alpha;
      }
      l_run[r] = l_run[r] * alpha + sum;  // this thread's share; the quad is summed at the end
      m_run[r] = m_new;
    }

    // O += P V: P's C fragments repacked as A fragments (4 chunks of 16 keys), V B-fragments
    // through ldmatrix.trans, D / 16 pairs of n8 output tiles.
#pragma unroll
    for (int kc = 0; kc < 4; ++kc) {
      uint32_t pa[4];
      pa[0] = pack2<T>(s[2 * kc][0], s[2 * kc][1]);
      pa[1] = pack2<T>(s[2 * kc][2], s[2 * kc][3]);
      pa[2] = pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      pa[3] = pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
      for (int pr = 0; pr < TL::kK16; ++pr) {
        uint32_t vb[4];
        const int r = kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int c = pr * 16 + (lane >> 4) * 8;
        ldmatrix_x4_trans(vb, s_v + static_cast<uint32_t>((r * kLds + c) * 2));
        mma_16816<T>(o[2 * pr], pa, vb[0], vb[1]);
        mma_16816<T>(o[2 * pr + 1], pa, vb[2], vb[3]);
      }
    }
    __syncthreads();  // every warp is done with buffer t & 1 before it is refilled
  }

  // Normalise; a row with no visible key has l = 0 and gets zeros.
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = l > 0.0f ? 1.0f / l : 0.0f;
  }
  // Stage this warp's 16 rows in its own rows of the Q tile (only this warp read them), then store
  // 16-byte chunks, so each output row is written by whole lines.
  uint32_t* sq32 = reinterpret_cast<uint32_t*>(smem);
#pragma unroll
  for (int n = 0; n < TL::kN8; ++n) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = warp * 16 + g + r * 8, col = n * 8 + 2 * t4;
      sq32[(row * kLds + col) / 2] = pack2<T>(o[n][2 * r] * inv[r], o[n][2 * r + 1] * inv[r]);
    }
  }
  __syncwarp();
#pragma unroll
  for (int i = 0; i < (16 * TL::kChunks) / 32; ++i) {
    const int c = lane + i * 32;
    const int r = warp * 16 + c / TL::kChunks, ch = c % TL::kChunks;
    if (r < q_rows) {
      *reinterpret_cast<uint4*>(og + r * p.out_ld + ch * 8) =
          *reinterpret_cast<const uint4*>(smem + r * kLds + ch * 8);
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <int D, typename T>
void launch_typed(const FlashAttentionArgs& a, cudaStream_t stream) {
  Params p;
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.out = a.out;
  p.q_ld = a.q_ld;
  p.k_ld = a.k_ld;
  p.v_ld = a.v_ld;
  p.out_ld = a.out_ld;
  p.cu_q = a.cu_seqlens_q;
  p.cu_k = a.cu_seqlens_k;
  p.key_valid = a.key_valid;
  p.q_len = a.q_len;
  p.kv_len = a.kv_len;
  p.scale_log2 = a.scale * kLog2e;
  p.causal = a.causal;
  const dim3 grid(static_cast<unsigned>((a.q_len + kBlockQ - 1) / kBlockQ),
                  static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  flash_attention_kernel<D, T><<<grid, kThreads, 0, stream>>>(p);
  FLURRY_LAUNCH_CHECK("flash_attention_kernel", stream);
}

}  // namespace

void flash_attention(const FlashAttentionArgs& a, cudaStream_t stream) {
  FLURRY_CHECK(a.q && a.k && a.v && a.out, "flash_attention: null pointer");
  FLURRY_CHECK(a.head_dim == 64 || a.head_dim == 32,
               "flash_attention: head_dim " << a.head_dim << " (only 32 and 64 are built)");
  FLURRY_CHECK(a.heads > 0 && a.batch >= 0 && a.q_len >= 0 && a.kv_len >= 0,
               "flash_attention: bad shape heads=" << a.heads << " batch=" << a.batch
                                                   << " q_len=" << a.q_len << " kv_len=" << a.kv_len);
  FLURRY_CHECK(a.batch <= 65535 && a.heads <= 65535, "flash_attention: batch/heads above 65535");
  const int64_t width = int64_t{a.heads} * a.head_dim;
  FLURRY_CHECK(a.q_ld >= width && a.k_ld >= width && a.v_ld >= width && a.out_ld >= width,
               "flash_attention: a row stride is below heads*head_dim=" << width);
  FLURRY_CHECK(a.q_ld % 8 == 0 && a.k_ld % 8 == 0 && a.v_ld % 8 == 0 && a.out_ld % 8 == 0 &&
                   aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && aligned16(a.out),
               "flash_attention: pointers must be 16-byte aligned and row strides multiples of 8");
  if (a.batch == 0 || a.q_len == 0) return;
  FLURRY_CHECK(a.type == DType::F16 || a.type == DType::BF16,
               "flash_attention: dtype " << dtype_name(a.type) << " is not f16 or bf16");
  const bool f16 = a.type == DType::F16;
  if (a.head_dim == 64 && f16) {
    launch_typed<64, __half>(a, stream);
  } else if (a.head_dim == 64) {
    launch_typed<64, __nv_bfloat16>(a, stream);
  } else if (f16) {
    launch_typed<32, __half>(a, stream);
  } else {
    launch_typed<32, __nv_bfloat16>(a, stream);
  }
}

}  // namespace flurry
