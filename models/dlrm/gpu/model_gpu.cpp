// DlrmGpu: the weight table uploaded into one device arena, the pass buffers carved from the same
// arena, pinned staging on the host, and a pass = staging, copies, launches on one stream.
#include "models/dlrm/gpu/model_gpu.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/dlrm/embedding_bag.cuh"
#include "kernels/dlrm/interaction.cuh"
#include "kernels/dlrm/topk.cuh"
#include "models/common/gpu/weight_upload.h"
#include "models/common/weight_table.h"
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

// The widths and row strides of a pass, from the config and options alone, so that sizing and
// running cannot disagree. Row strides are padded to 8 elements (16 bytes at f16) so every row
// a GEMM or a vector access starts at is aligned.
struct Shape {
  int64_t max_batch = 0, max_indices = 0;
  int64_t num_dense = 0, dense_ld = 0, bags = 0;
  int64_t bottom = 0, concat = 0, feats_ld = 0;
  int64_t inter_out = 0, inter_ld = 0;  // inter_ld > 0: dot and outer write a separate buffer
  int64_t act_width = 1;                // the widest hidden MLP layer
  int64_t cross_layers = 0, rank = 0;
};

Shape shape_of(const DlrmConfig& c, const DlrmGpuOptions& o) {
  Shape s;
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
  return s;
}

// The device buffers of a pass (arena views).
struct Buffers {
  void* dense = nullptr;      // [B, dense_ld] model dtype
  int32_t* offsets = nullptr; // [bags * B + 1]
  int32_t* indices = nullptr; // [max_indices]
  void* act[2] = {nullptr, nullptr};  // [B, act_width] ping-pong for hidden MLP layers
  void* feats = nullptr;      // [B, feats_ld]: [bottom | bag_0 | ...]
  void* inter = nullptr;      // [B, inter_ld] (dot, outer)
  void* x = nullptr;          // [B, feats_ld] (dcnv2: the cross layers' running x)
  void* t = nullptr;          // [B, rank] (dcnv2)
  float* u = nullptr;         // [B, concat] fp32 (dcnv2)
  float* logits = nullptr;    // [B]
  float* top_scores = nullptr;   // [B, kTopKMax]
  int32_t* top_index = nullptr;  // [B, kTopKMax]
  uint8_t* mask = nullptr;    // [B]
  float* f32_bias = nullptr;  // top MLP's last bias, then each cross layer's bias [concat]
  void* gemm_ws = nullptr;
};

// Sums (arena == nullptr) or allocates (arena given) the buffers of a pass, in one order.
size_t layout(const Shape& s, DType dt, Arena* arena, Buffers* b) {
  size_t total = 0;
  auto take = [&](size_t bytes, const char* what) -> void* {
    bytes = std::max<size_t>(bytes, 1);
    total += (bytes + Arena::kDefaultAlign - 1) / Arena::kDefaultAlign * Arena::kDefaultAlign;
    return arena ? arena->alloc(bytes, what) : nullptr;
  };
  const size_t es = dtype_size(dt), B = static_cast<size_t>(s.max_batch);
  const size_t f4 = sizeof(float);
  Buffers v;
  v.dense = take(B * static_cast<size_t>(s.dense_ld) * es, "dlrm dense");
  v.offsets = static_cast<int32_t*>(take((static_cast<size_t>(s.bags) * B + 1) * sizeof(int32_t), "dlrm offsets"));
  v.indices = static_cast<int32_t*>(take(static_cast<size_t>(s.max_indices) * sizeof(int32_t), "dlrm indices"));
  v.act[0] = take(B * static_cast<size_t>(s.act_width) * es, "dlrm activations");
  v.act[1] = take(B * static_cast<size_t>(s.act_width) * es, "dlrm activations");
  v.feats = take(B * static_cast<size_t>(s.feats_ld) * es, "dlrm feature rows");
  if (s.inter_ld > 0) v.inter = take(B * static_cast<size_t>(s.inter_ld) * es, "dlrm interaction");
  if (s.cross_layers > 0) {
    v.x = take(B * static_cast<size_t>(s.feats_ld) * es, "dlrm cross x");
    v.t = take(B * static_cast<size_t>(s.rank) * es, "dlrm cross rank");
    v.u = static_cast<float*>(take(B * static_cast<size_t>(s.concat) * f4, "dlrm cross term"));
  }
  v.logits = static_cast<float*>(take(B * f4, "dlrm logits"));
  v.top_scores = static_cast<float*>(take(B * kTopKMax * f4, "dlrm top-k scores"));
  v.top_index = static_cast<int32_t*>(take(B * kTopKMax * sizeof(int32_t), "dlrm top-k index"));
  v.mask = static_cast<uint8_t*>(take(B, "dlrm candidate mask"));
  v.f32_bias = static_cast<float*>(take((1 + static_cast<size_t>(s.cross_layers * s.concat)) * f4, "dlrm f32 biases"));
  v.gemm_ws = take(GemmLt::kWorkspaceBytes, "dlrm gemm workspace");
  if (b) *b = v;
  return total;
}

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

