// DlrmGpu's internals, shared by model_gpu.cpp (load, the device part of a pass) and
// model_gpu_pipeline.cpp (staging slots, graphs, the public passes). Not a public header.
//
// Streams. `stream` runs the device part of every pass (bottom MLP, bags, interaction, top MLP,
// top-k); `h2d` carries the inputs of a pass into its slot and `d2h` the logits back, so with two
// slots the H2D of batch i+1 and the D2H of batch i-1 run while batch i computes. Events order
// them: pass i waits for its slot's h2d event, the D2H waits for the pass's event, and the host
// refills a slot only after that slot's D2H event (which also means its H2D and pass are done).
//
// Graphs. With options.use_graphs a pass of m samples runs at the bucket size M >= m (powers of
// two from 16, capped at max_batch): inputs are staged for M samples (the padding samples have
// empty bags and stale dense rows whose outputs nobody reads; every op is row-independent), and
// the device part is a CUDA graph per (M, slot), captured right after its first eager run (so the
// cuBLASLt plans exist and capture only records cublasLtMatmul calls on the fixed arena workspace)
// and replayed from then on. The bag kernel is inside the graph: its grid depends on M only and
// the index counts reach it through the offsets in device memory.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "kernels/dlrm/embedding_bag.cuh"
#include "models/dlrm/gpu/model_gpu.h"
#include "runtime/arena.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/cuda/stream.h"
#include "runtime/gemm.h"

namespace flurry::dlrm {

// The widths and row strides of a pass, from the config and options alone, so that sizing and
// running cannot disagree. Row strides are padded to 8 elements (16 bytes at f16) so every row
// a GEMM or a vector access starts at is aligned.
struct DlrmShape {
  int64_t max_batch = 0, max_indices = 0;
  int64_t num_dense = 0, dense_ld = 0, bags = 0;
  int64_t bottom = 0, concat = 0, feats_ld = 0;
  int64_t inter_out = 0, inter_ld = 0;  // inter_ld > 0: dot and outer write a separate buffer
  int64_t act_width = 1;                // the widest hidden MLP layer
  int64_t cross_layers = 0, rank = 0;
  bool outer_fused = false;  // outer interaction fused into the first top layer (outer_linear.cuh)
  int64_t top0_out = 0;      // the first top layer's width (its fp32 bias is kept when fused)
};

DlrmShape dlrm_shape(const DlrmConfig& c, const DlrmGpuOptions& o);

// The device buffers of a pass shared by both slots (arena views).
struct DlrmBuffers {
  void* act[2] = {nullptr, nullptr};  // [B, act_width] ping-pong for hidden MLP layers
  void* feats = nullptr;      // [B, feats_ld]: [bottom | bag_0 | ...]
  void* inter = nullptr;      // [B, inter_ld] (dot, outer materialised)
  void* x = nullptr;          // [B, feats_ld] (dcnv2: the cross layers' running x)
  void* t = nullptr;          // [B, rank] (dcnv2)
  float* u = nullptr;         // [B, concat] fp32 (dcnv2)
  float* top_scores = nullptr;   // [B, kTopKMax]
  int32_t* top_index = nullptr;  // [B, kTopKMax]
  uint8_t* mask = nullptr;    // [B]
  // fp32 biases: the top MLP's last, then each cross layer's [concat], then (fused) top layer 0's.
  float* f32_bias = nullptr;
  uint32_t* columns = nullptr;  // [inter_out] the fused outer interaction's column table
  void* gemm_ws = nullptr;
};

// One staging slot: the inputs and logits of a pass on the device and in pinned host memory.
struct DlrmSlotBuffers {
  void* dense = nullptr;       // [B, dense_ld] model dtype
  int32_t* offsets = nullptr;  // [bags * B + 1]
  int32_t* indices = nullptr;  // [max_indices]
  float* logits = nullptr;     // [B]
};

struct DlrmSlot {
  DlrmSlotBuffers dev;
  PinnedBuffer p_dense, p_offsets, p_indices, p_logits;
  Event h2d{false}, pass{false}, d2h{false};
  float* dst = nullptr;  // where the queued pass's logits go (host), m of them
  int64_t m = 0;
  bool queued = false;  // a pass whose logits still have to be copied to dst
  bool fenced = false;  // d2h was recorded after other work reading the pinned buffers (pool_bag)
};

// Sums (arena == nullptr) or allocates (arena given) the buffers of a pass, in one order.
size_t dlrm_layout(const DlrmShape& s, DType dt, int slots, Arena* arena, DlrmBuffers* b, DlrmSlotBuffers* slot_bufs);

struct DlrmLayer {
  const void* w = nullptr;  // [out, in]
  const void* b = nullptr;  // [out]
  int64_t in = 0, out = 0;
};

struct DlrmGpu::Impl {
  static constexpr int kSlots = 2;

  DlrmConfig cfg;
  DlrmGpuOptions opt;
  DlrmShape shape;
  size_t bytes = 0;
  std::unique_ptr<Arena> arena;
  std::unique_ptr<GemmLt> lt;
  std::unique_ptr<Stream> stream, h2d, d2h;
  DlrmBuffers buf;
  std::array<DlrmSlot, kSlots> slots;
  int next_slot = 0;
  std::map<std::pair<int64_t, int>, CudaGraph> graphs;  // (bucket, slot)
  std::vector<DlrmLayer> bottom, top;
  std::vector<EmbeddingBagSpec> bags;
  std::vector<int64_t> bag_rows;  // rows of each bag's table (index validation)
  std::vector<const void*> cross_v, cross_w;
  PinnedBuffer p_top_scores, p_top_index, p_mask;
  StageTimers* timers = nullptr;
  bool all_tables = true;  // false on a rank of a table-sharded run

  // model_gpu.cpp
  void upload(const Checkpoint& ck);
  void check_batch(const DlrmBatch& b) const;
  int64_t indices_in(const DlrmBatch& b, int64_t s0, int64_t s1) const;
  int64_t fit_end(const DlrmBatch& b, int64_t s0, int64_t limit, int64_t unit) const;
  // Samples [s0, s1) of b into slot k's pinned buffers, laid out for a pass of `padded` >= s1 - s0
  // samples (the padding samples get empty bags). Returns the indices staged.
  int64_t stage(const DlrmBatch& b, int64_t s0, int64_t s1, int64_t padded, int k);
  // The device part of a pass of m samples over slot k's device buffers, on `stream`, ending with
  // fp32 logits in the slot's logits. With `pooled` (device [m, ld_pooled]) the bags come pooled.
  void enqueue_pass(int64_t m, int k, const void* pooled = nullptr, int64_t ld_pooled = 0);
  void linear(const DlrmLayer& l, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t m, Epilogue e,
              DType c_type, const void* bias);
  const void* interact(int64_t m, int64_t* ld_top_in);

  // model_gpu_pipeline.cpp
  int64_t bucket(int64_t m) const;
  // H2D of slot k's staged inputs (m dense rows, bags * padded + 1 offsets, nidx indices) on h2d,
  // and `stream` made to wait for them.
  void enqueue_inputs(int k, int64_t m, int64_t padded, int64_t nidx);
  // The device part of slot k's pass at `padded` samples: its graph, or eagerly (then captured).
  void launch_pass(int64_t padded, int k);
  // Waits for slot k's queued pass and copies its logits out.
  void retire(int k);
  void drain();
};

}  // namespace flurry::dlrm
