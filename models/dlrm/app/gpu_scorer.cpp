#include "models/dlrm/app/gpu_scorer.h"

namespace flurry::dlrm {

GpuScorer::GpuScorer(const DlrmAssets& a, const DlrmGpuOptions& o, StageTimers* timers) {
  gpu_.set_timers(timers);
  gpu_.load(a.cfg, *a.ck, o);
}

void GpuScorer::score(const DlrmBatch& batch, float* logits) { gpu_.forward(batch, logits); }

void GpuScorer::topk(const DlrmBatch& batch, int64_t customers, int64_t candidates, const uint8_t* valid, int k,
                     float* top_logits, int32_t* top_index) {
  // The device top-k holds one customer's candidates in one pass and k <= 64; beyond that the
  // scores come back and the host ranks them (same order and ties).
  if (candidates <= gpu_.options().max_batch && k <= 64) {
    gpu_.recommend(batch, customers, candidates, valid, k, top_logits, top_index);
  } else {
    Scorer::topk(batch, customers, candidates, valid, k, top_logits, top_index);
  }
}

}  // namespace flurry::dlrm
