// DlrmGpu: the weight table uploaded into one device arena, the pass buffers carved from the same
// arena, pinned staging on the host, and the device part of a pass (launches on one stream).
// model_gpu_pipeline.cpp queues the passes (slots, copy streams, graphs).
#include "models/dlrm/gpu/model_gpu.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/dlrm/embedding_bag.cuh"
#include "kernels/dlrm/interaction.cuh"
#include "kernels/dlrm/outer_linear.cuh"
#include "kernels/dlrm/topk.cuh"
#include "models/common/gpu/weight_upload.h"
#include "models/common/weight_table.h"
#include "models/dlrm/gpu/model_gpu_impl.h"
#include "models/dlrm/model.h"
#include "runtime/arena.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/gemm_gpu.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/cuda/stream.h"
#include "runtime/device.h"
#include "runtime/log.h"

namespace flurry::dlrm {

namespace {

constexpr const char* kLowerHint = "lower --batch-size (the samples of one device pass) or use f16/bf16";

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

PairOrder pair_order(Pairs p) {
  switch (p) {
    case Pairs::kStrictLower: return PairOrder::StrictLower;
    case Pairs::kLowerWithDiag: return PairOrder::LowerWithDiag;
    case Pairs::kStrictUpper: return PairOrder::StrictUpper;
    case Pairs::kUpperWithDiag: return PairOrder::UpperWithDiag;
  }
  return PairOrder::StrictLower;
}

}  // namespace

DlrmShape dlrm_shape(const DlrmConfig& c, const DlrmGpuOptions& o) {
  DlrmShape s;
  s.max_batch = o.max_batch;
  int64_t features = 0;
  for (const BagConfig& b : c.bags) features += static_cast<int64_t>(b.features.size());
  s.max_indices = o.max_indices > 0 ? o.max_indices : std::max<int64_t>(o.max_batch * std::max<int64_t>(features, 1) * 4, 65536);
  s.num_dense = c.num_dense();
  s.dense_ld = round_up(std::max<int64_t>(s.num_dense, 1), 8);
  s.bags = c.num_bags();
  s.bottom = c.bottom_out();
  s.concat = c.concat_width();
  s.feats_ld = round_up(s.concat, 8);
  s.inter_out = c.interaction_out();
  const InteractionType t = c.interaction.type;
  if (t == InteractionType::kDot || t == InteractionType::kOuter) s.inter_ld = round_up(s.inter_out, 8);
  for (int64_t w : c.bottom_mlp) s.act_width = std::max(s.act_width, w);
  for (int64_t w : c.top_mlp) s.act_width = std::max(s.act_width, w);
  if (t == InteractionType::kDcnV2) {
    s.cross_layers = c.interaction.layers;
    s.rank = c.interaction.rank;
  }
  s.outer_fused = DlrmGpu::outer_fused(c, o);
  if (s.outer_fused) s.inter_ld = 0;  // no materialised interaction row
  s.top0_out = c.top_mlp.empty() ? 0 : c.top_mlp.front();
  return s;
}

size_t dlrm_layout(const DlrmShape& s, DType dt, int slots, Arena* arena, DlrmBuffers* b, DlrmSlotBuffers* slot_bufs) {
  size_t total = 0;
  auto take = [&](size_t bytes, const char* what) -> void* {
    bytes = std::max<size_t>(bytes, 1);
    total += (bytes + Arena::kDefaultAlign - 1) / Arena::kDefaultAlign * Arena::kDefaultAlign;
    return arena ? arena->alloc(bytes, what) : nullptr;
  };
  const size_t es = dtype_size(dt), B = static_cast<size_t>(s.max_batch);
  const size_t f4 = sizeof(float);
  for (int k = 0; k < slots; ++k) {
    DlrmSlotBuffers v;
    v.dense = take(B * static_cast<size_t>(s.dense_ld) * es, "dlrm dense");
    v.offsets = static_cast<int32_t*>(take((static_cast<size_t>(s.bags) * B + 1) * sizeof(int32_t), "dlrm offsets"));
    v.indices = static_cast<int32_t*>(take(static_cast<size_t>(s.max_indices) * sizeof(int32_t), "dlrm indices"));
    v.logits = static_cast<float*>(take(B * f4, "dlrm logits"));
    if (slot_bufs) slot_bufs[k] = v;
  }
  DlrmBuffers v;
  v.act[0] = take(B * static_cast<size_t>(s.act_width) * es, "dlrm activations");
  v.act[1] = take(B * static_cast<size_t>(s.act_width) * es, "dlrm activations");
  v.feats = take(B * static_cast<size_t>(s.feats_ld) * es, "dlrm feature rows");
  if (s.inter_ld > 0) v.inter = take(B * static_cast<size_t>(s.inter_ld) * es, "dlrm interaction");
  if (s.cross_layers > 0) {
    v.x = take(B * static_cast<size_t>(s.feats_ld) * es, "dlrm cross x");
    v.t = take(B * static_cast<size_t>(s.rank) * es, "dlrm cross rank");
    v.u = static_cast<float*>(take(B * static_cast<size_t>(s.concat) * f4, "dlrm cross term"));
  }
  v.top_scores = static_cast<float*>(take(B * kTopKMax * f4, "dlrm top-k scores"));
  v.top_index = static_cast<int32_t*>(take(B * kTopKMax * sizeof(int32_t), "dlrm top-k index"));
  v.mask = static_cast<uint8_t*>(take(B, "dlrm candidate mask"));
  const size_t nbias = 1 + static_cast<size_t>(s.cross_layers * s.concat) + (s.outer_fused ? static_cast<size_t>(s.top0_out) : 0);
  v.f32_bias = static_cast<float*>(take(nbias * f4, "dlrm f32 biases"));
  if (s.outer_fused) {
    v.columns = static_cast<uint32_t*>(take(static_cast<size_t>(s.inter_out) * sizeof(uint32_t), "dlrm outer columns"));
  }
  v.gemm_ws = take(GemmLt::kWorkspaceBytes, "dlrm gemm workspace");
  if (b) *b = v;
  return total;
}

namespace {

void check_supported(const DlrmConfig& c, const DlrmGpuOptions& o) {
  FLURRY_CHECK(o.dtype == DType::F32 || o.dtype == DType::F16 || o.dtype == DType::BF16,
               "dlrm gpu: dtype " << dtype_name(o.dtype) << " is not f32, f16 or bf16");
  FLURRY_CHECK(o.max_batch >= 1, "dlrm gpu: max batch " << o.max_batch << " must be at least 1");
  FLURRY_CHECK(!c.top_mlp.empty() && c.top_mlp.back() == 1, "dlrm gpu: the top MLP must end in one logit");
  const InteractionType t = c.interaction.type;
  if (t == InteractionType::kDot) {
    FLURRY_CHECK(1 + c.num_bags() <= 64, "dlrm gpu: the dot interaction takes at most 63 bags, not " << c.num_bags());
    FLURRY_CHECK(c.bottom_out() <= 4096, "dlrm gpu: dot over vectors of dim " << c.bottom_out() << " (at most 4096)");
  }
  if (t == InteractionType::kOuter) {
    FLURRY_CHECK(c.concat_width() <= 8192,
                 "dlrm gpu: the outer interaction of a " << c.concat_width() << "-wide row (at most 8192)");
  }
  if (t == InteractionType::kDcnV2 && c.interaction.layers > 0) {
    FLURRY_CHECK(c.interaction.rank >= 1, "dlrm gpu: dcnv2 rank " << c.interaction.rank);
  }
}

}  // namespace

void DlrmGpu::Impl::upload(const Checkpoint& ck) {
  const models::WeightTable table = dlrm_weight_table(cfg, opt.tables.empty() ? nullptr : &opt.tables);
  models::validate_checkpoint(table, ck);
  const models::DeviceWeights w = models::upload_weights(table, ck, opt.dtype, *arena, *stream);
  auto mlp = [&](const std::string& prefix, const std::vector<int64_t>& widths, int64_t in) {
    std::vector<DlrmLayer> out;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string k = prefix + "." + std::to_string(i);
      out.push_back(DlrmLayer{w.get(k + ".weight"), w.get(k + ".bias"), in, widths[i]});
      in = widths[i];
    }
    return out;
  };
  bottom = mlp("bottom_mlp", cfg.bottom_mlp, cfg.num_dense());
  top = mlp("top_mlp", cfg.top_mlp, cfg.interaction_out());
  int64_t col = shape.bottom;
  for (const BagConfig& b : cfg.bags) {
    const TableConfig& t = cfg.tables[static_cast<size_t>(b.table)];
    const bool here = opt.tables.empty() || opt.tables[static_cast<size_t>(b.table)];
    all_tables = all_tables && here;
    bags.push_back(EmbeddingBagSpec{here ? w.get("embeddings." + t.name) : nullptr, t.dim, col,
                                    b.pooling == Pooling::kMean ? BagPooling::Mean : BagPooling::Sum});
    bag_rows.push_back(t.rows);
    col += t.dim;
  }
  // fp32 copies of the biases whose GEMMs write fp32 (the logit, the cross term), read through
  // read_group like every other weight so the values are those of the checkpoint.
  const size_t top0_at = 1 + static_cast<size_t>(shape.cross_layers * shape.concat);
  std::vector<float> f32(top0_at + (shape.outer_fused ? static_cast<size_t>(shape.top0_out) : 0));
  const std::string last = "top_mlp." + std::to_string(cfg.top_mlp.size() - 1) + ".bias";
  models::read_group(table, ck, table.group(last), 0, 1, DType::F32, f32.data());
  for (int64_t l = 0; l < shape.cross_layers; ++l) {
    const std::string p = "interaction.cross." + std::to_string(l);
    cross_v.push_back(w.get(p + ".V"));
    cross_w.push_back(w.get(p + ".W"));
    models::read_group(table, ck, table.group(p + ".bias"), 0, shape.concat, DType::F32,
                       f32.data() + 1 + l * shape.concat);
  }
  if (shape.outer_fused) {
    // The fused first top layer adds its bias in fp32 (outer_linear's epilogue), and reads A's
    // columns through the table.
    models::read_group(table, ck, table.group("top_mlp.0.bias"), 0, shape.top0_out, DType::F32, f32.data() + top0_at);
    const std::vector<uint32_t> cols =
        outer_linear_columns(pair_order(cfg.interaction.pairs), shape.concat, shape.bottom);
    FLURRY_CHECK(static_cast<int64_t>(cols.size()) == shape.inter_out,
                 "dlrm gpu: " << cols.size() << " outer columns for a top MLP input of " << shape.inter_out);
    CUDA_CHECK(cudaMemcpy(buf.columns, cols.data(), cols.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
  }
  CUDA_CHECK(cudaMemcpy(buf.f32_bias, f32.data(), f32.size() * sizeof(float), cudaMemcpyHostToDevice));
}

void DlrmGpu::Impl::check_batch(const DlrmBatch& b) const {
  const int64_t n = b.n;
  FLURRY_CHECK(n >= 0, "dlrm gpu: batch of " << n << " samples");
  if (n == 0) return;
  FLURRY_CHECK(static_cast<int64_t>(b.dense.size()) == n * shape.num_dense &&
                   static_cast<int64_t>(b.offsets.size()) == shape.bags * n + 1,
               "dlrm gpu: a batch of " << n << " samples has " << b.dense.size() << " dense values and "
                                       << b.offsets.size() << " offsets (the model needs " << shape.num_dense
                                       << " dense features and " << shape.bags << " bags)");
  const int64_t nidx = static_cast<int64_t>(b.indices.size());
  FLURRY_CHECK(b.offsets[0] >= 0 && b.offsets.back() <= nidx,
               "dlrm gpu: offsets [" << b.offsets[0] << ", " << b.offsets.back() << "] outside the " << nidx
                                     << " indices of the batch");
  for (int64_t bi = 0; bi < shape.bags; ++bi) {
    const int64_t rows = bag_rows[static_cast<size_t>(bi)];
    for (int64_t i = 0; i < n; ++i) {
      const int32_t lo = b.offsets[static_cast<size_t>(bi * n + i)], hi = b.offsets[static_cast<size_t>(bi * n + i + 1)];
      FLURRY_CHECK(lo <= hi, "dlrm gpu: bag '" << cfg.bags[static_cast<size_t>(bi)].name << "' of sample " << i
                                               << ": offsets decrease (" << lo << " > " << hi << ")");
      for (int32_t p = lo; p < hi; ++p) {
        const int32_t r = b.indices[static_cast<size_t>(p)];
        FLURRY_CHECK(r >= 0 && r < rows, "dlrm gpu: bag '" << cfg.bags[static_cast<size_t>(bi)].name << "' of sample "
                                                           << i << ": embedding index " << r << " outside the table's "
                                                           << rows << " rows");
      }
    }
  }
}

int64_t DlrmGpu::Impl::indices_in(const DlrmBatch& b, int64_t s0, int64_t s1) const {
  int64_t total = 0;
  for (int64_t bi = 0; bi < shape.bags; ++bi) {
    total += b.offsets[static_cast<size_t>(bi * b.n + s1)] - b.offsets[static_cast<size_t>(bi * b.n + s0)];
  }
  return total;
}

// The largest s0 + u * unit <= limit (u >= 1) whose samples' indices fit one pass.
int64_t DlrmGpu::Impl::fit_end(const DlrmBatch& b, int64_t s0, int64_t limit, int64_t unit) const {
  int64_t lo = 1, hi = (limit - s0) / unit;
  FLURRY_CHECK(hi >= 1, "dlrm gpu: " << unit << " samples do not fit a pass of " << shape.max_batch);
  FLURRY_CHECK(indices_in(b, s0, s0 + unit) <= shape.max_indices,
               "dlrm gpu: samples " << s0 << ".." << s0 + unit - 1 << " hold " << indices_in(b, s0, s0 + unit)
                                    << " embedding indices, more than the " << shape.max_indices
                                    << " one pass holds (raise DlrmGpuOptions::max_indices)");
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (indices_in(b, s0, s0 + mid * unit) <= shape.max_indices) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return s0 + lo * unit;
}

// Samples [s0, s1) into slot k's pinned buffers: dense rows converted to the model dtype (the
// padding columns stay zero from load), each bag's offsets rebased onto the indices packed bag
// after bag, bag b's offsets at b * padded (the padding samples' bags empty).
int64_t DlrmGpu::Impl::stage(const DlrmBatch& b, int64_t s0, int64_t s1, int64_t padded, int k) {
  ScopedStage st(timers, "dlrm_stage");
  const int64_t m = s1 - s0, n = b.n;
  const size_t es = dtype_size(opt.dtype);
  DlrmSlot& sl = slots[static_cast<size_t>(k)];
  char* dense = sl.p_dense.as<char>();
  for (int64_t i = 0; i < m; ++i) {
    convert_from_f32(b.dense.data() + (s0 + i) * shape.num_dense, dense + static_cast<size_t>(i * shape.dense_ld) * es,
                     static_cast<size_t>(shape.num_dense), opt.dtype);
  }
  int32_t* off = sl.p_offsets.as<int32_t>();
  int32_t* idx = sl.p_indices.as<int32_t>();
  int32_t pos = 0;
  for (int64_t bi = 0; bi < shape.bags; ++bi) {
    const int32_t* src = b.offsets.data() + bi * n;
    const int32_t base = src[s0];
    for (int64_t i = 0; i < m; ++i) off[bi * padded + i] = pos + (src[s0 + i] - base);
    const int32_t len = src[s1] - base;
    if (len > 0) std::memcpy(idx + pos, b.indices.data() + base, static_cast<size_t>(len) * sizeof(int32_t));
    pos += len;
    for (int64_t i = m; i < padded; ++i) off[bi * padded + i] = pos;
  }
  off[shape.bags * padded] = pos;
  return pos;
}

void DlrmGpu::Impl::linear(const DlrmLayer& l, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t m, Epilogue e,
                           DType c_type, const void* bias) {
  GemmArgs g;
  g.m = m;
  g.n = l.out;
  g.k = l.in;
  g.trans_b = true;
  g.a = x;
  g.lda = ldx;
  g.b = l.w;
  g.ldb = l.in;
  g.c = y;
  g.ldc = ldy;
  g.bias = bias;
  g.ab_type = opt.dtype;
  g.c_type = c_type;
  g.epilogue = e;
  gemm_gpu(*lt, g, buf.gemm_ws, GemmLt::kWorkspaceBytes, *stream);
}

// The interaction over the feature rows of m samples; returns the top MLP's input and its stride.
const void* DlrmGpu::Impl::interact(int64_t m, int64_t* ld_top_in) {
  const DType dt = opt.dtype;
  switch (cfg.interaction.type) {
    case InteractionType::kDot: {
      DotInteractionArgs a;
      a.feats = buf.feats;
      a.ld_feats = shape.feats_ld;
      a.n = m;
      a.m = 1 + shape.bags;
      a.dim = shape.bottom;
      a.pairs = pair_order(cfg.interaction.pairs);
      a.include_first = cfg.interaction.include_dense;
      a.out = buf.inter;
      a.ld_out = shape.inter_ld;
      a.type = dt;
      dot_interaction(a, *stream);
      *ld_top_in = shape.inter_ld;
      return buf.inter;
    }
    case InteractionType::kOuter: {
      OuterInteractionArgs a;
      a.feats = buf.feats;
      a.ld_feats = shape.feats_ld;
      a.n = m;
      a.width = shape.concat;
      a.prefix = shape.bottom;
      a.pairs = pair_order(cfg.interaction.pairs);
      a.out = buf.inter;
      a.ld_out = shape.inter_ld;
      a.type = dt;
      outer_interaction(a, *stream);
      *ld_top_in = shape.inter_ld;
      return buf.inter;
    }
    case InteractionType::kCat: break;
    case InteractionType::kDcnV2: {
      if (shape.cross_layers == 0) break;
      for (int64_t l = 0; l < shape.cross_layers; ++l) {
        CrossLayerArgs a;
        a.x0 = buf.feats;
        a.ld_x0 = shape.feats_ld;
        a.x_in = l == 0 ? buf.feats : buf.x;
        a.x_out = buf.x;
        a.ld_x = shape.feats_ld;
        a.n = m;
        a.width = shape.concat;
        a.rank = shape.rank;
        a.v = cross_v[static_cast<size_t>(l)];
        a.w = cross_w[static_cast<size_t>(l)];
        a.bias = buf.f32_bias + 1 + l * shape.concat;
        a.t = buf.t;
        a.u = buf.u;
        a.type = dt;
        cross_layer(*lt, a, buf.gemm_ws, GemmLt::kWorkspaceBytes, *stream);
      }
      *ld_top_in = shape.feats_ld;
      return buf.x;
    }
  }
  *ld_top_in = shape.feats_ld;  // cat: the feature row is the interaction
  return buf.feats;
}

// The device part of a pass over m samples whose inputs are in slot k's device buffers, ending
// with fp32 logits in the slot's logits (not waited for). No host work but launches, nothing that
// synchronises or allocates: graph capture records exactly this. With `pooled` (device
// [m, ld_pooled], the bags pooled by their owners) the bags are copied into the feature rows
// instead of gathered here.
void DlrmGpu::Impl::enqueue_pass(int64_t m, int k, const void* pooled, int64_t ld_pooled) {
  const size_t es = dtype_size(opt.dtype);
  cudaStream_t s = *stream;
  const DlrmSlotBuffers& in = slots[static_cast<size_t>(k)].dev;
  // Bottom MLP; its last layer writes columns [0, bottom) of the feature rows.
  if (bottom.empty()) {
    CUDA_CHECK(cudaMemcpy2DAsync(buf.feats, static_cast<size_t>(shape.feats_ld) * es, in.dense,
                                 static_cast<size_t>(shape.dense_ld) * es, static_cast<size_t>(shape.num_dense) * es,
                                 static_cast<size_t>(m), cudaMemcpyDeviceToDevice, s));
  }
  const void* x = in.dense;
  int64_t ldx = shape.dense_ld;
  for (size_t i = 0; i < bottom.size(); ++i) {
    const bool last = i + 1 == bottom.size();
    void* y = last ? buf.feats : buf.act[i % 2];
    const int64_t ldy = last ? shape.feats_ld : bottom[i].out;
    const Epilogue e = (!last || cfg.bottom_final_relu) ? Epilogue::BiasRelu : Epilogue::Bias;
    linear(bottom[i], x, ldx, y, ldy, m, e, opt.dtype, bottom[i].b);
    x = y;
    ldx = ldy;
  }
  if (pooled != nullptr) {
    CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(buf.feats) + static_cast<size_t>(shape.bottom) * es,
                                 static_cast<size_t>(shape.feats_ld) * es, pooled, static_cast<size_t>(ld_pooled) * es,
                                 static_cast<size_t>(shape.concat - shape.bottom) * es, static_cast<size_t>(m),
                                 cudaMemcpyDeviceToDevice, s));
  } else {
    EmbeddingBagsArgs eb;
    eb.bags = bags;
    eb.table_type = opt.dtype;
    eb.offsets = in.offsets;
    eb.indices = in.indices;
    eb.n = m;
    eb.out = buf.feats;
    eb.out_type = opt.dtype;
    eb.ld_out = shape.feats_ld;
    embedding_bags(eb, s);
  }
  size_t first_top = 0;
  if (shape.outer_fused) {
    // The interaction and the first top layer in one kernel: A's tiles are built from the feature
    // rows on the fly (outer_linear.cuh has why).
    const bool last = top.size() == 1;
    OuterLinearArgs a;
    a.feats = buf.feats;
    a.ld_feats = shape.feats_ld;
    a.n = m;
    a.width = shape.concat;
    a.columns = buf.columns;
    a.in = shape.inter_out;
    a.w = top[0].w;
    a.ldw = top[0].in;
    a.bias = last ? buf.f32_bias : buf.f32_bias + 1 + shape.cross_layers * shape.concat;
    a.out = top[0].out;
    a.relu = !last;
    a.y = last ? static_cast<void*>(in.logits) : buf.act[0];
    a.ld_y = last ? 1 : top[0].out;
    a.y_type = last ? DType::F32 : opt.dtype;
    a.type = opt.dtype;
    outer_linear(a, s);
    x = buf.act[0];
    ldx = top[0].out;
    first_top = 1;
  } else {
    x = interact(m, &ldx);
  }
  // Top MLP: hidden layers ping-pong through act, the last writes the fp32 logit.
  for (size_t i = first_top; i < top.size(); ++i) {
    if (i + 1 == top.size()) {
      linear(top[i], x, ldx, in.logits, 1, m, Epilogue::Bias, DType::F32, buf.f32_bias);
    } else {
      linear(top[i], x, ldx, buf.act[i % 2], top[i].out, m, Epilogue::BiasRelu, opt.dtype, top[i].b);
      x = buf.act[i % 2];
      ldx = top[i].out;
    }
  }
}

