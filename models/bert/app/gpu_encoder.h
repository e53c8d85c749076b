// The GPU backend of flurry-embed's Encoder: token sequences through BertGpu (models/bert/gpu),
// length-sorted into batches under a token budget, pooled and normalised on the device. Built only
// when flurry_bert_gpu is (FLURRY_EMBED_GPU).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "models/bert/app/embed_job.h"
#include "runtime/dtype.h"

namespace flurry::bert {

class BertGpu;

struct GpuEncoderOptions {
  DType dtype = DType::F16;   // F16 or BF16
  int max_batch = 0;          // sequences per batch (--batch-size); 0: the model's default cap
  int64_t max_tokens = 0;     // token budget per batch; 0: from max_gpu_memory / the free memory
  size_t max_gpu_memory = 0;  // --max-gpu-memory; 0: what the GPU has free
  bool time_stages = false;
  bool use_graphs = true;     // replay each batch shape's forward as a CUDA graph (--no-cuda-graphs)
};

class GpuEncoder : public Encoder {
 public:
  // Uploads the checkpoint at a.dir (a.model, the CPU weights, is not needed).
  GpuEncoder(const EmbedAssets& a, const EmbedOptions& o, const GpuEncoderOptions& g, StageTimers* timers);
  ~GpuEncoder() override;
  int64_t dim() const override;
  void encode_ids(const std::vector<std::vector<int32_t>>& seqs, float* out) override;
  BertGpu& gpu() { return *gpu_; }

 private:
  std::unique_ptr<BertGpu> gpu_;
};

}  // namespace flurry::bert
