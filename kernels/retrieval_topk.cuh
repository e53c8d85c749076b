// One step of an exact top-k search on the device: folds a tile of query x corpus scores into
// every query's running top-k. The search (models/bert/gpu/search_gpu.h) scores the corpus tile by
// tile with a GEMM and calls this after each tile, so the [queries, corpus] score matrix never
// exists whole.
//
// Order: higher score first, equal scores (-0 == +0) by the lower global row; NaN scores and
// columns whose valid byte is 0 are never candidates. The result equals merge_tile_cpu
// (models/bert/search.h) bit for bit. Precondition: every row in the running lists is below
// `base` (tiles come in increasing row order), which makes "lower row" the same as "earlier
// candidate" and lets the tie-break live in a 64-bit key.
//
// One block per query: the running list and the tile entries that beat the running k-th go into
// shared memory as 64-bit keys (order-preserving score bits << 32 | inverted candidate index), a
// bitonic sort ranks them, the first k are the new list. After the first tiles few entries beat
// the k-th, so the sort is over about k keys; the tile is read once, coalesced.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flurry {

constexpr int kRetrievalTopKMax = 1024;
constexpr int64_t kRetrievalTileMaxCols = 2048;

struct RetrievalTopkArgs {
  const float* scores = nullptr;  // device [rows, ld_scores], column j is global row base + j
  int64_t ld_scores = 0;
  const uint8_t* valid = nullptr;  // device [cols] (shared by every query) or null: all valid
  int64_t rows = 0, cols = 0;      // queries; tile columns, 0..kRetrievalTileMaxCols
  int64_t base = 0;
  int k = 0;                            // 1..kRetrievalTopKMax
  const float* in_scores = nullptr;     // device [rows, k], sorted, empty slots: row -1, score -inf
  const int64_t* in_rows = nullptr;     // device [rows, k]
  float* out_scores = nullptr;          // device [rows, k]; must not alias the inputs
  int64_t* out_rows = nullptr;          // device [rows, k]
};
void retrieval_topk_merge(const RetrievalTopkArgs& args, cudaStream_t stream);

// Sets every list of [rows, k] empty (row -1, score -inf).
void retrieval_topk_clear(float* scores, int64_t* rows_out, int64_t rows, int k, cudaStream_t stream);

}  // namespace flurry
