// The attention blocks of an autoregressive decoder on the GPU, shared by every model with one:
// causal self-attention over a growing K/V cache for many live sequences at once, and
// cross-attention over per-sequence K/V computed once (an encoder's output). Like the blocks of
// layers.h they take the small GpuContext and leave the residual and LayerNorm to the caller
// (pre-LN: the next gpu_residual_layernorm adds `out`).
//
// One call serves one chunk of sequences: sequence b brings n_new new rows (its queries; rows of
// x / out follow one another sequence by sequence), sits in cache slot `slot` with `pos` rows
// already cached, and reads cross K/V `source`. The host description (GpuDecodeSeq) picks the
// launches; a device copy of it (GpuDecodeIndex, uploaded once per chunk and read by every layer)
// is what the kernels read, so the common step does not depend on host positions:
//
//   self-attention: qkv = in_proj(x) [rows, 3d]; ONE kv_append launch writes every sequence's new
//     K and V rows into its slot at its position (kernels/kv_append.cuh); causal attention of each
//     sequence's queries over its cache rows 0 .. pos + n_new - 1; out = out_proj(attn).
//   cross-attention: q = in_proj(x) [rows, d]; attention over the source's K/V; out = out_proj.
//
// Attention dispatch (decode_attention handles up to eight queries per sequence, flash_attention
// the rest):
//  - self: when every sequence brings the same n_new <= 8 and the slots are consecutive, one
//    decode_attention launch over the caches with the device lengths; otherwise one launch per
//    sequence (decode_attention, or flash_attention for n_new > 8).
//  - cross (non-causal): with a uniform n_new <= 8, the queries of consecutive sequences reading
//    one source (beams, best-of samples) are packed as up to eight queries of ONE sequence over
//    that source's K/V, which is then read once for all of them; runs of sequences reading
//    consecutive sources use one batched launch. Otherwise one launch per sequence.
// Softmax statistics and sums are fp32 inside the kernels; activations and weights in ctx.dtype.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kv_append.cuh"
#include "models/common/gpu/layers.h"

namespace flurry::models {

// One sequence's share of a decoder call.
struct GpuDecodeSeq {
  int slot = 0;    // self-attention cache slot; distinct within a call
  int pos = 0;     // rows already in the slot's cache; the new rows land at pos .. pos + n_new - 1
  int n_new = 0;   // new rows (queries), >= 1
  int source = 0;  // cross-attention K/V index (Whisper: the audio window it transcribes)
};

// The device copy of a call's sequences: int32 arrays in one buffer of decode_index_ints(batch)
// elements, laid out [positions | kv_lens | slots | row_starts], filled on the host by
// fill_decode_index and copied to the device by the caller in one transfer.
struct GpuDecodeIndex {
  const int32_t* positions = nullptr;   // [batch] pos (also a position embedding's offsets)
  const int32_t* kv_lens = nullptr;     // [batch] pos + n_new
  const int32_t* slots = nullptr;       // [batch] slot
  const int32_t* row_starts = nullptr;  // [batch + 1] first row of each sequence; the last = rows
};
int64_t decode_index_ints(int batch);
void fill_decode_index(const GpuDecodeSeq* seqs, int batch, int32_t* host);
// Views of the four arrays in a device (or host) buffer laid out by fill_decode_index.
GpuDecodeIndex decode_index_view(const int32_t* base, int batch);

// The sequences of one call and the attention's heads.
struct GpuDecodeAttentionShape {
  int heads = 0, head_dim = 0;
  float scale = 1.0f;  // 1 when head_dim^-0.5 is folded into q at load time (every model here)
  const GpuDecodeSeq* seqs = nullptr;  // host [batch]
  int batch = 0;
  GpuDecodeIndex index;  // device copy of seqs[0 .. batch)
};

// A self-attention cache, K and V apart: slot s holds max_len rows of stride ld starting at
// k + s * slot_stride (elements; likewise v).
struct GpuKvCache {
  void* k = nullptr;
  void* v = nullptr;
  int64_t ld = 0, slot_stride = 0;
  int slots = 0, max_len = 0;
  int32_t* error = nullptr;  // optional device word: kKvAppendOutOfRange for rows outside the cache
};

// Cross-attention keys and values: source i has len rows of stride ld from k + i * source_stride
// (elements; likewise v). Whisper's fused [T, 2d] buffer per window is k = kv, v = kv + d, ld = 2d.
struct GpuCrossKv {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t ld = 0, source_stride = 0;
  int len = 0;
};

// Rows of x / out in a call: the sum of n_new.
int64_t decode_rows(const GpuDecodeAttentionShape& shape);

// out[rows, d] = out_proj(causal attention over each slot's cache after appending this call's
// keys and values); qkv_buf [rows, 3d], attn_buf [rows, d]. ctx.attn_ws must hold
// gpu_decode_attention_workspace_bytes for the batch and cache length.
void gpu_decode_self_attention(const GpuContext& ctx, const GpuLinear& qkv, const GpuLinear& out_proj,
                               const GpuKvCache& cache, const GpuDecodeAttentionShape& shape, const void* x,
                               void* qkv_buf, void* attn_buf, void* out);

// out[rows, d] = out_proj(attention of q_proj(x) over each sequence's source K/V); q_buf and
// attn_buf [rows, d].
void gpu_decode_cross_attention(const GpuContext& ctx, const GpuLinear& q_proj, const GpuLinear& out_proj,
                                const GpuCrossKv& kv, const GpuDecodeAttentionShape& shape, const void* x,
                                void* q_buf, void* attn_buf, void* out);

// The largest decode_attention split-K workspace the two blocks ask for over every call with up to
// max_batch sequences and up to eight queries each, over key sets of up to max_kv_len rows.
size_t gpu_decode_attention_workspace_bytes(int heads, int head_dim, int max_batch, int max_kv_len);

}  // namespace flurry::models
