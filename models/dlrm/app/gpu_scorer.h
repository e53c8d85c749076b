// The GPU scorer of flurry-dlrm: DlrmGpu behind the jobs' Scorer interface; recommend's top-k stays
// on the device (only k logits and indices per customer come back).
#pragma once

#include "models/dlrm/app/dlrm_job.h"
#include "models/dlrm/gpu/model_gpu.h"

namespace flurry::dlrm {

class GpuScorer : public Scorer {
 public:
  GpuScorer(const DlrmAssets& a, const DlrmGpuOptions& o, StageTimers* timers);
  void score(const DlrmBatch& batch, float* logits) override;
  void topk(const DlrmBatch& batch, int64_t customers, int64_t candidates, const uint8_t* valid, int k,
            float* top_logits, int32_t* top_index) override;
  const char* device() const override { return "cuda"; }

 private:
  DlrmGpu gpu_;
};

}  // namespace flurry::dlrm
