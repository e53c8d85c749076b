// DLRM on the GPU: the forward of model.h (the CPU reference, its oracle) with the weights uploaded
// once from the mapped checkpoint and every buffer sized at load for a maximum batch, so nothing
// allocates on the hot path.
//
//   DlrmGpu g;
//   g.load(cfg, ck, {DType::F16, /*max_batch=*/4096});
//   g.forward(batch, logits);                          // logits [batch.n], fp32
//   g.forward_async(b1, l1); g.forward_async(b2, l2); g.wait();   // the pipeline
//   g.recommend(pairs, customers, candidates, valid, k, top_logits, top_index);
//
// One pass over at most max_batch samples (larger batches are split, each split a whole pass):
//   pinned staging (dense converted to the model dtype, offsets rebased, indices checked against
//   their tables; two slots) -> H2D on a copy stream -> on the model's stream: bottom MLP (cuBLASLt, bias+ReLU epilogues; the
//   last layer writes straight into columns [0, bottom) of the feature row [bottom | bag_0 | ...])
//   -> embedding_bags (every bag pooled into its slot of the same row) -> the interaction (dot,
//   outer, cat: none, dcnv2: the cross layers) -> top MLP (the last layer writes fp32 logits with
//   an fp32 bias) -> D2H of the logits, or the device top-k of recommend().
// Activations and weights are in the model dtype (F32, F16 or BF16) with fp32 accumulation; the
// DCNv2 cross term W (V x) + b and the logits stay fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "models/dlrm/config.h"
#include "models/dlrm/features.h"
#include "runtime/dtype.h"
#include "runtime/stage_timers.h"

namespace flurry::dlrm {

// The outer interaction fused into the first top-MLP GEMM (kernels/dlrm/outer_linear.cuh):
// auto: fused for f16/bf16 when z fits the kernel (the cheaper path by the estimate there),
// materialised for f32; on: fused (refused at load when z is too wide); off: materialised.
// Other interactions ignore it.
enum class OuterFusion { kAuto, kOn, kOff };
const char* outer_fusion_name(OuterFusion f);
// "auto", "on", "off"; throws flurry::Error otherwise.
OuterFusion parse_outer_fusion(const std::string& s);

struct DlrmGpuOptions {
  DType dtype = DType::F16;  // weights and activations: F32, F16 or BF16
  int64_t max_batch = 4096;  // samples per device pass; what the buffers are sized for
  // Embedding indices per pass (all bags together); 0: 4 per categorical feature per sample, at
  // least 65,536. A batch holding more is split into smaller passes.
  int64_t max_indices = 0;
  size_t max_gpu_memory = 0;  // 0: what the device has free
  bool allow_tf32 = false;    // fp32 GEMMs on TF32 tensor cores (~1e-3 relative error)
  // One flag per config table: only the flagged tables are uploaded (a rank of a table-sharded
  // run, sharding.h); empty: every table. forward() and recommend() then need every table and
  // refuse; a sharded rank uses pool_bag() for its tables and forward_pooled() for its batches.
  std::vector<bool> tables;
  // CUDA graphs: each pass runs at a bucket size (powers of two from 16, capped at max_batch) and
  // its device part is captured once per bucket and staging slot, then replayed. Off: every pass
  // is launched op by op at its exact size.
  bool use_graphs = true;
  OuterFusion outer_fusion = OuterFusion::kAuto;
};

class DlrmGpu {
 public:
  DlrmGpu();
  ~DlrmGpu();
  DlrmGpu(const DlrmGpu&) = delete;
  DlrmGpu& operator=(const DlrmGpu&) = delete;

  // Validates `ck` against dlrm_weight_table(cfg), reserves one device arena (weights + buffers for
  // options.max_batch samples; too little device memory is refused naming the need and the flag
  // that lowers it) and uploads the weights converted to options.dtype. Replaces an earlier load.
  void load(const DlrmConfig& cfg, const Checkpoint& ck, const DlrmGpuOptions& options);
  void load(const DlrmConfig& cfg, const Checkpoint& ck, DType dtype);

  // logits[i] (fp32, before the sigmoid) for every sample of `batch` (the layout of features.h).
  // Throws flurry::Error, before any launch of the pass holding it, on a batch whose shape does not
  // fit the model or an index outside its table.
  // Synchronous: forward_async() then wait().
  void forward(const DlrmBatch& batch, float* host_logits);

  // The pipeline: validates and stages `batch` into one of two pinned slots, queues its passes
  // (H2D on a copy stream, the pass on stream(), D2H of the logits on another copy stream) and
  // returns; the batch may be changed at once. host_logits[0 .. batch.n) is written by a later
  // forward_async() (when it needs the slot) or by wait(), and must stay valid until wait()
  // returns. While a pass runs, the next batch is staged and copied and the previous logits come
  // back. Throws before queueing anything when the batch does not fit the model.
  void forward_async(const DlrmBatch& batch, float* host_logits);
  // Waits for every queued pass and writes its logits. Every other call waits first too.
  void wait();

  // Scores customers x candidates pairs and keeps the k best candidates per customer on the
  // device. `batch` holds customers * candidates samples, customer-major (sample c * candidates + j
  // pairs customer c with candidate j); valid (host, same order, may be null) marks the pairs that
  // may be recommended. top_logits / top_index [customers, k]: the k largest logits of each
  // customer, descending, ties broken by the lower candidate index; -inf / -1 where a customer has
  // fewer than k valid candidates. candidates must not exceed max_batch; 1 <= k <= 64.
  void recommend(const DlrmBatch& batch, int64_t customers, int64_t candidates, const uint8_t* valid, int k,
                 float* top_logits, int32_t* top_index);

  // Table-sharded runs (app/sharded_scorer.h; the hooks that let ShardExchange drive this model):
  // Pools bag `bag` (its table uploaded here) of n samples, offsets [n + 1] from 0 into indices
  // (host), into device_out [n, ld_out] of the model dtype, on stream(); not waited for.
  void pool_bag(int64_t bag, const int32_t* offsets, const int32_t* indices, int64_t n, void* device_out,
                int64_t ld_out);
  // forward() with the bags pooled elsewhere: device_pooled [batch.n, ld_pooled] (model dtype)
  // holds each sample's bag vectors in bag order, written by work already queued on stream(); only
  // batch.n and batch.dense are read.
  void forward_pooled(const DlrmBatch& batch, const void* device_pooled, int64_t ld_pooled, float* host_logits);
  // The model's stream (a cudaStream_t) for work that must order with its passes.
  void* stream() const;

  bool loaded() const;
  const DlrmConfig& config() const;
  const DlrmGpuOptions& options() const;
  // Switches options().use_graphs on a loaded model (after wait()); graphs already captured are
  // kept for when it is switched back on. For comparing both on one set of weights.
  void set_use_graphs(bool on);
  // CUDA graphs captured so far (one per bucket size and slot used).
  size_t graphs() const;
  // Whether the outer interaction runs fused into the first top layer (options.outer_fusion
  // resolved for this config and dtype).
  bool outer_fused() const;
  static bool outer_fused(const DlrmConfig& cfg, const DlrmGpuOptions& options);
  // Device bytes the arena of this model takes (weights + buffers).
  size_t device_bytes() const;
  static size_t device_bytes(const DlrmConfig& cfg, const DlrmGpuOptions& options);
  // Stages "dlrm_stage" (host staging) and "dlrm_gpu" (the host waiting for device passes) are added to
  // `timers` (null: none), across loads.
  void set_timers(StageTimers* timers);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  StageTimers* timers_ = nullptr;
};

}  // namespace flurry::dlrm
