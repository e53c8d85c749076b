#include "models/bert/app/gpu_encoder.h"

#include "models/bert/gpu/bert_gpu.h"
#include "runtime/check.h"

namespace flurry::bert {

GpuEncoder::GpuEncoder(const EmbedAssets& a, const EmbedOptions& o, const GpuEncoderOptions& g, StageTimers* timers)
    : Encoder(*a.tokenizer, effective_max_len(a, o), timers) {
  BertGpuOptions bo;
  bo.dtype = g.dtype;
  bo.max_batch = g.max_batch;
  bo.max_tokens = g.max_tokens;
  bo.max_gpu_memory = g.max_gpu_memory;
  bo.max_seq_len = max_len_;
  bo.pooling = a.sentence.pooling;
  bo.normalize = effective_normalize(a, o);
  bo.time_stages = g.time_stages;
  bo.use_graphs = g.use_graphs;
  gpu_ = BertGpu::load(a.dir, bo);
  FLURRY_CHECK(gpu_->config().hidden_size == a.config.hidden_size, a.dir << ": config changed while loading");
}

GpuEncoder::~GpuEncoder() = default;

int64_t GpuEncoder::dim() const { return gpu_->dim(); }

void GpuEncoder::encode_ids(const std::vector<std::vector<int32_t>>& seqs, float* out) {
  ScopedStage st(timers_, "encode");
  gpu_->encode(seqs, out);
}

}  // namespace flurry::bert
