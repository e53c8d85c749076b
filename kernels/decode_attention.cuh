// Decoder attention for a few new queries per sequence over a long key/value set: the self-attention
// KV cache [batch, max_len, d] at its current lengths, or the cross-attention K/V of the encoder
// output [batch, 1500, d]. Memory-bound (each cached K and V element is read once and used by one
// to eight queries), so the keys are split ("flash-decoding", Dao et al. 2023): grid = splits x
// heads x batch, each block reduces its slice of keys to a partial (max, sum, accumulator) in fp32,
// and a second kernel merges the slices. A step then fills the GPU even at batch 1.
//
// Semantics are attention_cpu's (runtime/ref/ops.h) for each sequence b: the q_len query rows
// [b q_len, (b+1) q_len) of q/out (row strides q_ld/out_ld, head h at column h * head_dim) attend
// to key rows 0 .. kv_len_b - 1 of k + b k_batch_stride (row stride k_ld), likewise for v. causal:
// query i sees keys j <= kv_len_b - q_len + i (the new rows are the last q_len cache positions).
// A query that sees no key (kv_len_b = 0) gets zeros. Softmax statistics and sums in fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "runtime/dtype.h"

namespace flurry {

struct DecodeAttentionArgs {
  const void* q = nullptr;
  void* out = nullptr;
  int64_t q_ld = 0, out_ld = 0;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t k_ld = 0, v_ld = 0;                       // row strides of one sequence's keys / values
  int64_t k_batch_stride = 0, v_batch_stride = 0;   // elements from sequence b to b + 1
  DType type = DType::F16;                          // F16 or BF16 for q, k, v and out
  int batch = 0, heads = 0;
  int head_dim = 64;  // only 64 is built
  int q_len = 1;      // new queries per sequence, 1..8
  // Per-sequence key counts on the device ([batch], e.g. advanced by the decoder each step so a
  // captured graph stays valid), or null: kv_len for every sequence. kv_len bounds every length
  // (it sizes the split); longer device lengths are clamped to it.
  const int32_t* kv_lens = nullptr;
  int kv_len = 0;
  float scale = 0.125f;
  bool causal = false;
  int num_splits = 0;  // 0: chosen from the GPU's SM count; > 0 forces a count (tests, tuning)
  void* workspace = nullptr;  // fp32 partials, decode_attention_workspace_bytes(args) bytes
  size_t workspace_bytes = 0;
};

// The number of key splits decode_attention will use for these arguments on the current device.
int decode_attention_splits(const DecodeAttentionArgs& args);
// Workspace the call needs (0 when it runs as a single split).
size_t decode_attention_workspace_bytes(const DecodeAttentionArgs& args);

// Requirements (checked): head_dim 64; 16-byte aligned pointers; k_ld, v_ld and batch strides
// multiples of 8 elements.
void decode_attention(const DecodeAttentionArgs& args, cudaStream_t stream);

}  // namespace flurry
