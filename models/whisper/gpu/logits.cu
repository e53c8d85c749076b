#include "models/whisper/gpu/logits.cuh"

#include <climits>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry {

namespace {

constexpr int kThreads = 1024;  // one block per row: ~51 elements per thread at vocab 51866
constexpr int kWarps = kThreads / 32;

// (value, id) order of the CPU: larger value first, then smaller id. NaN is never better.
__device__ __forceinline__ bool better(float v, int i, float w, int j) {
  return v > w || (v == w && i < j);
}

// Running state of one pass: online log-sum-exp (m, s) with s = sum exp(x - m), and the best
// (value, id). Entries at -inf add nothing to s.
struct Stats {
  float m, s, bv;
  int bi;
};

__device__ __forceinline__ Stats stats_identity() { return Stats{-INFINITY, 0.0f, -INFINITY, INT_MAX}; }

__device__ __forceinline__ void stats_add_lse(Stats& st, float v) {
  if (!(v > -INFINITY)) return;  // -inf (masked) and NaN add nothing
  if (v > st.m) {
    st.s = st.s * expf(st.m - v) + 1.0f;  // expf(-inf) = 0 on the first finite entry
    st.m = v;
  } else {
    st.s += expf(v - st.m);
  }
}

__device__ __forceinline__ void stats_add_best(Stats& st, float v, int i) {
  if (better(v, i, st.bv, st.bi)) {
    st.bv = v;
    st.bi = i;
  }
}

__device__ __forceinline__ Stats stats_combine(const Stats& a, const Stats& b) {
  Stats r;
  r.m = fmaxf(a.m, b.m);
  r.s = r.m == -INFINITY ? 0.0f : a.s * expf(a.m - r.m) + b.s * expf(b.m - r.m);
  const bool b_wins = better(b.bv, b.bi, a.bv, a.bi);
  r.bv = b_wins ? b.bv : a.bv;
  r.bi = b_wins ? b.bi : a.bi;
  return r;
}

__device__ __forceinline__ Stats stats_warp_reduce(Stats v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Stats other;
    other.m = __shfl_xor_sync(0xffffffffu, v.m, o);
    other.s = __shfl_xor_sync(0xffffffffu, v.s, o);
    other.bv = __shfl_xor_sync(0xffffffffu, v.bv, o);
    other.bi = __shfl_xor_sync(0xffffffffu, v.bi, o);
    v = stats_combine(v, other);
  }
  return v;
}

// Every thread gets the block's combined Stats. `smem` holds kWarps + 1 entries; the trailing
// barrier lets the caller reuse it at once.
__device__ Stats stats_block_reduce(Stats v, Stats* smem) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  v = stats_warp_reduce(v);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    Stats w = lane < kWarps ? smem[lane] : stats_identity();
    w = stats_warp_reduce(w);
    if (lane == 0) smem[kWarps] = w;
  }
  __syncthreads();
  const Stats r = smem[kWarps];
  __syncthreads();
  return r;
}

// A thread's K best (value, id) pairs, sorted best first; slots not yet filled are (-inf,
// INT_MAX), which every real entry beats. Only compile-time indices, so the arrays stay in
// registers.
struct TopK {
  float v[kLogitsMaxTopK];
  int i[kLogitsMaxTopK];

  __device__ __forceinline__ void init() {
#pragma unroll
    for (int j = 0; j < kLogitsMaxTopK; ++j) {
      v[j] = -INFINITY;
      i[j] = INT_MAX;
    }
  }
  __device__ __forceinline__ void insert(float val, int id) {
    if (!better(val, id, v[kLogitsMaxTopK - 1], i[kLogitsMaxTopK - 1])) return;
    v[kLogitsMaxTopK - 1] = val;
    i[kLogitsMaxTopK - 1] = id;
#pragma unroll
    for (int j = kLogitsMaxTopK - 1; j > 0; --j) {
      if (better(v[j], i[j], v[j - 1], i[j - 1])) {
        const float tv = v[j];
        v[j] = v[j - 1];
        v[j - 1] = tv;
        const int ti = i[j];
        i[j] = i[j - 1];
        i[j - 1] = ti;
      }
    }
  }
  __device__ __forceinline__ void pop() {
#pragma unroll
    for (int j = 0; j < kLogitsMaxTopK - 1; ++j) {
      v[j] = v[j + 1];
      i[j] = i[j + 1];
    }
    v[kLogitsMaxTopK - 1] = -INFINITY;
    i[kLogitsMaxTopK - 1] = INT_MAX;
  }
};

