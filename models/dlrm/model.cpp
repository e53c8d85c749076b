#include "models/dlrm/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "models/common/layers.h"
#include "runtime/check.h"
#include "runtime/gemm.h"

namespace flurry::dlrm {

namespace {

void add_mlp(models::WeightTable& t, const std::string& prefix, int64_t in, const std::vector<int64_t>& widths) {
  for (size_t i = 0; i < widths.size(); ++i) {
    const std::string p = prefix + "." + std::to_string(i);
    t.add(p + ".weight", p + ".weight", {widths[i], in}, models::WeightInit::fan_in(1.4f));
    t.add(p + ".bias", p + ".bias", {widths[i]}, models::WeightInit::uniform(-0.05f, 0.05f));
    in = widths[i];
  }
}

std::vector<models::LinearW> bind_mlp(const models::WeightTable& t, const Checkpoint& ck, const std::string& prefix,
                                      size_t layers) {
  std::vector<models::LinearW> out;
  for (size_t i = 0; i < layers; ++i) out.push_back(models::bind_linear(t, ck, prefix + "." + std::to_string(i)));
  return out;
}

// Runs an MLP from `x` [n, in]; returns the buffer holding the output (a or b).
const float* run_mlp(const std::vector<models::LinearW>& layers, bool final_relu, const float* x, int64_t n,
                     std::vector<float>& a, std::vector<float>& b) {
  const float* cur = x;
  for (size_t i = 0; i < layers.size(); ++i) {
    const models::LinearW& l = layers[i];
    std::vector<float>& dst = (cur == a.data()) ? b : a;
    dst.resize(static_cast<size_t>(n * l.out));
    const bool relu = i + 1 < layers.size() || final_relu;
    models::linear(l, cur, dst.data(), n, relu ? Epilogue::BiasRelu : Epilogue::Bias);
    cur = dst.data();
  }
  return cur;
}

}  // namespace

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

models::WeightTable dlrm_weight_table(const DlrmConfig& c, const std::vector<bool>* tables) {
  FLURRY_CHECK(!tables || tables->size() == c.tables.size(),
               "table flags for " << (tables ? tables->size() : 0) << " tables, the model has " << c.tables.size());
  models::WeightTable t;
  for (size_t i = 0; i < c.tables.size(); ++i) {
    if (tables && !(*tables)[i]) continue;
    const TableConfig& tc = c.tables[i];
    const float r = 1.0f / std::sqrt(static_cast<float>(tc.rows));
    t.add("embeddings." + tc.name, "embeddings." + tc.name + ".weight", {tc.rows, tc.dim},
          models::WeightInit::uniform(-std::max(r, 0.01f), std::max(r, 0.01f)));
  }
  add_mlp(t, "bottom_mlp", c.num_dense(), c.bottom_mlp);
  if (c.interaction.type == InteractionType::kDcnV2) {
    const int64_t n = c.concat_width(), r = c.interaction.rank;
    for (int64_t l = 0; l < c.interaction.layers; ++l) {
      const std::string p = "interaction.cross." + std::to_string(l);
      t.add(p + ".V", p + ".V", {r, n}, models::WeightInit::fan_in(1.0f));
      t.add(p + ".W", p + ".W", {n, r}, models::WeightInit::fan_in(0.5f));
      t.add(p + ".bias", p + ".bias", {n}, models::WeightInit::uniform(-0.05f, 0.05f));
    }
  }
  add_mlp(t, "top_mlp", c.interaction_out(), c.top_mlp);
  return t;
}

DlrmModel load_dlrm_cpu(const DlrmConfig& cfg, const Checkpoint& ck) {
  return load_dlrm_cpu(cfg, ck, std::vector<bool>(cfg.tables.size(), true));
}

DlrmModel load_dlrm_cpu(const DlrmConfig& cfg, const Checkpoint& ck, const std::vector<bool>& tables) {
  const models::WeightTable t = dlrm_weight_table(cfg, &tables);
  models::validate_checkpoint(t, ck);
  DlrmModel m;
  m.cfg = cfg;
  m.tables.resize(cfg.tables.size());
  for (size_t i = 0; i < cfg.tables.size(); ++i) {
    if (tables[i]) m.tables[i] = models::bind_f32(t, ck, "embeddings." + cfg.tables[i].name);
  }
  m.bottom = bind_mlp(t, ck, "bottom_mlp", cfg.bottom_mlp.size());
  m.top = bind_mlp(t, ck, "top_mlp", cfg.top_mlp.size());
  for (int64_t l = 0; l < cfg.interaction.layers; ++l) {
    const std::string p = "interaction.cross." + std::to_string(l);
    m.cross.push_back(DlrmModel::Cross{models::bind_f32(t, ck, p + ".V"), models::bind_f32(t, ck, p + ".W"),
                                       models::bind_f32(t, ck, p + ".bias")});
  }
  return m;
}

bool table_bound(const DlrmModel& m, int table) {
  const TableConfig& t = m.cfg.tables[static_cast<size_t>(table)];
  return static_cast<int64_t>(m.tables[static_cast<size_t>(table)].size()) == t.rows * t.dim;
}

void embedding_bag_ref(const float* table, int64_t rows, int64_t dim, const int32_t* offsets, const int32_t* indices,
                       int64_t n, Pooling pooling, float* out, int64_t ld_out) {
  for (int64_t i = 0; i < n; ++i) {
    float* o = out + i * ld_out;
    std::fill(o, o + dim, 0.0f);
    const int32_t b = offsets[i], e = offsets[i + 1];
    for (int32_t k = b; k < e; ++k) {
      const int32_t r = indices[k];
      FLURRY_CHECK(r >= 0 && r < rows, "embedding index " << r << " outside the table's " << rows << " rows");
      const float* row = table + static_cast<int64_t>(r) * dim;
      for (int64_t d = 0; d < dim; ++d) o[d] += row[d];
    }
    if (pooling == Pooling::kMean && e > b) {
      const float inv = 1.0f / static_cast<float>(e - b);
      for (int64_t d = 0; d < dim; ++d) o[d] *= inv;
    }
  }
}

void interaction_ref(const DlrmConfig& c, const float* feats, int64_t ld_feats, int64_t n, float* out) {
  const int64_t width = c.interaction_out();
  const int64_t bottom = c.bottom_out();
  const int64_t concat = c.concat_width();
  switch (c.interaction.type) {
    case InteractionType::kDot: {
      const int64_t vecs = 1 + c.num_bags(), d = bottom;
      const auto pairs = interaction_pairs(c.interaction.pairs, vecs);
      for (int64_t s = 0; s < n; ++s) {
        const float* f = feats + s * ld_feats;
        float* o = out + s * width;
        if (c.interaction.include_dense) {
          std::copy(f, f + bottom, o);
          o += bottom;
        }
        for (const auto& [i, j] : pairs) {
          const float* x = f + i * d;
          const float* y = f + j * d;
          float acc = 0;
          for (int64_t k = 0; k < d; ++k) acc += x[k] * y[k];
          *o++ = acc;
        }
      }
      return;
    }
    case InteractionType::kOuter: {
      const auto pairs = interaction_pairs(c.interaction.pairs, concat);
      for (int64_t s = 0; s < n; ++s) {
        const float* z = feats + s * ld_feats;
        float* o = out + s * width;
        std::copy(z, z + bottom, o);
        o += bottom;
        for (const auto& [i, j] : pairs) *o++ = z[i] * z[j];
      }
      return;
    }
    case InteractionType::kCat:
    case InteractionType::kDcnV2:
      for (int64_t s = 0; s < n; ++s) std::copy(feats + s * ld_feats, feats + s * ld_feats + concat, out + s * width);
      return;
  }
}

void cross_layer_ref(const DlrmModel::Cross& l, const float* x0, float* x, int64_t n, int64_t width, int64_t rank,
                     float* scratch_rank) {
  // t = x V^T [n, rank]; u = t W^T [n, width]; x = x0 * (u + b) + x.
  linear_cpu(x, l.v.data(), nullptr, scratch_rank, n, width, rank);
  std::vector<float> u(static_cast<size_t>(n * width));
  linear_cpu(scratch_rank, l.w.data(), l.b.data(), u.data(), n, rank, width, Epilogue::Bias);
  for (int64_t i = 0; i < n * width; ++i) x[i] = x0[i] * u[static_cast<size_t>(i)] + x[i];
}

namespace {

void check_batch(const DlrmConfig& c, const DlrmBatch& batch) {
  const int64_t n = batch.n;
  FLURRY_CHECK(static_cast<int64_t>(batch.dense.size()) == n * c.num_dense() &&
                   static_cast<int64_t>(batch.offsets.size()) == c.num_bags() * n + 1,
               "a DLRM batch of " << n << " samples has " << batch.dense.size() << " dense values and "
                                  << batch.offsets.size() << " offsets (the model needs " << c.num_dense()
                                  << " dense features and " << c.num_bags() << " bags)");
}

// The bottom MLP into the first bottom_out columns of s.feats [n, concat_width].
void bottom_into_feats(const DlrmModel& m, const DlrmBatch& batch, DlrmScratch& s) {
  const DlrmConfig& c = m.cfg;
  const int64_t n = batch.n, concat = c.concat_width(), bottom = c.bottom_out();
  s.feats.resize(static_cast<size_t>(n * concat));
  const float* bot = run_mlp(m.bottom, c.bottom_final_relu, batch.dense.data(), n, s.a, s.b);
  for (int64_t i = 0; i < n; ++i) std::copy(bot + i * bottom, bot + (i + 1) * bottom, s.feats.data() + i * concat);
}

// Interaction (and cross layers) over the filled s.feats, then the top MLP into logits.
void interact_and_top(const DlrmModel& m, int64_t n, DlrmScratch& s, float* logits) {
  const DlrmConfig& c = m.cfg;
  const int64_t concat = c.concat_width();
  const int64_t width = c.interaction_out();
  s.inter.resize(static_cast<size_t>(n * width));
  interaction_ref(c, s.feats.data(), concat, n, s.inter.data());
  if (c.interaction.type == InteractionType::kDcnV2) {
    s.rank.resize(static_cast<size_t>(n * c.interaction.rank));
    for (const DlrmModel::Cross& l : m.cross) {
      cross_layer_ref(l, s.feats.data(), s.inter.data(), n, width, c.interaction.rank, s.rank.data());
    }
  }
  const float* top = run_mlp(m.top, false, s.inter.data(), n, s.a, s.b);
  std::copy(top, top + n, logits);
}

}  // namespace

void dlrm_forward(const DlrmModel& m, const DlrmBatch& batch, DlrmScratch& s, float* logits) {
  const DlrmConfig& c = m.cfg;
  const int64_t n = batch.n;
  if (n == 0) return;
  check_batch(c, batch);
  const int64_t concat = c.concat_width();
  bottom_into_feats(m, batch, s);
  int64_t col = c.bottom_out();
  for (int64_t b = 0; b < c.num_bags(); ++b) {
    const BagConfig& bag = c.bags[static_cast<size_t>(b)];
    const TableConfig& t = c.tables[static_cast<size_t>(bag.table)];
    FLURRY_CHECK(table_bound(m, bag.table), "table '" << t.name << "' is not loaded on this rank (a sharded model "
                                                      << "pools it on its owner: use dlrm_forward_pooled)");
    embedding_bag_ref(m.tables[static_cast<size_t>(bag.table)].data(), t.rows, t.dim, batch.offsets.data() + b * n,
                      batch.indices.data(), n, bag.pooling, s.feats.data() + col, concat);
    col += t.dim;
  }
  interact_and_top(m, n, s, logits);
}

void dlrm_forward_pooled(const DlrmModel& m, const DlrmBatch& batch, const float* pooled, int64_t ld_pooled,
                         DlrmScratch& s, float* logits) {
  const DlrmConfig& c = m.cfg;
  const int64_t n = batch.n;
  if (n == 0) return;
  FLURRY_CHECK(static_cast<int64_t>(batch.dense.size()) == n * c.num_dense(),
               "a DLRM batch of " << n << " samples has " << batch.dense.size() << " dense values (the model needs "
                                  << c.num_dense() << " per sample)");
  const int64_t concat = c.concat_width(), bottom = c.bottom_out(), width = concat - bottom;
  FLURRY_CHECK(ld_pooled >= width, "pooled rows of stride " << ld_pooled << " cannot hold the " << width
                                                             << " values of the bags");
  bottom_into_feats(m, batch, s);
  for (int64_t i = 0; i < n; ++i) {
    std::copy(pooled + i * ld_pooled, pooled + i * ld_pooled + width, s.feats.data() + i * concat + bottom);
  }
  interact_and_top(m, n, s, logits);
}

}  // namespace flurry::dlrm
