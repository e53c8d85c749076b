// Encoder input embedding of an unpadded (varlen) batch, LayerNorm fused: BERT's embeddings layer.
//
//   h = word[ids[r]] + pos[r - cu_seqlens[b]] + type_row      (row r of sequence b, fp32)
//   out[r] = (h - mean(h)) / sqrt(var(h) + eps) * gamma + beta (biased variance, centred sum)
//
// Positions restart at 0 in every sequence (absolute learned positions); one token-type row is
// added to every token (segment 0: a single sentence). The tables, gamma/beta and out are of one
// dtype (F16 or BF16); the sum and the statistics are fp32 and out is rounded once. The CPU
// reference is the loop of bert_forward (models/bert/model.cpp): embedding sums, then layernorm.
//
// Rows past cu_seqlens[batch] (rows > cu_seqlens[batch]) are padding: a CUDA graph replays a fixed
// row count while cu_seqlens, in device memory, says how many rows are real. They are written as
// zeros, their ids are not read and nothing is flagged.
//
// Bad input never reads out of bounds: an id outside [0, vocab) or a position outside [0, n_pos)
// is clamped and flagged in *error with the bits of kernels/embed.cuh (kEmbedBadToken,
// kEmbedBadPosition), which the host checks after synchronising.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/embed.cuh"
#include "runtime/dtype.h"

namespace flurry {

struct EmbedLayerNormArgs {
  const int32_t* ids = nullptr;         // device [rows]
  const int32_t* cu_seqlens = nullptr;  // device [batch + 1], cu_seqlens[batch] <= rows
  const void* word = nullptr;           // [vocab, d]
  const void* pos = nullptr;            // [n_pos, d]
  const void* type_row = nullptr;       // [d]: the token-type embedding added to every row
  const void* gamma = nullptr;          // [d]
  const void* beta = nullptr;           // [d]
  void* out = nullptr;                  // [rows, d]
  int32_t* error = nullptr;             // device word, see kEmbedBad*; required
  DType type = DType::F16;
  int batch = 0;
  int64_t rows = 0, vocab = 0, n_pos = 0, d = 0;
  float eps = 1e-12f;
};

// Requirements (checked): d in [1, 3072]; F16 or BF16.
void embed_layernorm(const EmbedLayerNormArgs& args, cudaStream_t stream);

}  // namespace flurry