__device__ __forceinline__ void mask_range(float* x, int begin, int end) {
  for (int i = max(begin, 0) + static_cast<int>(threadIdx.x); i < end; i += kThreads) x[i] = -INFINITY;
}

// Row state the rules need, found by warp 0 from the history.
struct RowState {
  int n;           // tokens sampled so far
  int last_ts;     // 1 when the last sampled token is a timestamp
  int pen_ts;      // 1 when the one before is a timestamp, or there is none
  int last_value;  // the latest timestamp sampled, -1 when none
};

__device__ void find_row_state(const LogitsArgs& a, int64_t row, RowState* out) {
  const int lane = threadIdx.x % 32;
  int n = a.n_sampled ? a.n_sampled[row] : 0;
  const int cap = static_cast<int>(a.sampled_ld);
  if (n < 0 || (a.sampled != nullptr && n > cap)) {
    if (lane == 0 && a.error) atomicOr(a.error, kLogitsBadHistory);
    n = n < 0 ? 0 : cap;
  }
  RowState st{n, 0, 1, -1};
  if (a.rules.timestamps && a.sampled != nullptr && n > 0) {
    const int tb = a.rules.timestamp_begin;
    const int32_t* s = a.sampled + row * a.sampled_ld;
    // Latest timestamp: each lane scans its stride downwards and stops at its first hit.
    int found = -1;
    for (int i = n - 1 - lane; i >= 0; i -= 32) {
      if (s[i] >= tb) {
        found = i;
        break;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) found = max(found, __shfl_xor_sync(0xffffffffu, found, o));
    st.last_value = found >= 0 ? s[found] : -1;
    st.last_ts = s[n - 1] >= tb ? 1 : 0;
    st.pen_ts = (n < 2 || s[n - 2] >= tb) ? 1 : 0;
  }
  if (lane == 0) *out = st;
}

// sample_inverse_cdf (models/whisper/decoding.cpp) over the filtered row x, whose largest entry is
// `mx`: weights w_i = exp(double(x_i / T) - double(mx / T)) (x / T is monotone in x, so mx / T is
// the CPU's max of x_i / T), prefix sums in double, the first i whose sum exceeds u * total; past
// the end, the last token with mass. Each thread sums a contiguous chunk; an exclusive scan over
// the threads gives each chunk its offset. Returns the token to every thread.
__device__ int sample_row(const float* x, int vocab, float T, float mx, double u) {
  __shared__ double warp_sum[kWarps];
  __shared__ int pick, last_mass;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const double m = static_cast<double>(mx / T);
  const int chunk = (vocab + kThreads - 1) / kThreads;
  const int b0 = min(tid * chunk, vocab), b1 = min(b0 + chunk, vocab);
  double mine = 0.0;
  int my_last = -1;
  for (int i = b0; i < b1; ++i) {
    const float v = x[i] / T;
    const double w = v > -INFINITY ? exp(static_cast<double>(v) - m) : 0.0;
    mine += w;
    if (w > 0.0) my_last = i;
  }
  // Exclusive prefix of `mine` over the block: within the warp by shuffles, then the warp totals.
  double incl = mine;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  double excl = __shfl_up_sync(0xffffffffu, incl, 1);
  if (lane == 0) excl = 0.0;
  if (lane == 31) warp_sum[warp] = incl;
  if (tid == 0) {
    pick = INT_MAX;
    last_mass = -1;
  }
  __syncthreads();
  if (warp == 0) {
    double w = lane < kWarps ? warp_sum[lane] : 0.0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double y = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += y;
    }
    if (lane < kWarps) warp_sum[lane] = w;  // inclusive scan of the warp totals
  }
  __syncthreads();
  if (warp > 0) excl += warp_sum[warp - 1];
  const double target = u * warp_sum[kWarps - 1];
  if (my_last >= 0) atomicMax(&last_mass, my_last);
  if (excl <= target && my_last >= 0) {
    double c = excl;
    for (int i = b0; i < b1; ++i) {
      const float v = x[i] / T;
      if (v > -INFINITY) c += exp(static_cast<double>(v) - m);
      if (c > target) {
        atomicMin(&pick, i);
        break;
      }
    }
  }
  __syncthreads();
  const int tok = pick != INT_MAX ? pick : (last_mass >= 0 ? last_mass : 0);
  return tok;
}

