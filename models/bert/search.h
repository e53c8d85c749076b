// Exact top-k search by inner product (cosine for normalised vectors) over a corpus that may be
// larger than one process holds: the corpus rows are cut into contiguous shards, one per rank;
// each rank reads only its shard of embeddings.npy, tile by tile, scores every tile against all
// queries (one GEMM) and folds the tile into a running top-k per query; rank 0 merges the ranks'
// lists. The order is total, (higher score, then lower global row), so the merged lists are the
// exact top-k of the whole corpus.
//
// Identical results for any number of ranks. Tiles are aligned to multiples of kSearchTile in
// *global* row numbers, with the rows a shard does not own zeroed and masked, so every
// (query, corpus row) score comes out of a GEMM of the same shape with the row at the same place
// whatever the sharding; the GEMM shapes never depend on the rank count, and neither do the bits
// of a score.
//
// The CPU path (CpuTileSearcher) is the reference; the GPU one (models/bert/gpu/search_gpu.h)
// implements the same TileSearcher with cuBLASLt and kernels/retrieval_topk.cuh.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace flurry::bert {

// Corpus rows per tile: the GEMM is [queries, kSearchTile] and the GPU merge keeps a tile plus the
// running list of a query in shared memory.
constexpr int64_t kSearchTile = 2048;

// Top-k lists of nq queries, best first: scores[q * k + i], rows[q * k + i] (global corpus rows).
// Slots past the end of a shorter list hold row -1 and score -inf.
struct TopkLists {
  int64_t nq = 0;
  int k = 0;
  std::vector<float> scores;
  std::vector<int64_t> rows;
  TopkLists() = default;
  TopkLists(int64_t n_queries, int k_best);
};

// The search order: a before b when its score is higher, or equal (-0 == +0) and its row lower.
// NaN scores are never candidates.
inline bool topk_before(float sa, int64_t ra, float sb, int64_t rb) {
  return sa > sb || (sa == sb && ra < rb);
}

// Rank `rank`'s rows [first, second) of `n` rows split into `size` contiguous, balanced shards.
std::pair<int64_t, int64_t> shard_rows(int64_t n, int rank, int size);

// CPU reference of one merge step, what the GPU kernel computes: folds a score tile
// scores[q * ld + j] (column j is global row base + j, searchable when valid[j] != 0 or valid is
// null) into every query's running list. Every row already in `running` must be below `base`.
void merge_tile_cpu(const float* scores, int64_t ld, int64_t cols, int64_t base, const uint8_t* valid,
                    TopkLists* running);

// Merges lists of the same queries over disjoint rows (one per rank) into the top-k of their union.
TopkLists merge_topk(const std::vector<TopkLists>& parts, int k);

// Consumes the tiles of one shard, in increasing `base` order.
class TileSearcher {
 public:
  virtual ~TileSearcher() = default;
  // tile: [kSearchTile, d] fp32, global rows base .. base + kSearchTile - 1 (base a multiple of
  // kSearchTile); valid[j] == 0 for a row that is outside the shard, past the end of the corpus or
  // not searchable (its vector is zeros then).
  virtual void add_tile(int64_t base, const float* tile, const uint8_t* valid) = 0;
  // The top-k over every tile added so far.
  virtual TopkLists result() = 0;
};

// The CPU reference: gemm_cpu (OpenBLAS when built with it) into a [nq, kSearchTile] score tile,
// then merge_tile_cpu. Keeps its own copy of the queries [nq, d].
class CpuTileSearcher : public TileSearcher {
 public:
  CpuTileSearcher(const float* queries, int64_t nq, int64_t d, int k);
  void add_tile(int64_t base, const float* tile, const uint8_t* valid) override;
  TopkLists result() override { return best_; }

 private:
  std::vector<float> queries_, scores_;
  int64_t nq_, d_;
  TopkLists best_;
};

// The corpus side of a sharded search: rows [begin, end) of a [rows, d] matrix, read one aligned
// tile at a time. `searchable[r - begin]` says whether row r takes part (error rows do not).
struct CorpusShard {
  int64_t begin = 0, end = 0, rows = 0, dim = 0;
  std::vector<uint8_t> searchable;
  // Fills tile [kSearchTile, dim] with global rows [first, last) at their places (the caller zeroes
  // the rest).
  virtual void read_rows(int64_t first, int64_t last, float* tile) const = 0;
  virtual ~CorpusShard() = default;
};

// Feeds a shard to `s` tile by tile; memory is one tile, whatever the shard's size.
void search_shard(const CorpusShard& shard, TileSearcher& s);

// A shard of a matrix in memory: data[r * dim] is global row r (only [begin, end) is read).
struct MemoryCorpusShard : CorpusShard {
  const float* data = nullptr;
  void read_rows(int64_t first, int64_t last, float* tile) const override;
};

// A shard of an embeddings.npy (float32 or float16) read with read_npy_rows.
struct NpyCorpusShard : CorpusShard {
  std::string path;
  int64_t data_offset = 0;
  bool fp16 = false;
  void read_rows(int64_t first, int64_t last, float* tile) const override;
};
// The shard rows [begin, end) of `path`; `searchable` as in CorpusShard (size end - begin).
NpyCorpusShard open_npy_shard(const std::string& path, int64_t begin, int64_t end, std::vector<uint8_t> searchable);

}  // namespace flurry::bert