struct Layer {
  const void* w = nullptr;  // [out, in]
  const void* b = nullptr;  // [out]
  int64_t in = 0, out = 0;
};

}  // namespace

struct DlrmGpu::Impl {
  DlrmConfig cfg;
  DlrmGpuOptions opt;
  Shape shape;
  size_t bytes = 0;
  std::unique_ptr<Arena> arena;
  std::unique_ptr<GemmLt> lt;
  std::unique_ptr<Stream> stream;
  Buffers buf;
  std::vector<Layer> bottom, top;
  std::vector<EmbeddingBagSpec> bags;
  std::vector<int64_t> bag_rows;  // rows of each bag's table (index validation)
  std::vector<const void*> cross_v, cross_w;
  // Pinned staging.
  PinnedBuffer p_dense, p_offsets, p_indices, p_logits, p_top_scores, p_top_index, p_mask;
  StageTimers* timers = nullptr;
  bool all_tables = true;  // false on a rank of a table-sharded run

  void upload(const Checkpoint& ck);
  void check_batch(const DlrmBatch& b) const;
  int64_t indices_in(const DlrmBatch& b, int64_t s0, int64_t s1) const;
  int64_t fit_end(const DlrmBatch& b, int64_t s0, int64_t limit, int64_t unit) const;
  int64_t stage(const DlrmBatch& b, int64_t s0, int64_t s1);
  void run_pass(int64_t m, int64_t nidx, const void* pooled = nullptr, int64_t ld_pooled = 0);
  void linear(const Layer& l, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t m, Epilogue e,
              DType c_type, const void* bias);
  const void* interact(int64_t m, int64_t* ld_top_in);
};

