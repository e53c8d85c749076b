// Whisper's decoder on the GPU: one call appends new tokens for a set of cache slots and computes
// the logits after each one's last token. Order of operations is the CPU reference's
// (models/whisper/decoder.cpp); residual adds are fused into the following LayerNorm.
//
// Attention dispatch. The common step (every sequence brings the same n_new <= 8 tokens, slots
// consecutive) is one decode_attention launch over the self caches. Cross-attention is
// non-causal, so the queries of sequences that read one window (beams, best-of samples) are packed
// as up to eight queries of ONE sequence over that window's K/V, which is then read once for all
// of them; runs of sequences reading consecutive windows use one batched launch. Prefill chunks
// with more than eight tokens go through flash_attention per sequence.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include "kernels/attention.cuh"
#include "runtime/cuda/gemm_gpu.h"
#include "kernels/decode_attention.cuh"
#include "kernels/embed.cuh"
#include "kernels/layernorm.cuh"
#include "models/whisper/gpu/gpu_ops.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry::whisper {

using gpu_detail::linear;
using gpu_detail::residual_layernorm;
using gpu_detail::row_ptr;

namespace {

constexpr int kMaxDecodeQueries = 8;  // decode_attention's q_len limit

// One chunk of sequences [begin, end) of a decoder call, with each one's first row.
struct Chunk {
  int begin = 0, end = 0;
  std::vector<int64_t> row;  // first token row of sequence begin + k in the chunk's buffers
  int64_t rows = 0;
  int uniform_n_new = 0;     // > 0 when every sequence brings this many tokens
  bool consecutive_slots = false;
  bool equal_pos = false;
};

Chunk make_chunk(const std::vector<GpuSeq>& seqs, int begin, int end) {
  Chunk c;
  c.begin = begin;
  c.end = end;
  c.uniform_n_new = seqs[begin].n_new;
  c.consecutive_slots = true;
  c.equal_pos = true;
  for (int i = begin; i < end; ++i) {
    c.row.push_back(c.rows);
    c.rows += seqs[i].n_new;
    if (seqs[i].n_new != c.uniform_n_new) c.uniform_n_new = 0;
    if (seqs[i].slot != seqs[begin].slot + (i - begin)) c.consecutive_slots = false;
    if (seqs[i].pos != seqs[begin].pos) c.equal_pos = false;
  }
  return c;
}

DecodeAttentionArgs base_decode_args(WhisperGpu& g) {
  const WhisperConfig& c = g.model->config();
  DecodeAttentionArgs a;
  a.type = g.model->dtype();
  a.heads = static_cast<int>(c.decoder_attention_heads);
  a.head_dim = static_cast<int>(c.decoder_head_dim());
  a.scale = 1.0f;  // folded into q at load time
  a.workspace = g.state->attn_ws;
  a.workspace_bytes = g.state->attn_ws_bytes;
  return a;
}

FlashAttentionArgs base_flash_args(WhisperGpu& g) {
  const WhisperConfig& c = g.model->config();
  FlashAttentionArgs a;
  a.type = g.model->dtype();
  a.heads = static_cast<int>(c.decoder_attention_heads);
  a.head_dim = static_cast<int>(c.decoder_head_dim());
  a.scale = 1.0f;
  a.batch = 1;
  return a;
}

// Appends the new K and V rows of the chunk (columns d..3d of the fused QKV rows) to the caches.
void append_kv(WhisperGpu& g, size_t layer, const std::vector<GpuSeq>& seqs, const Chunk& ch) {
  WhisperGpuState& s = *g.state;
  const size_t e = s.elt, d = static_cast<size_t>(s.d), mt = static_cast<size_t>(s.max_tokens);
  for (int part = 1; part <= 2; ++part) {
    char* cache = static_cast<char*>(part == 1 ? s.self_k[layer] : s.self_v[layer]);
    const char* src = static_cast<const char*>(s.dec_qkv) + part * d * e;
    if (ch.uniform_n_new > 0 && ch.consecutive_slots && ch.equal_pos) {
      // One 3-D copy: depth = sequences, height = new rows, width = one row of d elements.
      const GpuSeq& f = seqs[ch.begin];
      cudaMemcpy3DParms p = {};
      p.srcPtr = make_cudaPitchedPtr(const_cast<char*>(src), 3 * d * e, d * e, static_cast<size_t>(ch.uniform_n_new));
      p.dstPtr = make_cudaPitchedPtr(cache + (static_cast<size_t>(f.slot) * mt + static_cast<size_t>(f.pos)) * d * e,
                                     d * e, d * e, mt);
      p.extent = make_cudaExtent(d * e, static_cast<size_t>(ch.uniform_n_new), static_cast<size_t>(ch.end - ch.begin));
      p.kind = cudaMemcpyDeviceToDevice;
      CUDA_CHECK(cudaMemcpy3DAsync(&p, *g.stream));
      continue;
    }
    for (int i = ch.begin; i < ch.end; ++i) {
      const GpuSeq& q = seqs[i];
      char* dst = cache + (static_cast<size_t>(q.slot) * mt + static_cast<size_t>(q.pos)) * d * e;
      CUDA_CHECK(cudaMemcpy2DAsync(dst, d * e, src + static_cast<size_t>(ch.row[i - ch.begin]) * 3 * d * e, 3 * d * e,
                                   d * e, static_cast<size_t>(q.n_new), cudaMemcpyDeviceToDevice, *g.stream));
    }
  }
}

// Causal self-attention of the chunk's queries (dec_qkv) over each slot's cache -> dec_attn.
void self_attention(WhisperGpu& g, size_t layer, const std::vector<GpuSeq>& seqs, const Chunk& ch) {
  WhisperGpuState& s = *g.state;
  const int64_t d = s.d, mt = s.max_tokens;
  const size_t e = s.elt;
  if (ch.uniform_n_new > 0 && ch.uniform_n_new <= kMaxDecodeQueries && ch.consecutive_slots) {
    DecodeAttentionArgs a = base_decode_args(g);
    a.q = s.dec_qkv;
    a.q_ld = 3 * d;
    a.out = s.dec_attn;
    a.out_ld = d;
    a.k = row_ptr(s.self_k[layer], int64_t{seqs[ch.begin].slot} * mt, d, e);
    a.v = row_ptr(s.self_v[layer], int64_t{seqs[ch.begin].slot} * mt, d, e);
    a.k_ld = a.v_ld = d;
    a.k_batch_stride = a.v_batch_stride = mt * d;
    a.batch = ch.end - ch.begin;
    a.q_len = ch.uniform_n_new;
    a.kv_lens = s.kv_lens;  // staged per chunk: pos + n_new
    int most = 0;
    for (int i = ch.begin; i < ch.end; ++i) most = std::max(most, seqs[i].pos + seqs[i].n_new);
    a.kv_len = most;
    a.causal = true;
    decode_attention(a, *g.stream);
    return;
  }
  for (int i = ch.begin; i < ch.end; ++i) {
    const GpuSeq& q = seqs[i];
    const int64_t r = ch.row[i - ch.begin];
    const void* k = row_ptr(s.self_k[layer], int64_t{q.slot} * mt, d, e);
    const void* v = row_ptr(s.self_v[layer], int64_t{q.slot} * mt, d, e);
    if (q.n_new <= kMaxDecodeQueries) {
      DecodeAttentionArgs a = base_decode_args(g);
      a.q = row_ptr(s.dec_qkv, r, 3 * d, e);
      a.q_ld = 3 * d;
      a.out = row_ptr(s.dec_attn, r, d, e);
      a.out_ld = d;
      a.k = k;
      a.v = v;
      a.k_ld = a.v_ld = d;
      a.batch = 1;
      a.q_len = q.n_new;
      a.kv_len = q.pos + q.n_new;
      a.causal = true;
      decode_attention(a, *g.stream);
    } else {
      FlashAttentionArgs a = base_flash_args(g);
      a.q = row_ptr(s.dec_qkv, r, 3 * d, e);
      a.q_ld = 3 * d;
      a.k = k;
      a.v = v;
      a.k_ld = a.v_ld = d;
      a.out = row_ptr(s.dec_attn, r, d, e);
      a.out_ld = d;
      a.q_len = q.n_new;
      a.kv_len = q.pos + q.n_new;
      a.causal = true;
      flash_attention(a, *g.stream);
    }
  }
}

// Cross-attention of the chunk's queries (dec_qkv, ld d) over each sequence's window -> dec_attn.
void cross_attention(WhisperGpu& g, size_t layer, const std::vector<GpuSeq>& seqs, const Chunk& ch) {
  WhisperGpuState& s = *g.state;
  const int64_t d = s.d, T = s.n_ctx;
  const size_t e = s.elt;
  const auto kv_of = [&](int audio) { return row_ptr(s.cross_kv[layer], int64_t{audio} * T, 2 * d, e); };
  const auto decode = [&](int64_t row, int batch, int q_len, int audio, int64_t batch_stride) {
    DecodeAttentionArgs a = base_decode_args(g);
    a.q = row_ptr(s.dec_qkv, row, d, e);
    a.q_ld = d;
    a.out = row_ptr(s.dec_attn, row, d, e);
    a.out_ld = d;
    a.k = kv_of(audio);
    a.v = gpu_detail::elem_ptr(kv_of(audio), d, e);
    a.k_ld = a.v_ld = 2 * d;
    a.k_batch_stride = a.v_batch_stride = batch_stride;
    a.batch = batch;
    a.q_len = q_len;
    a.kv_len = static_cast<int>(T);
    decode_attention(a, *g.stream);
  };
  if (ch.uniform_n_new > 0 && ch.uniform_n_new <= kMaxDecodeQueries) {
    const int nn = ch.uniform_n_new;
    int i = ch.begin;
    while (i < ch.end) {
      int j = i + 1;
      if (j < ch.end && seqs[j].audio == seqs[i].audio) {
        // Sequences sharing a window: their rows are consecutive; pack them as the queries of one
        // sequence, at most eight at a time.
        while (j < ch.end && seqs[j].audio == seqs[i].audio) ++j;
        const int64_t first = ch.row[i - ch.begin];
        const int64_t total = int64_t{j - i} * nn;
        for (int64_t q0 = 0; q0 < total; q0 += kMaxDecodeQueries) {
          decode(first + q0, 1, static_cast<int>(std::min<int64_t>(kMaxDecodeQueries, total - q0)), seqs[i].audio, 0);
        }
      } else {
        while (j < ch.end && seqs[j].audio == seqs[j - 1].audio + 1) ++j;
        decode(ch.row[i - ch.begin], j - i, nn, seqs[i].audio, T * 2 * d);
      }
      i = j;
    }
    return;
  }
  for (int i = ch.begin; i < ch.end; ++i) {
    const GpuSeq& q = seqs[i];
    const int64_t r = ch.row[i - ch.begin];
    if (q.n_new <= kMaxDecodeQueries) {
      decode(r, 1, q.n_new, q.audio, 0);
      continue;
    }
    FlashAttentionArgs a = base_flash_args(g);
    a.q = row_ptr(s.dec_qkv, r, d, e);
    a.q_ld = d;
    a.k = kv_of(q.audio);
    a.v = gpu_detail::elem_ptr(kv_of(q.audio), d, e);
    a.k_ld = a.v_ld = 2 * d;
    a.out = row_ptr(s.dec_attn, r, d, e);
    a.out_ld = d;
    a.q_len = q.n_new;
    a.kv_len = static_cast<int>(T);
    flash_attention(a, *g.stream);
  }
}

// Token + position embedding of the chunk's tokens into dec_h (ids, offsets and kv_lens staged).
void stage_and_embed(WhisperGpu& g, const std::vector<GpuSeq>& seqs, const Chunk& ch) {
  WhisperGpuState& s = *g.state;
  const WhisperGpuModel& m = *g.model;
  const int cnt = ch.end - ch.begin;
  g.stream->synchronize();  // the pinned staging may still feed the previous chunk's copies
  int32_t* ids = s.host_ints.as<int32_t>();
  int32_t* offs = ids + s.dec_rows;
  int32_t* lens = offs + s.plan.max_slots;
  for (int i = ch.begin; i < ch.end; ++i) {
    const GpuSeq& q = seqs[i];
    std::copy(q.tokens, q.tokens + q.n_new, ids + ch.row[i - ch.begin]);
    offs[i - ch.begin] = q.pos;
    lens[i - ch.begin] = q.pos + q.n_new;
  }
  CUDA_CHECK(cudaMemcpyAsync(s.ids, ids, static_cast<size_t>(ch.rows) * 4, cudaMemcpyHostToDevice, *g.stream));
  CUDA_CHECK(cudaMemcpyAsync(s.offsets, offs, static_cast<size_t>(cnt) * 4, cudaMemcpyHostToDevice, *g.stream));
  CUDA_CHECK(cudaMemcpyAsync(s.kv_lens, lens, static_cast<size_t>(cnt) * 4, cudaMemcpyHostToDevice, *g.stream));

  EmbedArgs a;
  a.tok = m.embed_tokens;
  a.pos = m.dec_positions;
  a.error = s.error;
  a.type = m.dtype();
  a.vocab = m.config().vocab_size;
  a.n_pos = m.config().max_target_positions;
  a.d = s.d;
  if (ch.uniform_n_new > 0) {
    a.ids = s.ids;
    a.offsets = s.offsets;
    a.out = s.dec_h;
    a.n_seq = cnt;
    a.n_new = ch.uniform_n_new;
    embed_tokens_positions(a, *g.stream);
    return;
  }
  for (int k = 0; k < cnt; ++k) {
    a.ids = s.ids + ch.row[k];
    a.offsets = s.offsets + k;
    a.out = row_ptr(s.dec_h, ch.row[k], s.d, s.elt);
    a.n_seq = 1;
    a.n_new = seqs[ch.begin + k].n_new;
    embed_tokens_positions(a, *g.stream);
  }
}

// Gathers rows of dec_normed into dec_sel (rows at `src_rows`) and projects them to logits rows
// [dst_row, dst_row + n) of state.logits.
void project(WhisperGpu& g, const std::vector<int64_t>& src_rows, int64_t dst_row) {
  WhisperGpuState& s = *g.state;
  const size_t row_bytes = static_cast<size_t>(s.d) * s.elt;
  const int64_t n = static_cast<int64_t>(src_rows.size());
  bool strided = n > 1;
  for (int64_t k = 2; k < n && strided; ++k) strided = src_rows[k] - src_rows[k - 1] == src_rows[1] - src_rows[0];
  if (n == 1 || (strided && src_rows[1] > src_rows[0])) {
    const size_t pitch = n == 1 ? row_bytes : static_cast<size_t>(src_rows[1] - src_rows[0]) * row_bytes;
    CUDA_CHECK(cudaMemcpy2DAsync(s.dec_sel, row_bytes, row_ptr(s.dec_normed, src_rows[0], s.d, s.elt), pitch,
                                 row_bytes, static_cast<size_t>(n), cudaMemcpyDeviceToDevice, *g.stream));
  } else {
    for (int64_t k = 0; k < n; ++k) {
      CUDA_CHECK(cudaMemcpyAsync(row_ptr(s.dec_sel, k, s.d, s.elt), row_ptr(s.dec_normed, src_rows[k], s.d, s.elt),
                                 row_bytes, cudaMemcpyDeviceToDevice, *g.stream));
    }
  }
  GemmArgs a;
  a.m = n;
  a.n = s.vocab;
  a.k = s.d;
  a.trans_b = true;
  a.a = s.dec_sel;
  a.lda = s.d;
  a.b = g.model->proj_out;
  a.ldb = s.d;
  a.c = s.logits + dst_row * s.vocab;
  a.ldc = s.vocab;
  a.ab_type = g.model->dtype();
  a.c_type = DType::F32;
  gemm_gpu(*g.lt, a, s.gemm_ws, s.gemm_ws_bytes, *g.stream);
}

void run_chunk(WhisperGpu& g, const std::vector<GpuSeq>& seqs, const Chunk& ch, int n_total, bool want_aux) {
  WhisperGpuState& s = *g.state;
  const WhisperGpuModel& m = *g.model;
  stage_and_embed(g, seqs, ch);
  const void* pending = nullptr;
  for (size_t li = 0; li < m.dec_layers.size(); ++li) {
    const GpuDecoderLayer& l = m.dec_layers[li];
    residual_layernorm(g, s.dec_h, pending, l.self_ln, s.dec_normed, ch.rows);
    linear(g, l.self_qkv, s.dec_normed, s.dec_qkv, ch.rows);
    append_kv(g, li, seqs, ch);
    self_attention(g, li, seqs, ch);
    linear(g, l.self_out, s.dec_attn, s.dec_proj, ch.rows);
    residual_layernorm(g, s.dec_h, s.dec_proj, l.cross_ln, s.dec_normed, ch.rows);
    linear(g, l.cross_q, s.dec_normed, s.dec_qkv, ch.rows);  // [rows, d] in the qkv buffer
    cross_attention(g, li, seqs, ch);
    linear(g, l.cross_out, s.dec_attn, s.dec_proj, ch.rows);
    residual_layernorm(g, s.dec_h, s.dec_proj, l.ffn_ln, s.dec_normed, ch.rows);
    gpu_detail::ffn(g, l.fc1, l.fc2, s.dec_normed, s.dec_ffn, s.dec_proj, ch.rows);
    pending = s.dec_proj;
  }
  residual_layernorm(g, s.dec_h, pending, m.dec_ln, s.dec_normed, ch.rows);
  std::vector<int64_t> last, aux;
  for (int i = ch.begin; i < ch.end; ++i) {
    last.push_back(ch.row[i - ch.begin] + seqs[i].n_new - 1);
    if (want_aux) aux.push_back(ch.row[i - ch.begin] + seqs[i].aux);
  }
  project(g, last, ch.begin);
  if (want_aux) project(g, aux, n_total + ch.begin);
}

void validate(const WhisperGpu& g, const std::vector<GpuSeq>& seqs, bool* want_aux) {
  const WhisperGpuState& s = *g.state;
  const int64_t vocab = s.vocab;
  FLURRY_CHECK(!seqs.empty() && static_cast<int>(seqs.size()) <= s.plan.max_slots,
               "whisper gpu: " << seqs.size() << " sequences for " << s.plan.max_slots << " decoder slots");
  *want_aux = seqs.front().aux >= 0;
  std::set<int> slots;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const GpuSeq& q = seqs[i];
    FLURRY_CHECK(q.slot >= 0 && q.slot < s.plan.max_slots && slots.insert(q.slot).second,
                 "whisper gpu: sequence " << i << " has slot " << q.slot << " (out of range or repeated)");
    FLURRY_CHECK(q.audio >= 0 && q.audio < s.plan.max_windows && s.encoded[static_cast<size_t>(q.audio)],
                 "whisper gpu: sequence " << i << " reads audio " << q.audio << ", which was not encoded");
    FLURRY_CHECK(q.tokens != nullptr && q.n_new > 0, "whisper gpu: no tokens for sequence " << i);
    FLURRY_CHECK(q.pos >= 0 && q.pos + q.n_new <= s.max_tokens,
                 "whisper gpu: " << q.pos << " cached + " << q.n_new << " new tokens exceed the context of "
                                 << s.max_tokens);
    FLURRY_CHECK((q.aux >= 0) == *want_aux, "whisper gpu: auxiliary logits requested for some sequences only");
    FLURRY_CHECK(q.aux < q.n_new, "whisper gpu: aux position " << q.aux << " past the " << q.n_new << " tokens");
    for (int t = 0; t < q.n_new; ++t) {
      FLURRY_CHECK(q.tokens[t] >= 0 && q.tokens[t] < vocab,
                   "whisper gpu: token " << q.tokens[t] << " outside the vocabulary of " << vocab);
    }
  }
}

}  // namespace