__global__ void __launch_bounds__(kThreads) logits_kernel(const LogitsArgs a) {
  __shared__ RowState state;
  __shared__ Stats red[kWarps + 1];
  const int64_t row = blockIdx.x;
  const int vocab = static_cast<int>(a.vocab);
  const int tid = threadIdx.x;
  // Not __restrict__ and no read-only loads: the row is written (masks) and read back.
  float* x = a.logits + row * a.ld;
  const LogitRulesGpu& r = a.rules;

  if (tid < 32) find_row_state(a, row, &state);
  __syncthreads();
  const RowState st = state;

  // Masks of single ids.
  if (r.suppress_blank && st.n == 0) {
    for (int j = tid; j < r.n_blank; j += kThreads) {
      const int id = r.blank_ids[j];
      if (id >= 0 && id < vocab) {
        x[id] = -INFINITY;
      } else if (a.error) {
        atomicOr(a.error, kLogitsBadSuppressId);
      }
    }
    if (tid == 0) x[r.eot] = -INFINITY;
  }
  for (int j = tid; j < r.n_suppress; j += kThreads) {
    const int id = r.suppress_ids[j];
    if (id >= 0 && id < vocab) {
      x[id] = -INFINITY;
    } else if (a.error) {
      atomicOr(a.error, kLogitsBadSuppressId);
    }
  }
  if (r.timestamps) {
    const int tb = r.timestamp_begin;
    if (tid == 0 && r.no_timestamps >= 0) x[r.no_timestamps] = -INFINITY;
    // Pairs.
    if (st.last_ts) {
      if (st.pen_ts) {
        mask_range(x, tb, vocab);
      } else {
        mask_range(x, 0, r.eot);
      }
    }
    // Monotone; a new segment cannot reuse the last value.
    if (st.last_value >= 0) {
      const int limit = (st.last_ts && !st.pen_ts) ? st.last_value : st.last_value + 1;
      mask_range(x, tb, min(limit, vocab));
    }
    // First sampled token: a timestamp no later than the max initial one.
    if (st.n == 0) {
      mask_range(x, 0, tb);
      if (r.max_initial_timestamp_index >= 0) mask_range(x, tb + r.max_initial_timestamp_index + 1, vocab);
    }
    __syncthreads();

    // Force a timestamp when logsumexp(timestamps) > max(text): bv carries the text max, (m, s)
    // the timestamps' log-sum-exp.
    Stats t = stats_identity();
    for (int i = tid; i < vocab; i += kThreads) {
      const float v = x[i];
      if (i < tb) {
        t.bv = fmaxf(t.bv, v);
      } else {
        stats_add_lse(t, v);
      }
    }
    t.bi = 0;
    t = stats_block_reduce(t, red);
    if (t.m > -INFINITY && t.m + logf(t.s) > t.bv) mask_range(x, 0, tb);
  }
  __syncthreads();
  if (a.eot_after != nullptr) {
    const int left = a.eot_after[row];
    if (left > 0) {
      if (tid == 0) x[r.eot] = -INFINITY;
    } else if (left == 0) {
      mask_range(x, 0, r.eot);
      mask_range(x, r.eot + 1, vocab);
      if (tid == 0) x[r.eot] = 0.0f;
    }
    __syncthreads();
  }

  // Pass 1: normaliser and argmax of the filtered row.
  Stats p = stats_identity();
#pragma unroll 4
  for (int i = tid; i < vocab; i += kThreads) {
    const float v = x[i];
    stats_add_lse(p, v);
    stats_add_best(p, v, i);
  }
  p = stats_block_reduce(p, red);
  const float lse = p.m + logf(p.s);
  if (a.uniform != nullptr) {
    const int tok = sample_row(x, vocab, a.temperature, p.bv, a.uniform[row]);
    if (tid == 0) {
      if (a.argmax) a.argmax[row] = tok;
      if (a.argmax_logprob) a.argmax_logprob[row] = x[tok] - lse;
      if (!(p.bv > -INFINITY) && a.error) atomicOr(a.error, kLogitsAllMasked);
    }
  } else if (tid == 0) {
    if (a.argmax) a.argmax[row] = p.bi;
    if (a.argmax_logprob) a.argmax_logprob[row] = p.bv - lse;
  }
  if (a.logprobs == nullptr && a.top_k == 0) return;

  // Pass 2: logprobs and the per-thread top-k, ranked by logprob as the CPU ranks them.
  TopK top;
  top.init();
  float* lp = a.logprobs ? a.logprobs + row * a.logprobs_ld : nullptr;
#pragma unroll 4
  for (int i = tid; i < vocab; i += kThreads) {
    const float v = x[i] - lse;
    if (lp) lp[i] = v;
    if (a.top_k > 0) top.insert(v, i);
  }
  // Merge: k rounds of a block-wide best over the threads' heads; the winner pops its head.
  for (int k = 0; k < a.top_k; ++k) {
    Stats h = stats_identity();
    h.bv = top.v[0];
    h.bi = top.i[0];
    h = stats_block_reduce(h, red);
    if (top.i[0] == h.bi) top.pop();  // ids are unique across threads: exactly one pops
    if (tid == 0) {
      a.topk_ids[row * a.top_k + k] = h.bi;
      a.topk_logprobs[row * a.top_k + k] = h.bv;
    }
  }
}

}  // namespace

