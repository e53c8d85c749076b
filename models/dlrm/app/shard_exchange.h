// The collective step of a table-sharded DLRM (sharding.h): every rank sends the indices of each
// bag of its batch to the bag's table owner, the owners pool them, and the pooled vectors come back,
// after which each rank runs the bottom MLP, the interaction and the top MLP on its own batch.
//
// One step, on every rank of the communicators:
//   1. all-to-all of [samples, indices for you, done] (3 int64 per rank pair) on `control`;
//   2. all-to-allv of the bags' lengths then indices (int32) on `control`: to owner o, for each bag
//      o owns (bag order), the n lengths of its samples, then those bags' indices in the same order;
//   3. the owner pools each of its bags for each source's samples (pool(), e.g. embedding_bag_ref:
//      same indices, same order as the unsharded forward, so the same bits), into one
//      [samples, own width] row block per source;
//   4. all-to-allv of the pooled rows on `data` (host buffers with MPI; device buffers with NCCL on
//      the GPU path, where `control` stays MPI on the host: the indices come from the host encoder);
//   5. the rows are scattered into the caller's pooled [n, ld] buffer, each bag at its column of
//      [bag_0 | bag_1 | ...] (copy2d: memcpy on the host, cudaMemcpy2DAsync on a device).
//
// Steps are self-describing (step 1 says how much follows), so ranks need not agree on how many
// steps each batch takes: a rank calls step() whenever it has a batch, and a rank with no work left
// calls drain(), which keeps joining steps with nothing to send (but its tables to pool for the
// others) until a step in which every rank says done. That is the lockstep the runner's dynamic
// work queue needs (sharded_scorer.h explains why it cannot deadlock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "models/dlrm/config.h"
#include "models/dlrm/features.h"
#include "models/dlrm/sharding.h"
#include "runtime/dist/comm.h"

namespace flurry::dlrm {

// What the pooled vectors live in: the host (fp32, defaults) or a device (the model dtype).
struct ShardDataMemory {
  Where where = Where::Host;
  DType type = DType::F32;
  void* stream = nullptr;  // cudaStream_t for the device collectives and copies
  // A buffer of at least `bytes` for slot 0 (rows pooled here) or 1 (rows received); null: host.
  std::function<void*(int slot, size_t bytes)> buffer;
  // dst/src pitches and width in bytes; null: a host loop of memcpy.
  std::function<void(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows)> copy2d;
};

class ShardExchange {
 public:
  // Pools bag `bag` of n samples: offsets [n + 1] (from 0) into indices (host), out [n, ld_out]
  // elements of the data type, in the data memory.
  using PoolFn = std::function<void(int64_t bag, const int32_t* offsets, const int32_t* indices, int64_t n, void* out,
                                    int64_t ld_out)>;
  ShardExchange(const DlrmConfig& cfg, const TablePlan& plan, dist::Communicator& control, dist::Communicator& data,
                PoolFn pool, ShardDataMemory mem = ShardDataMemory());

  // Values per sample of the pooled buffer: every bag's dim, in bag order (concat_width - bottom).
  int64_t pooled_width() const { return pooled_width_; }
  // One collective step with this rank's batch (null or n == 0: nothing this step; done: and none
  // to come). Fills pooled [batch->n, ld_pooled] (data memory). Returns true when every rank said
  // done, in which case nothing else was exchanged and every rank returns true from the same step.
  bool step(const DlrmBatch* batch, bool done, void* pooled, int64_t ld_pooled);
  // Joins steps with nothing until every rank is done. Call once, when this rank has no work left.
  void drain();
  int64_t steps() const { return steps_; }

 private:
  void* data_buffer(int slot, size_t bytes);

  const DlrmConfig& cfg_;
  TablePlan plan_;
  dist::Communicator& control_;
  dist::Communicator& data_;
  PoolFn pool_;
  ShardDataMemory mem_;
  int rank_ = 0, ranks_ = 1;
  int64_t pooled_width_ = 0;
  std::vector<int64_t> bag_col_;                // column of each bag in the pooled row
  std::vector<std::vector<int64_t>> owned_;     // per rank: its bags, in order
  std::vector<int64_t> owned_width_;            // per rank: the dims of its bags summed
  std::vector<std::vector<int64_t>> owned_col_;  // per rank: each of its bags' column in its block
  int64_t steps_ = 0;
  // Host scratch, kept across steps.
  std::vector<int64_t> send_meta_, recv_meta_;
  std::vector<int32_t> send_idx_, recv_idx_, offsets_;
  std::vector<char> host_buf_[2];
};

}  // namespace flurry::dlrm
