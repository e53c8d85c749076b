#include "models/dlrm/app/gpu_scorer.h"

#include <cuda_runtime.h>

#include "models/dlrm/app/sharded_scorer.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/log.h"

namespace flurry::dlrm {

GpuScorer::GpuScorer(const DlrmAssets& a, const DlrmGpuOptions& o, StageTimers* timers) {
  gpu_.set_timers(timers);
  gpu_.load(a.cfg, *a.ck, o);
}

void GpuScorer::score(const DlrmBatch& batch, float* logits) { gpu_.forward(batch, logits); }

void GpuScorer::score_async(const DlrmBatch& batch, float* logits) { gpu_.forward_async(batch, logits); }

void GpuScorer::wait() { gpu_.wait(); }

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

void* ShardedGpuScorer::DeviceScratch::get(size_t need) {
  need = std::max<size_t>(need, 1);
  if (need > bytes) {
    arena.reset();  // the old buffer first: both might not fit
    bytes = need + need / 2;
    arena = std::make_unique<Arena>(bytes + Arena::kDefaultAlign, Where::Device, "dlrm shard exchange");
    ptr = arena->alloc(bytes, "dlrm shard exchange buffer");
  }
  return ptr;
}

ShardedGpuScorer::ShardedGpuScorer(const DlrmAssets& a, DlrmGpuOptions o, dist::DistContext& ctx, StageTimers* timers)
    : cfg_(a.cfg) {
  control_ = shard_control_communicator(ctx);
  data_ = dist::make_communicator(ctx, dist::CommKind::Auto);
  const int64_t es = static_cast<int64_t>(dtype_size(o.dtype));
  plan_ = plan_tables(cfg_, ctx.size(), es);
  if (ctx.is_root()) LOG_INFO("shard plan: " << plan_.describe(cfg_));
  o.tables = plan_.owned_by(ctx.rank());
  gpu_.set_timers(timers);
  gpu_.load(cfg_, *a.ck, o);
  const DType dt = o.dtype;
  cudaStream_t stream = static_cast<cudaStream_t>(gpu_.stream());
  ShardDataMemory mem;
  mem.where = Where::Device;
  mem.type = dt;
  mem.stream = stream;
  mem.buffer = [this](int slot, size_t bytes) { return (slot == 0 ? pool_out_ : pool_in_).get(bytes); };
  mem.copy2d = [stream](void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows) {
    CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice, stream));
  };
  auto pool = [this](int64_t bag, const int32_t* offsets, const int32_t* indices, int64_t n, void* out, int64_t ld_out) {
    gpu_.pool_bag(bag, offsets, indices, n, out, ld_out);
  };
  exchange_ = std::make_unique<ShardExchange>(cfg_, plan_, *control_, *data_, pool, mem);
  // Room for a full batch from every rank (what this rank pools) and for its own (what it gets).
  const size_t batch = static_cast<size_t>(o.max_batch);
  int64_t own = 0;
  for (int64_t b : plan_.bags_of(cfg_, ctx.rank())) {
    own += cfg_.tables[static_cast<size_t>(cfg_.bags[static_cast<size_t>(b)].table)].dim;
  }
  const size_t width = static_cast<size_t>(exchange_->pooled_width());
  pool_out_.get(batch * static_cast<size_t>(ctx.size()) * static_cast<size_t>(own) * static_cast<size_t>(es));
  pool_in_.get(batch * width * static_cast<size_t>(es));
  pooled_.get(batch * width * static_cast<size_t>(es));
}

void ShardedGpuScorer::score(const DlrmBatch& batch, float* logits) {
  FLURRY_CHECK(!finished_, "sharded scorer: a batch after finish()");
  if (batch.n == 0) return;
  const int64_t w = exchange_->pooled_width();
  void* pooled = pooled_.get(static_cast<size_t>(batch.n * w) * dtype_size(gpu_.options().dtype));
  exchange_->step(&batch, false, pooled, w);
  gpu_.forward_pooled(batch, pooled, w, logits);
}

void ShardedGpuScorer::finish() {
  if (finished_) return;
  finished_ = true;
  exchange_->drain();
  CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(gpu_.stream())));
}

Json ShardedGpuScorer::manifest() const {
  Json j = plan_.to_json(cfg_);
  j["device"] = "cuda";
  j["data_communicator"] = dist::comm_kind_name(data_->kind());
  return j;
}

}  // namespace flurry::dlrm