void DlrmGpu::Impl::upload(const Checkpoint& ck) {
  const models::WeightTable table = dlrm_weight_table(cfg, opt.tables.empty() ? nullptr : &opt.tables);
  models::validate_checkpoint(table, ck);
  const models::DeviceWeights w = models::upload_weights(table, ck, opt.dtype, *arena, *stream);
  auto mlp = [&](const std::string& prefix, const std::vector<int64_t>& widths, int64_t in) {
    std::vector<Layer> out;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string k = prefix + "." + std::to_string(i);
      out.push_back(Layer{w.get(k + ".weight"), w.get(k + ".bias"), in, widths[i]});
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
  std::vector<float> f32(1 + static_cast<size_t>(shape.cross_layers * shape.concat));
  const std::string last = "top_mlp." + std::to_string(cfg.top_mlp.size() - 1) + ".bias";
  models::read_group(table, ck, table.group(last), 0, 1, DType::F32, f32.data());
  for (int64_t l = 0; l < shape.cross_layers; ++l) {
    const std::string p = "interaction.cross." + std::to_string(l);
    cross_v.push_back(w.get(p + ".V"));
    cross_w.push_back(w.get(p + ".W"));
    models::read_group(table, ck, table.group(p + ".bias"), 0, shape.concat, DType::F32,
                       f32.data() + 1 + l * shape.concat);
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

// Samples [s0, s1) into the pinned buffers: dense rows converted to the model dtype (the padding
// columns stay zero from load), each bag's offsets rebased onto the indices packed bag after bag.
int64_t DlrmGpu::Impl::stage(const DlrmBatch& b, int64_t s0, int64_t s1) {
  ScopedStage st(timers, "dlrm_stage");
  const int64_t m = s1 - s0, n = b.n;
  const size_t es = dtype_size(opt.dtype);
  char* dense = p_dense.as<char>();
  for (int64_t i = 0; i < m; ++i) {
    convert_from_f32(b.dense.data() + (s0 + i) * shape.num_dense, dense + static_cast<size_t>(i * shape.dense_ld) * es,
                     static_cast<size_t>(shape.num_dense), opt.dtype);
  }
  int32_t* off = p_offsets.as<int32_t>();
  int32_t* idx = p_indices.as<int32_t>();
  int32_t pos = 0;
  for (int64_t bi = 0; bi < shape.bags; ++bi) {
    const int32_t* src = b.offsets.data() + bi * n;
    const int32_t base = src[s0];
    for (int64_t i = 0; i < m; ++i) off[bi * m + i] = pos + (src[s0 + i] - base);
    const int32_t len = src[s1] - base;
    if (len > 0) std::memcpy(idx + pos, b.indices.data() + base, static_cast<size_t>(len) * sizeof(int32_t));
    pos += len;
  }
  off[shape.bags * m] = pos;
  return pos;
}

void DlrmGpu::Impl::linear(const Layer& l, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t m, Epilogue e,
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

// One pass over the m staged samples, ending with fp32 logits in buf.logits (not waited for).
// With `pooled` (device [m, ld_pooled], the bags pooled by their owners) the bags are copied into
// the feature rows instead of gathered here.
void DlrmGpu::Impl::run_pass(int64_t m, int64_t nidx, const void* pooled, int64_t ld_pooled) {
  const size_t es = dtype_size(opt.dtype);
  cudaStream_t s = *stream;
  CUDA_CHECK(cudaMemcpyAsync(buf.dense, p_dense.data(), static_cast<size_t>(m * shape.dense_ld) * es,
                             cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaMemcpyAsync(buf.offsets, p_offsets.data(), static_cast<size_t>(shape.bags * m + 1) * sizeof(int32_t),
                             cudaMemcpyHostToDevice, s));
  if (nidx > 0) {
    CUDA_CHECK(cudaMemcpyAsync(buf.indices, p_indices.data(), static_cast<size_t>(nidx) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, s));
  }
  // Bottom MLP; its last layer writes columns [0, bottom) of the feature rows.
  if (bottom.empty()) {
    CUDA_CHECK(cudaMemcpy2DAsync(buf.feats, static_cast<size_t>(shape.feats_ld) * es, buf.dense,
                                 static_cast<size_t>(shape.dense_ld) * es, static_cast<size_t>(shape.num_dense) * es,
                                 static_cast<size_t>(m), cudaMemcpyDeviceToDevice, s));
  }
  const void* x = buf.dense;
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
    eb.offsets = buf.offsets;
    eb.indices = buf.indices;
    eb.n = m;
    eb.out = buf.feats;
    eb.out_type = opt.dtype;
    eb.ld_out = shape.feats_ld;
    embedding_bags(eb, s);
  }
  x = interact(m, &ldx);
  // Top MLP: hidden layers ping-pong through act, the last writes the fp32 logit.
  for (size_t i = 0; i < top.size(); ++i) {
    if (i + 1 == top.size()) {
      linear(top[i], x, ldx, buf.logits, 1, m, Epilogue::Bias, DType::F32, buf.f32_bias);
    } else {
      linear(top[i], x, ldx, buf.act[i % 2], top[i].out, m, Epilogue::BiasRelu, opt.dtype, top[i].b);
      x = buf.act[i % 2];
      ldx = top[i].out;
    }
  }
}

DlrmGpu::DlrmGpu() = default;
DlrmGpu::~DlrmGpu() = default;

size_t DlrmGpu::device_bytes(const DlrmConfig& cfg, const DlrmGpuOptions& options) {
  check_supported(cfg, options);
  return models::table_bytes(dlrm_weight_table(cfg, options.tables.empty() ? nullptr : &options.tables), options.dtype,
                             Arena::kDefaultAlign) +
         layout(shape_of(cfg, options), options.dtype, nullptr, nullptr) + Arena::kDefaultAlign;
}

void DlrmGpu::load(const DlrmConfig& cfg, const Checkpoint& ck, DType dtype) {
  DlrmGpuOptions o;
  o.dtype = dtype;
  load(cfg, ck, o);
}

void DlrmGpu::load(const DlrmConfig& cfg, const Checkpoint& ck, const DlrmGpuOptions& options) {
  impl_.reset();
  auto im = std::make_unique<Impl>();
  im->cfg = cfg;
  im->opt = options;
  im->shape = shape_of(cfg, options);
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
  layout(im->shape, options.dtype, im->arena.get(), &im->buf);
  im->upload(ck);
  const Shape& s = im->shape;
  const size_t es = dtype_size(options.dtype), B = static_cast<size_t>(s.max_batch);
  im->p_dense = PinnedBuffer(B * static_cast<size_t>(s.dense_ld) * es);
  std::memset(im->p_dense.data(), 0, im->p_dense.size());  // padding columns stay zero
  im->p_offsets = PinnedBuffer((static_cast<size_t>(s.bags) * B + 1) * sizeof(int32_t));
  im->p_indices = PinnedBuffer(static_cast<size_t>(s.max_indices) * sizeof(int32_t));
  im->p_logits = PinnedBuffer(B * sizeof(float));
  im->p_top_scores = PinnedBuffer(B * kTopKMax * sizeof(float));
  im->p_top_index = PinnedBuffer(B * kTopKMax * sizeof(int32_t));
  im->p_mask = PinnedBuffer(B);
  im->timers = timers_;
  LOG_INFO("dlrm gpu: " << dtype_name(options.dtype) << ", " << interaction_name(cfg.interaction.type)
                        << " interaction, " << format_bytes(need) << " of device memory for " << s.max_batch
                        << " samples per pass");
  impl_ = std::move(im);
}

void DlrmGpu::forward(const DlrmBatch& batch, float* host_logits) {
  FLURRY_CHECK(impl_, "dlrm gpu: forward before load");
  Impl& im = *impl_;
  FLURRY_CHECK(im.all_tables, "dlrm gpu: forward on a model holding only some tables (table-sharded): use forward_pooled");
  im.check_batch(batch);
  for (int64_t s0 = 0; s0 < batch.n;) {
    const int64_t s1 = im.fit_end(batch, s0, std::min(batch.n, s0 + im.shape.max_batch), 1);
    const int64_t nidx = im.stage(batch, s0, s1);
    ScopedStage st(im.timers, "dlrm_gpu");
    im.run_pass(s1 - s0, nidx);
    CUDA_CHECK(cudaMemcpyAsync(im.p_logits.data(), im.buf.logits, static_cast<size_t>(s1 - s0) * sizeof(float),
                               cudaMemcpyDeviceToHost, *im.stream));
    im.stream->synchronize();
    std::memcpy(host_logits + s0, im.p_logits.data(), static_cast<size_t>(s1 - s0) * sizeof(float));
    s0 = s1;
  }
}

void DlrmGpu::recommend(const DlrmBatch& batch, int64_t customers, int64_t candidates, const uint8_t* valid, int k,
                        float* top_logits, int32_t* top_index) {
  FLURRY_CHECK(impl_, "dlrm gpu: recommend before load");
  Impl& im = *impl_;
  FLURRY_CHECK(im.all_tables, "dlrm gpu: recommend on a model holding only some tables (table-sharded)");
  FLURRY_CHECK(k >= 1 && k <= kTopKMax, "dlrm gpu: top-k of " << k << " (1.." << kTopKMax << ")");
  FLURRY_CHECK(customers >= 0 && candidates >= 1 && batch.n == customers * candidates,
               "dlrm gpu: a batch of " << batch.n << " samples is not " << customers << " customers x " << candidates
                                       << " candidates");
  FLURRY_CHECK(candidates <= im.shape.max_batch,
               "dlrm gpu: " << candidates << " candidates per customer exceed the " << im.shape.max_batch
                            << " samples of a pass; raise --batch-size");
  im.check_batch(batch);
  for (int64_t s0 = 0; s0 < batch.n;) {
    const int64_t limit = std::min(batch.n, s0 + im.shape.max_batch / candidates * candidates);
    const int64_t s1 = im.fit_end(batch, s0, limit, candidates);
    const int64_t m = s1 - s0, rows = m / candidates;
    const int64_t nidx = im.stage(batch, s0, s1);
    ScopedStage st(im.timers, "dlrm_gpu");
    im.run_pass(m, nidx);
    if (valid) {
      std::memcpy(im.p_mask.data(), valid + s0, static_cast<size_t>(m));
      CUDA_CHECK(cudaMemcpyAsync(im.buf.mask, im.p_mask.data(), static_cast<size_t>(m), cudaMemcpyHostToDevice,
                                 *im.stream));
    }
    TopKArgs a;
    a.scores = im.buf.logits;
    a.ld_scores = candidates;
    a.mask = valid ? im.buf.mask : nullptr;
    a.ld_mask = candidates;
    a.rows = rows;
    a.cols = candidates;
    a.k = k;
    a.out_scores = im.buf.top_scores;
    a.out_index = im.buf.top_index;
    topk_rows(a, *im.stream);
    const size_t nk = static_cast<size_t>(rows) * static_cast<size_t>(k);
    CUDA_CHECK(cudaMemcpyAsync(im.p_top_scores.data(), im.buf.top_scores, nk * sizeof(float), cudaMemcpyDeviceToHost,
                               *im.stream));
    CUDA_CHECK(cudaMemcpyAsync(im.p_top_index.data(), im.buf.top_index, nk * sizeof(int32_t), cudaMemcpyDeviceToHost,
                               *im.stream));
    im.stream->synchronize();
    const size_t at = static_cast<size_t>(s0 / candidates) * static_cast<size_t>(k);
    std::memcpy(top_logits + at, im.p_top_scores.data(), nk * sizeof(float));
    std::memcpy(top_index + at, im.p_top_index.data(), nk * sizeof(int32_t));
    s0 = s1;
  }
}

void DlrmGpu::pool_bag(int64_t bag, const int32_t* offsets, const int32_t* indices, int64_t n, void* device_out,
                       int64_t ld_out) {
  FLURRY_CHECK(impl_, "dlrm gpu: pool_bag before load");
  Impl& im = *impl_;
  FLURRY_CHECK(bag >= 0 && bag < im.shape.bags, "dlrm gpu: bag " << bag << " of " << im.shape.bags);
  const EmbeddingBagSpec& spec = im.bags[static_cast<size_t>(bag)];
  const int64_t rows = im.bag_rows[static_cast<size_t>(bag)];
  FLURRY_CHECK(spec.table != nullptr, "dlrm gpu: bag '" << im.cfg.bags[static_cast<size_t>(bag)].name
                                                         << "': its table is not held by this rank");
  const size_t es = dtype_size(im.opt.dtype);
  // Passes of at most max_batch samples and max_indices indices through the pass's own staging
  // and offsets/indices buffers (the pass buffers are free between passes: one stream).
  for (int64_t s0 = 0; s0 < n;) {
    int64_t s1 = std::min(n, s0 + im.shape.max_batch);
    while (s1 > s0 + 1 && offsets[s1] - offsets[s0] > im.shape.max_indices) s1 = s0 + (s1 - s0) / 2;
    const int32_t base = offsets[s0], nidx = offsets[s1] - base;
    FLURRY_CHECK(nidx <= im.shape.max_indices, "dlrm gpu: one sample holds " << nidx << " indices, more than the "
                                                                             << im.shape.max_indices << " of a pass");
    im.stream->synchronize();  // the pinned staging may still feed an earlier copy
    int32_t* off = im.p_offsets.as<int32_t>();
    int32_t* idx = im.p_indices.as<int32_t>();
    for (int64_t i = 0; i <= s1 - s0; ++i) off[i] = offsets[s0 + i] - base;
    for (int32_t k = 0; k < nidx; ++k) {
      const int32_t r = indices[base + k];
      FLURRY_CHECK(r >= 0 && r < rows, "dlrm gpu: embedding index " << r << " outside the table's " << rows << " rows");
      idx[k] = r;
    }
    CUDA_CHECK(cudaMemcpyAsync(im.buf.offsets, off, static_cast<size_t>(s1 - s0 + 1) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, *im.stream));
    if (nidx > 0) {
      CUDA_CHECK(cudaMemcpyAsync(im.buf.indices, idx, static_cast<size_t>(nidx) * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, *im.stream));
    }
    EmbeddingBagsArgs eb;
    eb.bags = {EmbeddingBagSpec{spec.table, spec.dim, 0, spec.pooling}};
    eb.table_type = im.opt.dtype;
    eb.offsets = im.buf.offsets;
    eb.indices = im.buf.indices;
    eb.n = s1 - s0;
    eb.out = static_cast<char*>(device_out) + static_cast<size_t>(s0 * ld_out) * es;
    eb.out_type = im.opt.dtype;
    eb.ld_out = ld_out;
    embedding_bags(eb, *im.stream);
    s0 = s1;
  }
}

void DlrmGpu::forward_pooled(const DlrmBatch& batch, const void* device_pooled, int64_t ld_pooled, float* host_logits) {
  FLURRY_CHECK(impl_, "dlrm gpu: forward_pooled before load");
  Impl& im = *impl_;
  const int64_t n = batch.n;
  if (n == 0) return;
  FLURRY_CHECK(static_cast<int64_t>(batch.dense.size()) == n * im.shape.num_dense,
               "dlrm gpu: a batch of " << n << " samples has " << batch.dense.size() << " dense values");
  FLURRY_CHECK(ld_pooled >= im.shape.concat - im.shape.bottom, "dlrm gpu: pooled rows of stride " << ld_pooled);
  const size_t es = dtype_size(im.opt.dtype);
  // Dense rows only: the bags come pooled. The pinned staging may still feed pool_bag's copies.
  im.stream->synchronize();
  DlrmBatch dense_only;
  for (int64_t s0 = 0; s0 < n;) {
    const int64_t s1 = std::min(n, s0 + im.shape.max_batch), m = s1 - s0;
    dense_only.n = m;
    dense_only.dense.assign(batch.dense.begin() + s0 * im.shape.num_dense, batch.dense.begin() + s1 * im.shape.num_dense);
    dense_only.offsets.assign(static_cast<size_t>(im.shape.bags * m + 1), 0);
    dense_only.indices.clear();
    im.stage(dense_only, 0, m);
    ScopedStage st(im.timers, "dlrm_gpu");
    im.run_pass(m, 0, static_cast<const char*>(device_pooled) + static_cast<size_t>(s0 * ld_pooled) * es, ld_pooled);
    CUDA_CHECK(cudaMemcpyAsync(im.p_logits.data(), im.buf.logits, static_cast<size_t>(m) * sizeof(float),
                               cudaMemcpyDeviceToHost, *im.stream));
    im.stream->synchronize();
    std::memcpy(host_logits + s0, im.p_logits.data(), static_cast<size_t>(m) * sizeof(float));
    s0 = s1;
  }
}

void* DlrmGpu::stream() const {
  FLURRY_CHECK(impl_, "dlrm gpu: not loaded");
  return static_cast<void*>(impl_->stream->get());
}

bool DlrmGpu::loaded() const { return impl_ != nullptr; }

const DlrmConfig& DlrmGpu::config() const {
  FLURRY_CHECK(impl_, "dlrm gpu: not loaded");
  return impl_->cfg;
}

const DlrmGpuOptions& DlrmGpu::options() const {
  FLURRY_CHECK(impl_, "dlrm gpu: not loaded");
  return impl_->opt;
}

size_t DlrmGpu::device_bytes() const { return impl_ ? impl_->bytes : 0; }

void DlrmGpu::set_timers(StageTimers* timers) {
  timers_ = timers;
  if (impl_) impl_->timers = timers;
}

}  // namespace flurry::dlrm
