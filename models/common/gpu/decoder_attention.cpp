// Decoder self- and cross-attention blocks shared by every model (see decoder_attention.h).
#include "models/common/gpu/decoder_attention.h"

#include <algorithm>
#include <vector>

#include "kernels/attention.cuh"
#include "kernels/decode_attention.cuh"
#include "runtime/check.h"

namespace flurry::models {
namespace {

constexpr int kMaxDecodeQueries = 8;  // decode_attention's q_len limit

// What the dispatch reads from a call's sequences.
struct Layout {
  std::vector<int64_t> row;  // first row of each sequence in x / out
  int64_t rows = 0;
  int uniform_n_new = 0;  // > 0 when every sequence brings this many rows
  bool consecutive_slots = true;
  int most_new = 0;
};

Layout layout_of(const GpuDecodeAttentionShape& s) {
  Layout l;
  l.row.reserve(static_cast<size_t>(s.batch));
  l.uniform_n_new = s.seqs[0].n_new;
  for (int i = 0; i < s.batch; ++i) {
    const GpuDecodeSeq& q = s.seqs[i];
    l.row.push_back(l.rows);
    l.rows += q.n_new;
    l.most_new = std::max(l.most_new, q.n_new);
    if (q.n_new != l.uniform_n_new) l.uniform_n_new = 0;
    if (q.slot != s.seqs[0].slot + i) l.consecutive_slots = false;
  }
  return l;
}

void check_call(const GpuContext& ctx, const GpuLinear& in_proj, int64_t in_cols, const GpuLinear& out_proj,
                const GpuDecodeAttentionShape& s, const char* who) {
  const int64_t d = ctx.d;
  FLURRY_CHECK(in_proj.in == d && in_proj.out == in_cols && out_proj.in == d && out_proj.out == d,
               who << ": projections " << in_proj.in << "->" << in_proj.out << " and " << out_proj.in << "->"
                   << out_proj.out << " for width " << d);
  FLURRY_CHECK(int64_t{s.heads} * s.head_dim == d, who << ": " << s.heads << " heads of " << s.head_dim
                                                       << " for width " << d);
  FLURRY_CHECK(s.batch >= 1 && s.seqs != nullptr, who << ": no sequences");
  for (int i = 0; i < s.batch; ++i) {
    FLURRY_CHECK(s.seqs[i].n_new >= 1 && s.seqs[i].pos >= 0,
                 who << ": sequence " << i << " brings " << s.seqs[i].n_new << " rows at " << s.seqs[i].pos);
  }
}

// Every new row lands inside the cache (the kernel also refuses on the device, but a host-side
// description is checked before anything is launched).
void check_cache(const GpuKvCache& cache, const GpuDecodeAttentionShape& s) {
  for (int i = 0; i < s.batch; ++i) {
    const GpuDecodeSeq& q = s.seqs[i];
    FLURRY_CHECK(q.slot >= 0 && q.slot < cache.slots && q.pos + q.n_new <= cache.max_len,
                 "gpu_decode_self_attention: sequence " << i << " writes rows " << q.pos << ".." << q.pos + q.n_new - 1
                                                        << " of slot " << q.slot << " in a cache of " << cache.slots
                                                        << " slots x " << cache.max_len << " rows");
  }
}

DecodeAttentionArgs decode_args(const GpuContext& ctx, const GpuDecodeAttentionShape& s) {
  DecodeAttentionArgs a;
  a.type = ctx.dtype;
  a.heads = s.heads;
  a.head_dim = s.head_dim;
  a.scale = s.scale;
  a.workspace = ctx.attn_ws;
  a.workspace_bytes = ctx.attn_ws_bytes;
  return a;
}

FlashAttentionArgs flash_args(const GpuContext& ctx, const GpuDecodeAttentionShape& s) {
  FlashAttentionArgs a;
  a.type = ctx.dtype;
  a.heads = s.heads;
  a.head_dim = s.head_dim;
  a.scale = s.scale;
  a.batch = 1;
  return a;
}

// Writes the new K and V rows (columns d and 2d of the fused projection) of every sequence into its
// cache slot: one kernel launch for the whole call.
void append_kv(const GpuContext& ctx, const GpuKvCache& cache, const GpuDecodeAttentionShape& s, const Layout& l,
               const void* qkv_buf) {
  const size_t elt = dtype_size(ctx.dtype);
  KvAppendArgs a;
  a.k_src = elem_ptr(qkv_buf, ctx.d, elt);
  a.v_src = elem_ptr(qkv_buf, 2 * ctx.d, elt);
  a.src_ld = 3 * ctx.d;
  a.k_cache = cache.k;
  a.v_cache = cache.v;
  a.cache_ld = cache.ld;
  a.slot_stride = cache.slot_stride;
  a.slots = cache.slots;
  a.max_len = cache.max_len;
  a.width = ctx.d;
  a.type = ctx.dtype;
  a.batch = s.batch;
  a.seq_slots = s.index.slots;
  a.seq_positions = s.index.positions;
  a.row_starts = s.index.row_starts;
  a.max_new = l.most_new;
  a.error = cache.error;
  kv_append(a, ctx.stream);
}

// Causal attention of each sequence's queries (qkv_buf, row stride 3d) over its cache -> attn_buf.
void self_attend(const GpuContext& ctx, const GpuKvCache& cache, const GpuDecodeAttentionShape& s, const Layout& l,
                 const void* qkv_buf, void* attn_buf) {
  const int64_t d = ctx.d;
  const size_t elt = dtype_size(ctx.dtype);
  if (l.uniform_n_new > 0 && l.uniform_n_new <= kMaxDecodeQueries && l.consecutive_slots) {
    DecodeAttentionArgs a = decode_args(ctx, s);
    a.q = qkv_buf;
    a.q_ld = 3 * d;
    a.out = attn_buf;
    a.out_ld = d;
    a.k = elem_ptr(cache.k, int64_t{s.seqs[0].slot} * cache.slot_stride, elt);
    a.v = elem_ptr(cache.v, int64_t{s.seqs[0].slot} * cache.slot_stride, elt);
    a.k_ld = a.v_ld = cache.ld;
    a.k_batch_stride = a.v_batch_stride = cache.slot_stride;
    a.batch = s.batch;
    a.q_len = l.uniform_n_new;
    a.kv_lens = s.index.kv_lens;
    int most = 0;
    for (int i = 0; i < s.batch; ++i) most = std::max(most, s.seqs[i].pos + s.seqs[i].n_new);
    a.kv_len = most;
    a.causal = true;
    decode_attention(a, ctx.stream);
    return;
  }
  for (int i = 0; i < s.batch; ++i) {
    const GpuDecodeSeq& q = s.seqs[i];
    const int64_t r = l.row[static_cast<size_t>(i)];
    const void* k = elem_ptr(cache.k, int64_t{q.slot} * cache.slot_stride, elt);
    const void* v = elem_ptr(cache.v, int64_t{q.slot} * cache.slot_stride, elt);
    if (q.n_new <= kMaxDecodeQueries) {
      DecodeAttentionArgs a = decode_args(ctx, s);
      a.q = row_ptr(qkv_buf, r, 3 * d, elt);
      a.q_ld = 3 * d;
      a.out = row_ptr(attn_buf, r, d, elt);
      a.out_ld = d;
      a.k = k;
      a.v = v;
      a.k_ld = a.v_ld = cache.ld;
      a.batch = 1;
      a.q_len = q.n_new;
      a.kv_len = q.pos + q.n_new;
      a.causal = true;
      decode_attention(a, ctx.stream);
    } else {
      FlashAttentionArgs a = flash_args(ctx, s);
      a.q = row_ptr(qkv_buf, r, 3 * d, elt);
      a.q_ld = 3 * d;
      a.k = k;
      a.v = v;
      a.k_ld = a.v_ld = cache.ld;
      a.out = row_ptr(attn_buf, r, d, elt);
      a.out_ld = d;
      a.q_len = q.n_new;
      a.kv_len = q.pos + q.n_new;
      a.causal = true;
      flash_attention(a, ctx.stream);
    }
  }
}

// Attention of each sequence's queries (q_buf, row stride d) over its source's K/V -> attn_buf.
void cross_attend(const GpuContext& ctx, const GpuCrossKv& kv, const GpuDecodeAttentionShape& s, const Layout& l,
                  const void* q_buf, void* attn_buf) {
  const int64_t d = ctx.d;
  const size_t elt = dtype_size(ctx.dtype);
  const auto k_of = [&](int source) { return elem_ptr(kv.k, int64_t{source} * kv.source_stride, elt); };
  const auto v_of = [&](int source) { return elem_ptr(kv.v, int64_t{source} * kv.source_stride, elt); };
  const auto decode = [&](int64_t row, int batch, int q_len, int source, int64_t batch_stride) {
    DecodeAttentionArgs a = decode_args(ctx, s);
    a.q = row_ptr(q_buf, row, d, elt);
    a.q_ld = d;
    a.out = row_ptr(attn_buf, row, d, elt);
    a.out_ld = d;
    a.k = k_of(source);
    a.v = v_of(source);
    a.k_ld = a.v_ld = kv.ld;
    a.k_batch_stride = a.v_batch_stride = batch_stride;
    a.batch = batch;
    a.q_len = q_len;
    a.kv_len = kv.len;
    decode_attention(a, ctx.stream);
  };
  const GpuDecodeSeq* q = s.seqs;
  if (l.uniform_n_new > 0 && l.uniform_n_new <= kMaxDecodeQueries) {
    const int nn = l.uniform_n_new;
    int i = 0;
    while (i < s.batch) {
      int j = i + 1;
      if (j < s.batch && q[j].source == q[i].source) {
        // Sequences sharing a source: their rows are consecutive; pack them as the queries of one
        // sequence, at most eight at a time.
        while (j < s.batch && q[j].source == q[i].source) ++j;
        const int64_t first = l.row[static_cast<size_t>(i)];
        const int64_t total = int64_t{j - i} * nn;
        for (int64_t q0 = 0; q0 < total; q0 += kMaxDecodeQueries) {
          decode(first + q0, 1, static_cast<int>(std::min<int64_t>(kMaxDecodeQueries, total - q0)), q[i].source, 0);
        }
      } else {
        while (j < s.batch && q[j].source == q[j - 1].source + 1) ++j;
        decode(l.row[static_cast<size_t>(i)], j - i, nn, q[i].source, kv.source_stride);
      }
      i = j;
    }
    return;
  }
  for (int i = 0; i < s.batch; ++i) {
    const int64_t r = l.row[static_cast<size_t>(i)];
    if (q[i].n_new <= kMaxDecodeQueries) {
      decode(r, 1, q[i].n_new, q[i].source, 0);
      continue;
    }
    FlashAttentionArgs a = flash_args(ctx, s);
    a.q = row_ptr(q_buf, r, d, elt);
    a.q_ld = d;
    a.k = k_of(q[i].source);
    a.v = v_of(q[i].source);
    a.k_ld = a.v_ld = kv.ld;
    a.out = row_ptr(attn_buf, r, d, elt);
    a.out_ld = d;
    a.q_len = q[i].n_new;
    a.kv_len = kv.len;
    flash_attention(a, ctx.stream);
  }
}

}  // namespace

int64_t decode_index_ints(int batch) { return 4 * int64_t{batch} + 1; }

void fill_decode_index(const GpuDecodeSeq* seqs, int batch, int32_t* host) {
  int32_t* positions = host;
  int32_t* kv_lens = host + batch;
  int32_t* slots = host + 2 * int64_t{batch};
  int32_t* row_starts = host + 3 * int64_t{batch};
  int32_t row = 0;
  for (int i = 0; i < batch; ++i) {
    positions[i] = seqs[i].pos;
    kv_lens[i] = seqs[i].pos + seqs[i].n_new;
    slots[i] = seqs[i].slot;
    row_starts[i] = row;
    row += seqs[i].n_new;
  }
  row_starts[batch] = row;
}

GpuDecodeIndex decode_index_view(const int32_t* base, int batch) {
  GpuDecodeIndex ix;
  ix.positions = base;
  ix.kv_lens = base + batch;
  ix.slots = base + 2 * int64_t{batch};
  ix.row_starts = base + 3 * int64_t{batch};
  return ix;
}

int64_t decode_rows(const GpuDecodeAttentionShape& shape) {
  int64_t rows = 0;
  for (int i = 0; i < shape.batch; ++i) rows += shape.seqs[i].n_new;
  return rows;
}

void gpu_decode_self_attention(const GpuContext& ctx, const GpuLinear& qkv, const GpuLinear& out_proj,
                               const GpuKvCache& cache, const GpuDecodeAttentionShape& shape, const void* x,
                               void* qkv_buf, void* attn_buf, void* out) {
  check_call(ctx, qkv, 3 * ctx.d, out_proj, shape, "gpu_decode_self_attention");
  check_cache(cache, shape);
  const Layout l = layout_of(shape);
  gpu_linear(ctx, qkv, x, qkv_buf, l.rows);
  append_kv(ctx, cache, shape, l, qkv_buf);
  self_attend(ctx, cache, shape, l, qkv_buf, attn_buf);
  gpu_linear(ctx, out_proj, attn_buf, out, l.rows);
}

void gpu_decode_cross_attention(const GpuContext& ctx, const GpuLinear& q_proj, const GpuLinear& out_proj,
                                const GpuCrossKv& kv, const GpuDecodeAttentionShape& shape, const void* x,
                                void* q_buf, void* attn_buf, void* out) {
  check_call(ctx, q_proj, ctx.d, out_proj, shape, "gpu_decode_cross_attention");
  const Layout l = layout_of(shape);
  gpu_linear(ctx, q_proj, x, q_buf, l.rows);
  cross_attend(ctx, kv, shape, l, q_buf, attn_buf);
  gpu_linear(ctx, out_proj, attn_buf, out, l.rows);
}

size_t gpu_decode_attention_workspace_bytes(int heads, int head_dim, int max_batch, int max_kv_len) {
  size_t most = 0;
  DecodeAttentionArgs a;
  a.heads = heads;
  a.head_dim = head_dim;
  a.kv_len = max_kv_len;
  for (int b = 1; b <= max_batch; ++b) {
    a.batch = b;
    for (int q = 1; q <= kMaxDecodeQueries; ++q) {
      a.q_len = q;
      most = std::max(most, decode_attention_workspace_bytes(a));
    }
  }
  return most;
}

}  // namespace flurry::models
