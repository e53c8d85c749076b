// Pooling of an unpadded (varlen) batch of token rows into one fp32 vector per sequence, with an
// optional L2 normalisation fused: the sentence-embedding head (sentence-transformers' Pooling and
// Normalize modules) in one pass over the encoder output.
//
//   mean           out[b] = sum_t x[t] / n_b
//   first          out[b] = x[cu[b]]                  (the [CLS] token)
//   max            out[b] = max_t x[t]                (per column)
//   mean_sqrt_len  out[b] = sum_t x[t] / sqrt(n_b)
//   then, when l2_normalize, out[b] /= max(||out[b]||, 1e-12)   (torch.nn.functional.normalize)
//
// over the rows t of sequence b, [cu_seqlens[b], cu_seqlens[b+1]). Sums are fp32. A sequence with
// no rows gets a zero vector (the CPU reference, bert::pool, refuses one; callers never pass it).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/dtype.h"

namespace flurry {

enum class SegmentPool { kMean, kFirst, kMax, kMeanSqrtLen };

struct SegmentPoolArgs {
  const void* x = nullptr;              // [rows, d], `type`
  const int32_t* cu_seqlens = nullptr;  // device [batch + 1]
  float* out = nullptr;                 // [batch, d] fp32
  DType type = DType::F16;              // F16, BF16 or F32
  int batch = 0;
  int64_t d = 0;
  SegmentPool mode = SegmentPool::kMean;
  bool l2_normalize = false;
};

// Requirements (checked): d in [1, 1536].
void segment_pool(const SegmentPoolArgs& args, cudaStream_t stream);

}  // namespace flurry