void decoder_forward(WhisperGpu& g, const std::vector<GpuSeq>& seqs, float* last, float* aux_out) {
  WhisperGpuState& s = *g.state;
  bool want_aux = false;
  validate(g, seqs, &want_aux);
  const auto t0 = std::chrono::steady_clock::now();
  const int n = static_cast<int>(seqs.size());
  int begin = 0;
  while (begin < n) {
    int end = begin;
    int64_t rows = 0;
    while (end < n && rows + seqs[end].n_new <= s.dec_rows) rows += seqs[end++].n_new;
    FLURRY_CHECK(end > begin, "whisper gpu: " << seqs[begin].n_new << " tokens exceed the " << s.dec_rows
                                              << " decoder rows of the plan");
    run_chunk(g, seqs, make_chunk(seqs, begin, end), n, want_aux);
    begin = end;
  }
  const size_t row_bytes = static_cast<size_t>(s.vocab) * sizeof(float);
  const int rows_out = want_aux ? 2 * n : n;
  if (last != nullptr || aux_out != nullptr) {
    CUDA_CHECK(cudaMemcpyAsync(s.host_logits.data(), s.logits, rows_out * row_bytes, cudaMemcpyDeviceToHost,
                               *g.stream));
  }
  int32_t* err_host = s.host_ints.as<int32_t>();  // the staging is idle once the stream is done
  g.stream->synchronize();
  CUDA_CHECK(cudaMemcpy(err_host, s.error, sizeof(int32_t), cudaMemcpyDeviceToHost));
  FLURRY_CHECK(*err_host == 0, "whisper gpu: the embedding kernel flagged a bad token or position (bits "
                                   << *err_host << ")");
  if (last != nullptr) std::memcpy(last, s.host_logits.data(), n * row_bytes);
  if (aux_out != nullptr && want_aux) {
    std::memcpy(aux_out, s.host_logits.as<char>() + n * row_bytes, n * row_bytes);
  }
  g.decode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  g.decode_calls += 1;
}

void copy_slot(WhisperGpu& g, int from, int to, int len) {
  WhisperGpuState& s = *g.state;
  FLURRY_CHECK(from >= 0 && from <= s.plan.max_slots && to >= 0 && to <= s.plan.max_slots && len >= 0 &&
                   len <= s.max_tokens,
               "whisper gpu: copy_slot " << from << " -> " << to << " of " << len << " rows");
  if (from == to || len == 0) return;
  const size_t bytes = static_cast<size_t>(len) * static_cast<size_t>(s.d) * s.elt;
  for (size_t l = 0; l < s.self_k.size(); ++l) {
    for (void* cache : {s.self_k[l], s.self_v[l]}) {
      CUDA_CHECK(cudaMemcpyAsync(row_ptr(cache, int64_t{to} * s.max_tokens, s.d, s.elt),
                                 row_ptr(cache, int64_t{from} * s.max_tokens, s.d, s.elt), bytes,
                                 cudaMemcpyDeviceToDevice, *g.stream));
    }
  }
}

}  // namespace flurry::whisper
