// Decoder input embedding: token embedding gather plus learned positions, for a KV-cached decoder.
//
//   out[s * n_new + j, :] = tok[ids[s * n_new + j], :] + pos[offsets[s] + j, :]
//
// for n_seq sequences that each bring n_new new tokens (n_new = 1 on every step after the first;
// the SOT sequence on the first), sequence s's new tokens sitting at positions offsets[s] ... (its
// current KV-cache length). fp16 or bf16 tables, the sum formed in fp32 and rounded once. The CPU
// reference is embedding_cpu + add_cpu (runtime/ref/ops.h).
//
// Bad input never reads out of bounds: an id outside [0, vocab) or a position outside [0, n_pos)
// is clamped into range (the row is garbage but finite) and flagged in *error, which the host
// checks after synchronising (the CPU reference throws instead).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/dtype.h"

namespace flurry {

// Bits OR-ed into EmbedArgs::error. The kernel only sets bits: clear the word (cudaMemsetAsync)
// before the launches whose errors you want to collect, e.g. once per decoding loop.
constexpr int32_t kEmbedBadToken = 1;
constexpr int32_t kEmbedBadPosition = 2;

struct EmbedArgs {
  const int32_t* ids = nullptr;      // device [n_seq * n_new]
  const int32_t* offsets = nullptr;  // device [n_seq]: position of each sequence's first new token
  const void* tok = nullptr;         // [vocab, d] embed_tokens
  const void* pos = nullptr;         // [n_pos, d] embed_positions
  void* out = nullptr;               // [n_seq * n_new, d]
  int32_t* error = nullptr;          // device word, see kEmbedBad*; required
  DType type = DType::F16;           // tok, pos and out: F16 or BF16
  int64_t n_seq = 0, n_new = 0, vocab = 0, n_pos = 0, d = 0;
};

void embed_tokens_positions(const EmbedArgs& a, cudaStream_t stream);

}  // namespace flurry
