// Whisper's decoder on the GPU: one call appends new tokens for a set of cache slots and computes
// the logits after each one's last token. Order of operations is the CPU reference's
// (models/whisper/decoder.cpp); residual adds are fused into the following LayerNorm. The self- and
// cross-attention are the shared decoder blocks (models/common/gpu/decoder_attention.h: one K/V
// append launch per layer, decode_attention / flash_attention dispatch); this file stages a chunk's
// tokens and sequence index, embeds, runs the layers and projects the logits.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include "runtime/cuda/gemm_gpu.h"
#include "kernels/embed.cuh"
#include "kernels/kv_append.cuh"
#include "models/common/gpu/decoder_attention.h"
#include "models/whisper/gpu/gpu_ops.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry::whisper {

using gpu_detail::residual_layernorm;
using gpu_detail::row_ptr;

namespace {

// One chunk of sequences [begin, end) of a decoder call: each one's first row in the chunk's
// buffers and its description for the shared attention blocks.
struct Chunk {
  int begin = 0, end = 0;
  std::vector<int64_t> row;  // first token row of sequence begin + k in the chunk's buffers
  int64_t rows = 0;
  int uniform_n_new = 0;     // > 0 when every sequence brings this many tokens
  std::vector<models::GpuDecodeSeq> seqs;
};

Chunk make_chunk(const std::vector<GpuSeq>& seqs, int begin, int end) {
  Chunk c;
  c.begin = begin;
  c.end = end;
  c.uniform_n_new = seqs[begin].n_new;
  for (int i = begin; i < end; ++i) {
    c.row.push_back(c.rows);
    c.rows += seqs[i].n_new;
    if (seqs[i].n_new != c.uniform_n_new) c.uniform_n_new = 0;
    models::GpuDecodeSeq q;
    q.slot = seqs[i].slot;
    q.pos = seqs[i].pos;
    q.n_new = seqs[i].n_new;
    q.source = seqs[i].audio;
    c.seqs.push_back(q);
  }
  return c;
}

// The shared blocks' view of the chunk (index staged by stage_and_embed) and of layer `layer`'s
// caches: self K/V [max_slots + 1, max_tokens, d], cross K/V [max_windows, T, 2d] (k | v per row).
models::GpuDecodeAttentionShape attention_shape(WhisperGpu& g, const Chunk& ch) {
  const WhisperConfig& c = g.model->config();
  models::GpuDecodeAttentionShape sh;
  sh.heads = static_cast<int>(c.decoder_attention_heads);
  sh.head_dim = static_cast<int>(c.decoder_head_dim());
  sh.scale = 1.0f;  // folded into q at load time
  sh.seqs = ch.seqs.data();
  sh.batch = ch.end - ch.begin;
  sh.index = models::decode_index_view(g.state->dec_index, sh.batch);
  return sh;
}

models::GpuKvCache self_cache(WhisperGpu& g, size_t layer) {
  WhisperGpuState& s = *g.state;
  models::GpuKvCache kc;
  kc.k = s.self_k[layer];
  kc.v = s.self_v[layer];
  kc.ld = s.d;
  kc.slot_stride = s.max_tokens * s.d;
  kc.slots = s.plan.max_slots + 1;
  kc.max_len = static_cast<int>(s.max_tokens);
  kc.error = s.error;
  return kc;
}

models::GpuCrossKv cross_kv(WhisperGpu& g, size_t layer) {
  WhisperGpuState& s = *g.state;
  models::GpuCrossKv kv;
  kv.k = s.cross_kv[layer];
  kv.v = gpu_detail::elem_ptr(s.cross_kv[layer], s.d, s.elt);
  kv.ld = 2 * s.d;
  kv.source_stride = s.n_ctx * 2 * s.d;
  kv.len = static_cast<int>(s.n_ctx);
  return kv;
}

// Token + position embedding of the chunk's tokens into dec_h. Stages the token ids and the
// chunk's sequence index (positions, cache lengths, slots, row starts: what the embedding, the K/V
// append and decode_attention read on the device) in two copies.
void stage_and_embed(WhisperGpu& g, const std::vector<GpuSeq>& seqs, const Chunk& ch) {
  WhisperGpuState& s = *g.state;
  const WhisperGpuModel& m = *g.model;
  const int cnt = ch.end - ch.begin;
  g.stream->synchronize();  // the pinned staging may still feed the previous chunk's copies
  int32_t* ids = s.host_ints.as<int32_t>();
  int32_t* index = ids + s.dec_rows;
  for (int i = ch.begin; i < ch.end; ++i) {
    const GpuSeq& q = seqs[i];
    std::copy(q.tokens, q.tokens + q.n_new, ids + ch.row[i - ch.begin]);
  }
  models::fill_decode_index(ch.seqs.data(), cnt, index);
  CUDA_CHECK(cudaMemcpyAsync(s.ids, ids, static_cast<size_t>(ch.rows) * 4, cudaMemcpyHostToDevice, *g.stream));
  CUDA_CHECK(cudaMemcpyAsync(s.dec_index, index, static_cast<size_t>(models::decode_index_ints(cnt)) * 4,
                             cudaMemcpyHostToDevice, *g.stream));
  const int32_t* offsets = models::decode_index_view(s.dec_index, cnt).positions;

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
    a.offsets = offsets;
    a.out = s.dec_h;
    a.n_seq = cnt;
    a.n_new = ch.uniform_n_new;
    embed_tokens_positions(a, *g.stream);
    return;
  }
  for (int k = 0; k < cnt; ++k) {
    a.ids = s.ids + ch.row[k];
    a.offsets = offsets + k;
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
  const models::GpuContext ctx = gpu_detail::gpu_context(g);
  const models::GpuDecodeAttentionShape shape = attention_shape(g, ch);
  const void* pending = nullptr;
  for (size_t li = 0; li < m.dec_layers.size(); ++li) {
    const GpuDecoderLayer& l = m.dec_layers[li];
    residual_layernorm(g, s.dec_h, pending, l.self_ln, s.dec_normed, ch.rows);
    models::gpu_decode_self_attention(ctx, l.self_qkv, l.self_out, self_cache(g, li), shape, s.dec_normed, s.dec_qkv,
                                      s.dec_attn, s.dec_proj);
    residual_layernorm(g, s.dec_h, s.dec_proj, l.cross_ln, s.dec_normed, ch.rows);
    // The queries go to the qkv buffer ([rows, d] there).
    models::gpu_decode_cross_attention(ctx, l.cross_q, l.cross_out, cross_kv(g, li), shape, s.dec_normed, s.dec_qkv,
                                       s.dec_attn, s.dec_proj);
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
  FLURRY_CHECK(*err_host == 0, "whisper gpu: the embedding or K/V append kernel flagged bad input (bits "
                                   << *err_host << "; " << kEmbedBadToken << ": token, " << kEmbedBadPosition
                                   << ": position, " << kKvAppendOutOfRange << ": cache row)");
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
