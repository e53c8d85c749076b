// Batched top-k over the rows of an fp32 score matrix, on the device: for each row the k largest
// valid scores and their column indices, sorted descending, ties broken by the lower index (a
// stable sort's order). What a recommender needs to return per-customer candidates without copying
// the whole [customers, candidates] score block back to the host.
//
// A column is valid when its mask byte is non-zero (no mask: every column) and its score is not
// -inf or NaN (so -inf marks an excluded candidate too). -0 and +0 compare equal. A row with fewer
// than k valid columns fills the rest with index -1 and score -inf.
//
// One block per row: a radix select on the order-preserving 32-bit key of the scores (four 8-bit
// passes with a shared-memory histogram) finds the k-th largest key, one more pass gathers the
// keys above it and the lowest-index columns equal to it, and the k winners are ranked in shared
// memory. Rows of up to kTopKCachedCols columns are read from global memory once and kept in
// shared memory for the passes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flurry {

constexpr int kTopKMax = 64;
constexpr int64_t kTopKCachedCols = 8192;

struct TopKArgs {
  const float* scores = nullptr;  // device [rows, ld_scores]
  int64_t ld_scores = 0;
  const uint8_t* mask = nullptr;  // device [rows, ld_mask] or null
  int64_t ld_mask = 0;
  int64_t rows = 0, cols = 0;
  int k = 0;                      // 1..kTopKMax
  float* out_scores = nullptr;    // device [rows, k]
  int32_t* out_index = nullptr;   // device [rows, k]
};
void topk_rows(const TopKArgs& args, cudaStream_t stream);

}  // namespace flurry
