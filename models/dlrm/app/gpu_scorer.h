// The GPU scorers of flurry-dlrm: DlrmGpu behind the jobs' Scorer interface; recommend's top-k stays
// on the device (only k logits and indices per customer come back). ShardedGpuScorer is the
// --shard-tables variant (the lockstep with the runner as sharded_scorer.h explains).
#pragma once

#include <memory>

#include "models/dlrm/app/dlrm_job.h"
#include "models/dlrm/app/shard_exchange.h"
#include "models/dlrm/gpu/model_gpu.h"
#include "runtime/arena.h"
#include "runtime/dist/comm.h"
#include "runtime/dist/context.h"

namespace flurry::dlrm {

class GpuScorer : public Scorer {
 public:
  GpuScorer(const DlrmAssets& a, const DlrmGpuOptions& o, StageTimers* timers);
  void score(const DlrmBatch& batch, float* logits) override;
  void score_async(const DlrmBatch& batch, float* logits) override;  // DlrmGpu::forward_async
  void wait() override;
  void topk(const DlrmBatch& batch, int64_t customers, int64_t candidates, const uint8_t* valid, int k,
            float* top_logits, int32_t* top_index) override;
  const char* device() const override { return "cuda"; }

 private:
  DlrmGpu gpu_;
};

// Table-sharded on the GPU: each rank uploads only its tables (DlrmGpuOptions::tables) and runs
// ShardExchange with the indices over the host communicator (MPI: they come from the host encoder
// and are staged by the owner anyway) and the pooled vectors device to device over `data`: NCCL
// (grouped ncclSend/ncclRecv) when every rank has its own GPU, else MPI staged through the host.
// Owners pool with DlrmGpu::pool_bag, the received rows land in a device [n, bags' width] buffer
// and DlrmGpu::forward_pooled runs the MLPs and the interaction. Everything is ordered on the
// model's one stream. Top-k is ranked on the host (Scorer::topk) in this mode.
class ShardedGpuScorer : public Scorer {
 public:
  ShardedGpuScorer(const DlrmAssets& a, DlrmGpuOptions o, dist::DistContext& ctx, StageTimers* timers);
  void score(const DlrmBatch& batch, float* logits) override;
  void finish() override;
  const char* device() const override { return "cuda"; }
  Json manifest() const override;

 private:
  // A device buffer that grows (a new arena) when a step needs more than it has; sized at start
  // for --batch-size samples from every rank, so growing is the exception.
  struct DeviceScratch {
    std::unique_ptr<Arena> arena;
    void* ptr = nullptr;
    size_t bytes = 0;
    void* get(size_t need);
  };

  DlrmConfig cfg_;
  TablePlan plan_;
  std::unique_ptr<dist::Communicator> control_, data_;
  DlrmGpu gpu_;
  std::unique_ptr<ShardExchange> exchange_;
  DeviceScratch pool_out_, pool_in_, pooled_;
  bool finished_ = false;
};

}  // namespace flurry::dlrm
