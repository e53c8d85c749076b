// `flurry-embed search` and the retrieval step of `eval` over every rank of the job: each rank
// searches its contiguous shard of the corpus embeddings.npy (read tile by tile, never whole, on
// the CPU or the GPU), rank 0 gathers every rank's [queries, k] (score, global row) lists over MPI
// and merges them (models/bert/search.h). The output is the same bytes for any number of ranks.
#pragma once

#include <string>

#include "runtime/dist/context.h"

namespace flurry::bert {

struct ShardedSearchOptions {
  int k = 10;
  bool cuda = false;  // score on this rank's GPU (the current device); else the CPU reference
};

// Collective: every rank calls it after the embed runs that wrote `corpus_dir` and `query_dir`
// (it starts with a barrier, so rank 0's merged outputs are complete). Searches the ok rows of
// QUERY_DIR against the ok rows of CORPUS_DIR; rank 0 writes `out_path`, one line per ok query:
//   {"query_id": ..., "results": [{"id": ..., "row": <corpus row>, "score": ...}, ...]}
// best first, ties to the lower row.
void sharded_search(const dist::DistContext& ctx, const std::string& corpus_dir, const std::string& query_dir,
                    const ShardedSearchOptions& o, const std::string& out_path);

}  // namespace flurry::bert