DlrmGpu::DlrmGpu() = default;

DlrmGpu::~DlrmGpu() {
  // Passes may still be queued (forward_async without wait): let them finish before their buffers
  // go. Destructors never throw, so the statuses are dropped.
  if (impl_) {
    for (Stream* s : {impl_->stream.get(), impl_->h2d.get(), impl_->d2h.get()}) {
      if (s) (void)cudaStreamSynchronize(s->get());
    }
  }
}

const char* outer_fusion_name(OuterFusion f) {
  switch (f) {
    case OuterFusion::kAuto: return "auto";
    case OuterFusion::kOn: return "on";
    case OuterFusion::kOff: return "off";
  }
  return "?";
}

OuterFusion parse_outer_fusion(const std::string& s) {
  if (s == "auto") return OuterFusion::kAuto;
  if (s == "on") return OuterFusion::kOn;
  if (s == "off") return OuterFusion::kOff;
  FLURRY_FAIL("outer fusion '" << s << "' is not auto, on or off");
}

bool DlrmGpu::outer_fused(const DlrmConfig& cfg, const DlrmGpuOptions& options) {
  if (cfg.interaction.type != InteractionType::kOuter || options.outer_fusion == OuterFusion::kOff) return false;
  const bool fits = cfg.concat_width() <= outer_linear_max_width(options.dtype);
  if (options.outer_fusion == OuterFusion::kOn) {
    FLURRY_CHECK(fits, "dlrm gpu: the fused outer interaction holds z of at most " << outer_linear_max_width(options.dtype)
                                                                                  << " values at " << dtype_name(options.dtype)
                                                                                  << ", not " << cfg.concat_width()
                                                                                  << "; use outer fusion off or auto");
    return true;
  }
  // auto: fused where tensor cores make it the cheaper path (the estimate in outer_linear.cuh).
  return fits && options.dtype != DType::F32;
}

