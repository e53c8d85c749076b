// Flash attention forward (encoder self-attention, decoder prefill, BERT): softmax(scale Q K^T) V
// for a batch of sequences without forming the T x T score matrix in memory. Online softmax
// (Milakov & Gimelshein 2018; Dao et al., FlashAttention-2, 2023) with fp32 running max, sum and
// output accumulators; Q K^T and P V on the tensor cores (mma.sync m16n8k16, fp16 or bf16 operands,
// fp32 accumulation). P is rounded to the input dtype before P V, as every flash kernel does.
//
// Layout: token-major rows with a row stride, head h at column h * head_dim, exactly as
// attention_cpu (runtime/ref/ops.h) reads them, so the fused QKV output [tokens, 3 d] of one
// GEMM is read in place: q = qkv, k = qkv + d, v = qkv + 2 d, all with ld = 3 d.
//
// Batches. Sequence b's query rows are [cu_seqlens_q[b], cu_seqlens_q[b+1]) and its key/value rows
// [cu_seqlens_k[b], cu_seqlens_k[b+1]) (unpadded "varlen", as BERT batches of mixed lengths are
// stored). Without cu_seqlens_q a padded batch is assumed: sequence b's queries are rows
// [b q_len, b q_len + q_len); likewise keys without cu_seqlens_k, with kv_len. key_valid, when set,
// holds one flag per key row (indexed by the same absolute row as k), 0 = padding: the key-padding
// mask of a padded batch.
//
// Masks follow attention_cpu: causal puts query i of a sequence at absolute position
// kv_len_b - q_len_b + i and lets it see keys j <= that position. A query that sees no key
// (all padding, an empty sequence, or causal with kv_len_b < q_len_b for its first rows) gets a zero
// output row.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/dtype.h"

namespace flurry {

struct FlashAttentionArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  int64_t q_ld = 0, k_ld = 0, v_ld = 0, out_ld = 0;  // row strides in elements
  DType type = DType::F16;                            // F16 or BF16, for q, k, v and out
  int heads = 0;
  int head_dim = 64;  // 64 (Whisper, bert-base, bge-small/base, e5, gte) or 32 (MiniLM-L6/L12)
  int batch = 0;
  const int32_t* cu_seqlens_q = nullptr;  // device [batch + 1] or null (padded, q_len each)
  const int32_t* cu_seqlens_k = nullptr;  // device [batch + 1] or null (padded, kv_len each)
  // Padded batch: the common lengths. Varlen: q_len must bound every sequence's query count (it
  // sizes the grid); kv_len is unused.
  int q_len = 0, kv_len = 0;
  const uint8_t* key_valid = nullptr;  // device, one flag per key row, or null
  float scale = 0.125f;                // 1 / sqrt(head_dim)
  bool causal = false;
};

// Requirements (checked): head_dim 32 or 64; q, k, v, out 16-byte aligned and every ld a multiple of 8
// elements (16-byte rows for the asynchronous copies); ld >= heads * head_dim.
void flash_attention(const FlashAttentionArgs& args, cudaStream_t stream);

}  // namespace flurry
