// A BERT-family sentence encoder on the GPU: the immutable device model (weights in fp16 or bf16
// uploaded once from the memory-mapped checkpoint through the weight table, the same fused QKV and
// folded head_dim^-0.5 query scale the CPU reference binds), one device arena sized at start-up for
// a token budget, and the forward of unpadded (varlen) batches:
//
//   BertGpuOptions o;  o.max_tokens = 32768;  o.pooling = Pooling::kMean;  o.normalize = true;
//   auto gpu = BertGpu::load(dir, o);               // or create(config, checkpoint, o)
//   gpu->encode(seqs, out);                          // any number of token sequences -> out [n, d]
//
// encode() sorts the sequences by length (so a batch holds sequences of similar lengths, the
// buckets of a length-sorted queue), cuts batches of at most max_tokens tokens and max_batch
// sequences, runs each through forward_batch() and writes every vector to its input's row.
//
// forward_batch (one batch, rows = cu_seqlens[batch] tokens):
//   embed_layernorm       word + position (restarting per sequence) + token type 0, LayerNorm
//   per layer             gpu_self_attention (fused QKV, varlen flash attention) -> add+LN (post-LN)
//                         gpu_ffn (bias + exact erf GELU in the epilogue) -> add+LN
//   segment_pool          mean / cls / max / mean_sqrt_len, optional L2 normalise, fp32 [batch, d]
//
// Buffers (T = max_tokens, B = max_batch, d = hidden, I = intermediate):
//   h [T, d]  qkv [T, 3d]  attn [T, d]  proj [T, d]  ffn [T, I]  (model dtype)
//   pooled [B, d] fp32, ids [T] int32, cu_seqlens [B + 1] int32, error word, cuBLASLt workspace.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "models/bert/config.h"
#include "models/common/gpu/layers.h"
#include "runtime/arena.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/cuda/stream.h"
#include "runtime/dtype.h"

namespace flurry::bert {

struct BertGpuOptions {
  DType dtype = DType::F16;  // F16 or BF16 (fp32 accumulation everywhere)
  // Tokens one batch may hold; 0: as many as max_gpu_memory (or the free memory) allows, at most
  // kDefaultMaxTokens. Must be at least max_seq_len.
  int64_t max_tokens = 0;
  int max_batch = 0;          // sequences per batch; 0: min(max_tokens, kDefaultMaxBatch)
  int64_t max_seq_len = 0;    // longest sequence accepted; 0: max_position_embeddings
  size_t max_gpu_memory = 0;  // bound on the arena (weights + buffers); 0: free memory
  Pooling pooling = Pooling::kMean;
  bool normalize = false;
  bool time_stages = false;   // events around each stage, summed into stage_times()
};

constexpr int64_t kDefaultMaxTokens = 65536;
constexpr int kDefaultMaxBatch = 1024;

// Milliseconds of GPU time per stage, summed over batches (BertGpuOptions::time_stages).
struct BertGpuStageTimes {
  double h2d_ms = 0, embed_ms = 0, attention_ms = 0, ffn_ms = 0, pool_ms = 0, d2h_ms = 0;
  int64_t batches = 0, sequences = 0, tokens = 0;
};

struct BertGpuLayer {
  models::GpuLinear qkv, attn_out, ffn_in, ffn_out;
  models::GpuLayerNorm attn_ln, ffn_ln;
};

class BertGpu {
 public:
  ~BertGpu();
  static std::unique_ptr<BertGpu> load(const std::string& dir, const BertGpuOptions& o);
  static std::unique_ptr<BertGpu> create(const BertConfig& c, const Checkpoint& ck, const BertGpuOptions& o);
  // What create() refuses, without touching the device: dtype, head_dim (32 or 64), sizes.
  static void check_supported(const BertConfig& c, const BertGpuOptions& o);
  // Device bytes of the weights, and of the buffers for a token budget and batch cap.
  static size_t weight_bytes(const BertConfig& c, DType dtype);
  static size_t state_bytes(const BertConfig& c, DType dtype, int64_t max_tokens, int max_batch);
  // The largest token budget (multiple of 64, at most kDefaultMaxTokens) whose weights + buffers
  // fit in `bytes`; 0 when not even max_seq_len tokens fit.
  static int64_t tokens_for_memory(const BertConfig& c, DType dtype, size_t bytes, int max_batch);

  const BertConfig& config() const { return config_; }
  int64_t dim() const { return config_.hidden_size; }
  int64_t max_tokens() const { return max_tokens_; }
  int max_batch() const { return max_batch_; }
  int64_t max_seq_len() const { return max_seq_len_; }
  const BertGpuOptions& options() const { return opts_; }

  // Sequences (each 1 .. max_seq_len ids) -> out [n, d] fp32 row-major, in input order.
  void encode(const std::vector<std::vector<int32_t>>& seqs, float* out);
  // One batch: ids of `batch` sequences concatenated, cu_seqlens [batch + 1] (host, from 0), at
  // most max_tokens ids and max_batch sequences -> out [batch, d] fp32. batch 0 does nothing.
  void forward_batch(const int32_t* ids, const int32_t* cu_seqlens, int batch, float* out);

  const BertGpuStageTimes& stage_times() const { return times_; }
  void reset_stage_times() { times_ = BertGpuStageTimes{}; }
  cudaStream_t stream() const { return *stream_; }

 private:
  BertGpu() = default;
  void upload(const Checkpoint& ck);
  void allocate();
  void run_layers(int64_t rows, int batch, int max_len);

  BertConfig config_;
  BertGpuOptions opts_;
  int64_t max_tokens_ = 0, max_seq_len_ = 0;
  int max_batch_ = 0;
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<GemmLt> lt_;
  std::unique_ptr<Stream> stream_;
  models::GpuContext ctx_;

  const void* word_ = nullptr;        // [V, d]
  const void* position_ = nullptr;    // [P, d]
  const void* token_type_ = nullptr;  // [T, d]; row 0 is used
  models::GpuLayerNorm emb_ln_;
  std::vector<BertGpuLayer> layers_;

  void *h_ = nullptr, *qkv_ = nullptr, *attn_ = nullptr, *proj_ = nullptr, *ffn_ = nullptr;
  float* pooled_ = nullptr;
  int32_t *ids_ = nullptr, *cu_ = nullptr, *error_ = nullptr;
  PinnedBuffer host_ints_;    // ids then cu_seqlens
  PinnedBuffer host_pooled_;  // [max_batch, d] fp32
  std::vector<Event> events_;  // stage boundaries (time_stages)
  BertGpuStageTimes times_;
};

}  // namespace flurry::bert