size_t DlrmGpu::device_bytes(const DlrmConfig& cfg, const DlrmGpuOptions& options) {
  check_supported(cfg, options);
  return models::table_bytes(dlrm_weight_table(cfg, options.tables.empty() ? nullptr : &options.tables), options.dtype,
                             Arena::kDefaultAlign) +
         dlrm_layout(dlrm_shape(cfg, options), options.dtype, Impl::kSlots, nullptr, nullptr, nullptr) +
         Arena::kDefaultAlign;
}

void DlrmGpu::load(const DlrmConfig& cfg, const Checkpoint& ck, DType dtype) {
  DlrmGpuOptions o;
  o.dtype = dtype;
  load(cfg, ck, o);
}

void DlrmGpu::load(const DlrmConfig& cfg, const Checkpoint& ck, const DlrmGpuOptions& options) {
  wait();
  impl_.reset();
  auto im = std::make_unique<Impl>();
  im->cfg = cfg;
  im->opt = options;
  im->shape = dlrm_shape(cfg, options);
  const size_t need = device_bytes(cfg, options);
  size_t free_b = 0, total_b = 0;
  device_memory_info(&free_b, &total_b);
  const size_t margin = std::max<size_t>(size_t{512} << 20, total_b / 50);  // context, cuBLASLt plans
  const size_t avail = free_b > margin ? free_b - margin : 0;
  const size_t limit = options.max_gpu_memory > 0 ? std::min(options.max_gpu_memory, avail) : avail;
  FLURRY_CHECK(need <= limit, "dlrm gpu: " << dtype_name(options.dtype) << " weights and buffers for "
                                           << options.max_batch << " samples need " << format_bytes(need)
                                           << " of device memory but " << format_bytes(limit)
                                           << " is available; " << kLowerHint);
  im->bytes = need;
  im->arena = std::make_unique<Arena>(need, Where::Device, "dlrm gpu arena");
  im->arena->set_oom_hint(kLowerHint);
  GemmLt::Options lo;
  lo.allow_tf32 = options.allow_tf32;
  im->lt = std::make_unique<GemmLt>(lo);
  im->stream = std::make_unique<Stream>();
  im->h2d = std::make_unique<Stream>();
  im->d2h = std::make_unique<Stream>();
  DlrmSlotBuffers slot_bufs[Impl::kSlots];
  dlrm_layout(im->shape, options.dtype, Impl::kSlots, im->arena.get(), &im->buf, slot_bufs);
  im->upload(ck);
  const DlrmShape& s = im->shape;
  const size_t es = dtype_size(options.dtype), B = static_cast<size_t>(s.max_batch);
  for (int k = 0; k < Impl::kSlots; ++k) {
    DlrmSlot& sl = im->slots[static_cast<size_t>(k)];
    sl.dev = slot_bufs[k];
    // Rows a padded pass reads but no batch wrote hold zeros, never stale bit patterns.
    CUDA_CHECK(cudaMemset(sl.dev.dense, 0, B * static_cast<size_t>(s.dense_ld) * es));
    sl.p_dense = PinnedBuffer(B * static_cast<size_t>(s.dense_ld) * es);
    std::memset(sl.p_dense.data(), 0, sl.p_dense.size());  // padding columns stay zero
    sl.p_offsets = PinnedBuffer((static_cast<size_t>(s.bags) * B + 1) * sizeof(int32_t));
    sl.p_indices = PinnedBuffer(static_cast<size_t>(s.max_indices) * sizeof(int32_t));
    sl.p_logits = PinnedBuffer(B * sizeof(float));
  }
  im->p_top_scores = PinnedBuffer(B * kTopKMax * sizeof(float));
  im->p_top_index = PinnedBuffer(B * kTopKMax * sizeof(int32_t));
  im->p_mask = PinnedBuffer(B);
  im->timers = timers_;
  LOG_INFO("dlrm gpu: " << dtype_name(options.dtype) << ", " << interaction_name(cfg.interaction.type)
                        << " interaction" << (s.outer_fused ? " (fused into the first top layer)" : "") << ", "
                        << format_bytes(need) << " of device memory for " << s.max_batch << " samples per pass"
                        << (options.use_graphs ? ", CUDA graphs" : ""));
  impl_ = std::move(im);
}

}  // namespace flurry::dlrm
