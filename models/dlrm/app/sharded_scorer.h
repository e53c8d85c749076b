// flurry-dlrm --shard-tables: the Scorer of a table-sharded model. Each rank binds only the tables
// the plan (sharding.h, greedy by bytes) gives it; every batch goes through one ShardExchange step
// (indices to the owners, pooled vectors back) and then the bottom MLP, interaction and top MLP run
// on this rank's batch with the received vectors, bit-identical to dlrm_forward on the full model.
//
// Lockstep with the runner's dynamic work queue. A sharded step is a collective: every rank must
// join it, while the runner hands chunks out one request at a time. Why this cannot deadlock:
//   - Steps are self-describing (shard_exchange.h): a rank joins a step whenever it scores a batch,
//     however many batches its chunk holds, and a rank with no work left joins empty steps
//     (finish() -> ShardExchange::drain, called by the runner's after_last_item hook) until a step
//     in which every rank says done. Matching step counts is therefore never needed, and no rank
//     leaves while another may still send it indices to pool.
//   - Rank 0 serves work requests on its coordinator thread (runtime/dist/session.cpp), not on the
//     thread that scores, so rank 0 sitting in a step does not stop rank 1 from getting its next
//     chunk and joining that step. Rank 1's heartbeat thread likewise keeps reporting while rank 1
//     waits in a step, so it is not taken for dead.
//   - Both threads call MPI at once, which needs MPI_THREAD_MULTIPLE (the runner asks for it); with
//     less, a multi-rank sharded run is refused at start-up.
// A static assignment of chunks would have served too, but gives up the load balancing of the
// queue for nothing: the collective cost is the same either way.
#pragma once

#include <memory>
#include <vector>

#include "models/dlrm/app/dlrm_job.h"
#include "models/dlrm/app/shard_exchange.h"
#include "models/dlrm/sharding.h"
#include "runtime/dist/comm.h"
#include "runtime/dist/context.h"

namespace flurry::dlrm {

// The host communicator of the exchange: MPI across ranks (refused without MPI_THREAD_MULTIPLE,
// or in a build without MPI), self for one rank.
std::unique_ptr<dist::Communicator> shard_control_communicator(dist::DistContext& ctx);

class ShardedCpuScorer : public Scorer {
 public:
  ShardedCpuScorer(const DlrmAssets& a, dist::DistContext& ctx);
  // For tests: a given communicator (which the scorer does not own) instead of the context's.
  ShardedCpuScorer(const DlrmAssets& a, dist::Communicator& comm);
  void score(const DlrmBatch& batch, float* logits) override;
  void finish() override;
  const char* device() const override { return "cpu"; }
  Json manifest() const override;
  const TablePlan& plan() const { return plan_; }
  const DlrmModel& model() const { return model_; }

 private:
  void init(const DlrmAssets& a, dist::Communicator& comm);

  std::unique_ptr<dist::Communicator> own_comm_;
  TablePlan plan_;
  DlrmModel model_;
  std::unique_ptr<ShardExchange> exchange_;
  DlrmScratch scratch_;
  std::vector<float> pooled_;
  bool finished_ = false;
};

}  // namespace flurry::dlrm
