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
// sequences, runs each through the forward below and writes every vector to its input's row.
//
// The forward of one batch (rows = cu_seqlens[batch] tokens):
//   embed_layernorm       word + position (restarting per sequence) + token type 0, LayerNorm
//   per layer             gpu_self_attention (fused QKV, varlen flash attention) -> add+LN (post-LN)
//                         gpu_ffn (bias + exact erf GELU in the epilogue) -> add+LN
//   segment_pool          mean / cls / max / mean_sqrt_len, optional L2 normalise, fp32 [batch, d]
//
// Shape buckets. A batch runs as a padded shape (bucket_shape): its tokens rounded up to one of
// eight steps per power of two (at most 1/8 more rows; padding rows past cu_seqlens[batch] embed
// as zeros and belong to no sequence), its sequence count up to a power of two (empty sequences:
// no attention work, a zero vector nobody reads) and its longest length up to flash attention's
// 64-row query tile (the grid is the same). Only the device arrays ids and cu_seqlens say what is
// real, so every batch of one bucket launches exactly the same kernels with the same arguments.
//
// CUDA graphs (use_graphs). The first batch of a bucket runs eagerly, so that cuBLASLt builds its
// plans (descriptors, heuristic) outside any capture; the next one of that bucket and staging
// slot is captured and every later one replays the graph: one launch instead of ~10 per layer.
// A capture that would build a cuBLASLt plan is refused (checked). use_graphs = false runs the
// same padded launches eagerly, so graphs on and off give identical vectors. time_stages and
// FLURRY_SYNC_LAUNCHES (per-launch events or synchronisation) run eagerly.
//
// Staging. Two slots, each with pinned host ids/cu_seqlens and vectors and its own device ids,
// cu_seqlens, pooled vectors and error word: batch k uses slot k % 2, its H2D runs on a copy
// stream while the compute stream still runs batch k - 1, and its D2H on a third stream while
// batch k + 1 computes. The host takes a slot's vectors (and checks its error word) before it
// stages the slot's next batch, which orders every reuse of a slot's buffers.
//
// Buffers (T = max_tokens, B = max_batch, d = hidden, I = intermediate):
//   h [T, d]  qkv [T, 3d]  attn [T, d]  proj [T, d]  ffn [T, I]  (model dtype)
//   per slot: pooled [B, d] fp32, ids [T] int32, cu_seqlens [B + 1] int32, error word;
//   cuBLASLt workspace.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
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
  bool time_stages = false;   // events around each stage, summed into stage_times() (runs eagerly)
  bool use_graphs = true;     // replay each shape bucket's forward as a CUDA graph (see above)
};

constexpr int64_t kDefaultMaxTokens = 65536;
constexpr int kDefaultMaxBatch = 1024;

// Milliseconds of GPU time per stage, summed over batches (BertGpuOptions::time_stages).
struct BertGpuStageTimes {
  double h2d_ms = 0, embed_ms = 0, attention_ms = 0, ffn_ms = 0, pool_ms = 0, d2h_ms = 0;
  int64_t batches = 0, sequences = 0, tokens = 0;
  int64_t padded_tokens = 0;  // rows the kernels ran over (tokens + bucket padding)
  int64_t graph_batches = 0;  // batches replayed from a captured graph
};

// The padded shape one batch runs as (see "Shape buckets"); a CUDA graph is captured per shape.
struct BertBatchShape {
  int64_t rows = 0;  // tokens, padded
  int batch = 0;     // sequences, padded with empty ones
  int max_len = 0;   // the longest sequence, rounded up to the attention kernel's query tile
  bool operator<(const BertBatchShape& o) const {
    return std::tie(rows, batch, max_len) < std::tie(o.rows, o.batch, o.max_len);
  }
  bool operator==(const BertBatchShape& o) const {
    return rows == o.rows && batch == o.batch && max_len == o.max_len;
  }
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
  // The bucket of a batch of `batch` sequences, `rows` tokens, the longest `max_len`, under the
  // caps (rows <= max_tokens, batch <= max_batch): never smaller, never above the caps.
  static BertBatchShape bucket_shape(int64_t rows, int batch, int max_len, int64_t max_tokens, int max_batch);

  const BertConfig& config() const { return config_; }
  int64_t dim() const { return config_.hidden_size; }
  int64_t max_tokens() const { return max_tokens_; }
  int max_batch() const { return max_batch_; }
  int64_t max_seq_len() const { return max_seq_len_; }
  const BertGpuOptions& options() const { return opts_; }

  // Sequences (each 1 .. max_seq_len ids) -> out [n, d] fp32 row-major, in input order. Batches
  // are pipelined (see "Staging"); every vector is in `out` when it returns.
  void encode(const std::vector<std::vector<int32_t>>& seqs, float* out);
  // One batch: ids of `batch` sequences concatenated, cu_seqlens [batch + 1] (host, from 0), at
  // most max_tokens ids and max_batch sequences -> out [batch, d] fp32. batch 0 does nothing.
  void forward_batch(const int32_t* ids, const int32_t* cu_seqlens, int batch, float* out);

  const BertGpuStageTimes& stage_times() const { return times_; }
  void reset_stage_times() { times_ = BertGpuStageTimes{}; }
  cudaStream_t stream() const { return *stream_; }
  // CUDA graphs captured so far (one per shape bucket and staging slot), and whether they are used.
  size_t graphs() const { return graphs_.size(); }
  bool graphs_enabled() const { return graphs_enabled_; }

 private:
  struct Slot;
  BertGpu();
  void upload(const Checkpoint& ck);
  void allocate();
  void run_layers(Slot& sl, const BertBatchShape& shape);
  // The padded forward of slot k's batch on the compute stream (eager launches; what is captured).
  void enqueue_forward(int k, const BertBatchShape& shape);
  // enqueue_forward, or its graph: eager for a bucket's first batch, captured for its next.
  void launch_forward(int k, const BertBatchShape& shape);
  // Stages a batch (host ids/cu_seqlens, `batch` sequences) into slot k and queues its H2D,
  // forward and D2H; out_rows[b] (or b when null) is the row of `out` that gets sequence b.
  void enqueue_batch(int k, const int32_t* ids, const int32_t* cu_seqlens, int batch, float* out,
                     const size_t* out_rows);
  // Waits for slot k's queued batch, checks its error word and writes its vectors out.
  void retire(int k);
  // After a fault: waits for every stream and forgets what the slots held (nothing is written).
  void abandon() noexcept;

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
  std::unique_ptr<Stream> h2d_stream_, d2h_stream_;
  std::vector<Slot> slots_;  // kSlots staging slots (bert_gpu.cpp)
  int next_slot_ = 0;
  bool graphs_enabled_ = false;
  std::set<BertBatchShape> ran_eagerly_;                        // buckets whose cuBLASLt plans exist
  std::map<std::pair<BertBatchShape, int>, CudaGraph> graphs_;  // (bucket, slot)
  BertGpuStageTimes times_;
};

}  // namespace flurry::bert
