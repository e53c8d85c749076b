// The GPU TileSearcher of the sharded exact search (models/bert/search.h): the queries live on
// the device; each corpus tile is uploaded, scored against a chunk of queries with one fp32
// cuBLASLt GEMM (true fp32, no TF32: the scores stay within rounding of the CPU reference's) into
// a [chunk, kSearchTile] score tile, and kernels/retrieval_topk.cuh folds the tile into the
// running top-k of every query of the chunk. Only the [nq, k] lists come back to the host.
//
// Buffers are allocated once at construction: queries [nq, d], tile [kSearchTile, d], valid
// [kSearchTile], scores [min(nq, kQueryChunk), kSearchTile], two [nq, k] lists (ping-pong) and the
// cuBLASLt workspace. The GEMM shapes depend on nq and d only, never on the shard, so every rank
// computes a (query, row) score with the same kernel at the same place (see search.h).
#pragma once

#include <cstdint>
#include <memory>

#include "models/bert/search.h"

namespace flurry::bert {

class GpuTileSearcher : public TileSearcher {
 public:
  static constexpr int64_t kQueryChunk = 4096;  // queries per GEMM: 32 MiB of fp32 scores

  // queries: host [nq, d] fp32; uses the current CUDA device.
  GpuTileSearcher(const float* queries, int64_t nq, int64_t d, int k);
  ~GpuTileSearcher() override;
  GpuTileSearcher(const GpuTileSearcher&) = delete;
  GpuTileSearcher& operator=(const GpuTileSearcher&) = delete;

  void add_tile(int64_t base, const float* tile, const uint8_t* valid) override;
  TopkLists result() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flurry::bert