void logits_select(const LogitsArgs& a, cudaStream_t stream) {
  const LogitRulesGpu& r = a.rules;
  FLURRY_CHECK(a.logits != nullptr, "logits_select: null logits");
  FLURRY_CHECK(a.rows > 0 && a.rows < (int64_t{1} << 31), "logits_select: bad row count " << a.rows);
  FLURRY_CHECK(a.vocab > 0 && a.vocab < (int64_t{1} << 30) && a.ld >= a.vocab,
               "logits_select: bad vocab " << a.vocab << " / ld " << a.ld);
  FLURRY_CHECK(a.top_k >= 0 && a.top_k <= kLogitsMaxTopK && a.top_k <= a.vocab,
               "logits_select: top_k " << a.top_k << " outside [0, " << kLogitsMaxTopK << "]");
  FLURRY_CHECK(a.top_k == 0 || (a.topk_ids && a.topk_logprobs), "logits_select: null top-k outputs");
  FLURRY_CHECK(a.uniform == nullptr || (a.temperature > 0.0f && a.top_k == 0),
               "logits_select: sampling needs a temperature > 0 and no top-k");
  FLURRY_CHECK(a.logprobs == nullptr || a.logprobs_ld >= a.vocab, "logits_select: logprobs_ld too small");
  FLURRY_CHECK(r.n_suppress >= 0 && (r.n_suppress == 0 || r.suppress_ids),
               "logits_select: null suppress list");
  if (r.suppress_blank) {
    FLURRY_CHECK(r.eot >= 0 && r.eot < a.vocab, "logits_select: EOT " << r.eot << " outside vocab");
    FLURRY_CHECK(r.n_blank >= 0 && (r.n_blank == 0 || r.blank_ids), "logits_select: null blank list");
    FLURRY_CHECK(a.n_sampled != nullptr, "logits_select: SuppressBlank needs n_sampled");
  }
  if (a.eot_after != nullptr) {
    FLURRY_CHECK(r.eot >= 0 && r.eot < a.vocab, "logits_select: forced lengths need EOT in the vocab (" << r.eot << ")");
  }
  if (r.timestamps) {
    FLURRY_CHECK(r.timestamp_begin > 0 && r.timestamp_begin < a.vocab && r.eot >= 0 &&
                     r.eot < r.timestamp_begin && r.no_timestamps < a.vocab,
                 "logits_select: bad timestamp rule ids");
    FLURRY_CHECK(a.n_sampled != nullptr && a.sampled != nullptr && a.sampled_ld > 0,
                 "logits_select: the timestamp rules need the token history");
  }
  logits_kernel<<<static_cast<unsigned>(a.rows), kThreads, 0, stream>>>(a);
  FLURRY_LAUNCH_CHECK("logits_kernel", stream);
}

}  // namespace flurry
