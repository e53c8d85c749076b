// DlrmGpu (models/dlrm/gpu/model_gpu.h) against dlrm_forward, the CPU reference, on random
// checkpoints written from dlrm_weight_table in the dtype under test (so both backends read the same
// weights): a classic dot model (facebookresearch/dlrm order, mean and multi-hot bags), TorchRec's
// upper-triangle dot without the dense vector, the seed's outer product (33,024 columns), cat with
// mixed dims and no bottom MLP, and DCNv2. Batches larger than a pass and passes cut short by the
// index capacity, a one-sample batch that matches its row of the batch, the empty batch, bad
// indices refused; recommend()'s device top-k against the CPU logits (identical sets but for ties).
// CUDA graphs against launches op by op (bit-identical at equal pass sizes), the forward_async
// pipeline against forward(), and the outer interaction fused into the first top layer against
// the CPU reference at odd widths, pair orders and a top MLP that is only the logit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "kernels/dlrm/outer_linear.cuh"
#include "models/common/weight_table.h"
#include "models/dlrm/config.h"
#include "models/dlrm/gpu/model_gpu.h"
#include "models/dlrm/model.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace flurry::dlrm {
namespace {

Json model_json(const std::string& kind) {
  Json j;
  if (kind == "dot" || kind == "dot_upper") {
    j = Json::parse(R"({
      "model_type": "dlrm",
      "dense_features": ["d0","d1","d2","d3","d4","d5","d6","d7","d8","d9","d10","d11","d12"],
      "embedding_tables": [{"name": "a", "num_embeddings": 100, "embedding_dim": 16},
                           {"name": "b", "num_embeddings": 37, "embedding_dim": 16},
                           {"name": "c", "num_embeddings": 1000, "embedding_dim": 16}],
      "embedding_bags": [{"name": "b0", "table": "a", "pooling": "sum", "features": ["c0"]},
                         {"name": "b1", "table": "b", "pooling": "mean", "features": ["c1", "c2"]},
                         {"name": "b2", "table": "c", "pooling": "sum", "features": ["c3", "c4", "c5"]},
                         {"name": "b3", "table": "a", "pooling": "sum", "features": ["c6"]}],
      "bottom_mlp": [64, 16],
      "top_mlp": [32, 16, 1]
    })");
    j["interaction"] = kind == "dot" ? Json{{"type", "dot"}, {"pairs", "strict_lower"}, {"include_dense", true}}
                                     : Json{{"type", "dot"}, {"pairs", "strict_upper"}, {"include_dense", false}};
  } else if (kind == "outer") {
    // The seed's shape with a narrower top MLP (its first layer reads the 33,024 columns).
    j = Json::parse(R"({
      "model_type": "dlrm",
      "dense_features": ["sale_price","age","d2","d3","d4","d5","d6","d7","d8"],
      "embedding_tables": [{"name": "shared", "num_embeddings": 142, "embedding_dim": 128}],
      "embedding_bags": [{"name": "food", "table": "shared", "pooling": "sum",
                          "features": ["menu_item", "menu_type", "truck", "city", "weekday"]}],
      "bottom_mlp": [256, 128],
      "interaction": {"type": "outer", "pairs": "upper_with_diag"},
      "top_mlp": [64, 1]
    })");
  } else if (kind == "outer_odd" || kind == "outer_logit") {
    // Odd widths everywhere: z = 12 + 12 + 11 = 35 values, 12 + 35 * 34 / 2 = 607 columns (not a
    // multiple of the K tile nor of 8), 33 outputs (not a multiple of the N tile).
    j = Json::parse(R"({
      "model_type": "dlrm",
      "dense_features": ["d0","d1","d2"],
      "embedding_tables": [{"name": "a", "num_embeddings": 50, "embedding_dim": 12},
                           {"name": "b", "num_embeddings": 30, "embedding_dim": 11}],
      "embedding_bags": [{"name": "b0", "table": "a", "pooling": "sum", "features": ["c0", "c1"]},
                         {"name": "b1", "table": "b", "pooling": "mean", "features": ["c2"]}],
      "bottom_mlp": [20, 12],
      "interaction": {"type": "outer", "pairs": "strict_lower"}
    })");
    j["top_mlp"] = kind == "outer_odd" ? Json::array({33, 1}) : Json::array({1});
  } else if (kind == "cat") {
    j = Json::parse(R"({
      "model_type": "dlrm",
      "dense_features": ["d0","d1","d2","d3","d4"],
      "embedding_tables": [{"name": "a", "num_embeddings": 50, "embedding_dim": 8},
                           {"name": "b", "num_embeddings": 70, "embedding_dim": 16},
                           {"name": "c", "num_embeddings": 9, "embedding_dim": 7}],
      "embedding_bags": [{"name": "b0", "table": "a", "pooling": "sum", "features": ["c0"]},
                         {"name": "b1", "table": "b", "pooling": "mean", "features": ["c1", "c2"]},
                         {"name": "b2", "table": "c", "pooling": "sum", "features": ["c3"]}],
      "bottom_mlp": [24, 8],
      "bottom_final_relu": false,
      "interaction": {"type": "cat"},
      "top_mlp": [40, 1]
    })");
  } else {  // dcnv2
    j = Json::parse(R"({
      "model_type": "dlrm",
      "dense_features": ["d0","d1","d2","d3","d4","d5","d6"],
      "embedding_tables": [{"name": "a", "num_embeddings": 64, "embedding_dim": 16},
                           {"name": "b", "num_embeddings": 300, "embedding_dim": 16}],
      "embedding_bags": [{"name": "b0", "table": "a", "pooling": "sum", "features": ["c0", "c1"]},
                         {"name": "b1", "table": "b", "pooling": "mean", "features": ["c2"]},
                         {"name": "b2", "table": "b", "pooling": "sum", "features": ["c3"]}],
      "bottom_mlp": [32, 16],
      "interaction": {"type": "dcnv2", "layers": 3, "rank": 8},
      "top_mlp": [32, 16, 1]
    })");
  }
  return j;
}

DlrmConfig model_config(const std::string& kind) {
  if (kind == "cat_no_bottom") {
    DlrmConfig c = dlrm_config_from_json(model_json("cat"), kind);
    c.bottom_mlp.clear();  // the dense features go straight into the feature row
    return c;
  }
  return dlrm_config_from_json(model_json(kind), kind);
}

Checkpoint random_checkpoint(const std::string& name, const DlrmConfig& c, DType t) {
  const std::string dir = test::fresh_temp_dir("dlrm-gpu-" + name + "-" + dtype_name(t));
  models::RandomCheckpointOptions o;
  o.seed = 23;
  o.dtype = t;
  models::write_random_checkpoint(dlrm_weight_table(c), dir + "/model.safetensors", o);
  return Checkpoint::open(dir);
}

// n samples: dense in [0, 1) rounded to `t`, each bag 0..max_len indices (empty bags included).
DlrmBatch random_batch(const DlrmConfig& c, int64_t n, int max_len, DType t, std::mt19937_64& rng) {
  DlrmBatch b;
  b.n = n;
  b.dense = test::random_vector(static_cast<size_t>(n * c.num_dense()), rng, 0.0f, 1.0f);
  test::round_inplace(b.dense, t);
  b.offsets.push_back(0);
  std::uniform_int_distribution<int> len(0, max_len);
  for (int64_t bi = 0; bi < c.num_bags(); ++bi) {
    const int64_t rows = c.tables[static_cast<size_t>(c.bags[static_cast<size_t>(bi)].table)].rows;
    std::uniform_int_distribution<int32_t> row(0, static_cast<int32_t>(rows - 1));
    for (int64_t i = 0; i < n; ++i) {
      const int l = len(rng);
      for (int e = 0; e < l; ++e) b.indices.push_back(row(rng));
      b.offsets.push_back(static_cast<int32_t>(b.indices.size()));
    }
  }
  return b;
}

std::vector<float> cpu_logits(const DlrmModel& m, const DlrmBatch& b) {
  std::vector<float> out(static_cast<size_t>(b.n));
  DlrmScratch s;
  dlrm_forward(m, b, s, out.data());
  return out;
}

double logit_bound(DType t) { return t == DType::F32 ? 1e-4 : t == DType::F16 ? 1e-2 : 3e-2; }

// Sample i of b as a batch of one.
DlrmBatch one_sample(const DlrmConfig& c, const DlrmBatch& b, int64_t i) {
  DlrmBatch o;
  o.n = 1;
  o.dense.assign(b.dense.begin() + i * c.num_dense(), b.dense.begin() + (i + 1) * c.num_dense());
  o.offsets.push_back(0);
  for (int64_t bi = 0; bi < c.num_bags(); ++bi) {
    const int32_t lo = b.offsets[static_cast<size_t>(bi * b.n + i)], hi = b.offsets[static_cast<size_t>(bi * b.n + i + 1)];
    o.indices.insert(o.indices.end(), b.indices.begin() + lo, b.indices.begin() + hi);
    o.offsets.push_back(static_cast<int32_t>(o.indices.size()));
  }
  return o;
}

void check_forward(const std::string& kind, DType t, std::mt19937_64& rng) {
  SCOPED_TRACE(kind + " " + dtype_name(t));
  const DlrmConfig c = model_config(kind);
  const Checkpoint ck = random_checkpoint(kind, c, t);
  const DlrmModel cpu = load_dlrm_cpu(c, ck);
  DlrmGpuOptions o;
  o.dtype = t;
  o.max_batch = 64;  // 150 samples: three passes
  DlrmGpu g;
  g.load(c, ck, o);
  ASSERT_TRUE(g.loaded());
  EXPECT_GT(g.device_bytes(), 0u);

  const DlrmBatch b = random_batch(c, 150, 4, t, rng);
  const std::vector<float> ref = cpu_logits(cpu, b);
  std::vector<float> out(static_cast<size_t>(b.n), std::numeric_limits<float>::quiet_NaN());
  g.forward(b, out.data());
  EXPECT_TRUE(test::close_in_norm("dlrm_gpu_" + kind, out, ref, logit_bound(t)));

  // A sample alone gives its row of the batch (to GEMM rounding: cuBLASLt may pick another
  // algorithm for one row, and a 16-bit activation may round the other way).
  const DlrmBatch one = one_sample(c, b, 77);
  float alone = std::numeric_limits<float>::quiet_NaN();
  g.forward(one, &alone);
  EXPECT_NEAR(alone, out[77], logit_bound(t) * (1.0 + std::fabs(out[77])));

  // The empty batch writes nothing.
  DlrmBatch empty;
  empty.offsets.push_back(0);
  float untouched = 42.0f;
  g.forward(empty, &untouched);
  EXPECT_EQ(untouched, 42.0f);

  // Passes cut short by the index capacity give the same logits.
  o.max_indices = 40;
  DlrmGpu small;
  small.load(c, ck, o);
  std::vector<float> out2(static_cast<size_t>(b.n), std::numeric_limits<float>::quiet_NaN());
  small.forward(b, out2.data());
  EXPECT_TRUE(test::close_in_norm("dlrm_gpu_" + kind + "_small_passes", out2, ref, logit_bound(t)));

  // An index outside its table is refused before anything runs.
  DlrmBatch bad = b;
  if (!bad.indices.empty()) {
    bad.indices[bad.indices.size() / 2] = 1 << 30;
    EXPECT_THROW(g.forward(bad, out.data()), Error);
  }
}

TEST(DlrmGpu, ForwardMatchesTheCpuReference) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmGpu.Forward");
  for (const char* kind : {"dot", "dot_upper", "outer", "cat", "cat_no_bottom", "dcnv2"}) {
    for (DType t : {DType::F32, DType::F16, DType::BF16}) check_forward(kind, t, rng);
  }
}

// recommend(): per-customer top-k on the device vs the CPU logits of the same pairs.
void check_recommend(const std::string& kind, DType t, int k, bool masked, std::mt19937_64& rng) {
  SCOPED_TRACE(kind + " " + dtype_name(t) + " k " + std::to_string(k) + (masked ? " masked" : ""));
  const DlrmConfig c = model_config(kind);
  const Checkpoint ck = random_checkpoint(kind + "-rec", c, t);
  const DlrmModel cpu = load_dlrm_cpu(c, ck);
  DlrmGpuOptions o;
  o.dtype = t;
  o.max_batch = 100;  // 37 candidates: two customers per pass
  DlrmGpu g;
  g.load(c, ck, o);
  const int64_t customers = 5, candidates = 37;
  const DlrmBatch b = random_batch(c, customers * candidates, 3, t, rng);
  std::vector<uint8_t> valid;
  if (masked) {
    std::uniform_int_distribution<int> coin(0, 3);
    for (int64_t i = 0; i < b.n; ++i) valid.push_back(coin(rng) != 0 ? 1 : 0);
    for (int64_t j = 0; j < candidates; ++j) valid[static_cast<size_t>(2 * candidates + j)] = 0;  // a customer with none
  }
  std::vector<float> top(static_cast<size_t>(customers * k));
  std::vector<int32_t> idx(static_cast<size_t>(customers * k));
  g.recommend(b, customers, candidates, masked ? valid.data() : nullptr, k, top.data(), idx.data());
  const std::vector<float> ref = cpu_logits(cpu, b);
  float scale = 0.0f;
  for (float v : ref) scale = std::max(scale, std::fabs(v));
  const float tol = static_cast<float>(logit_bound(t)) * 4.0f * std::max(scale, 1.0f);
  for (int64_t cu = 0; cu < customers; ++cu) {
    std::vector<int32_t> ok;
    for (int32_t j = 0; j < candidates; ++j) {
      if (!masked || valid[static_cast<size_t>(cu * candidates + j)]) ok.push_back(j);
    }
    const float* lr = ref.data() + cu * candidates;
    std::stable_sort(ok.begin(), ok.end(), [&](int32_t a, int32_t b2) { return lr[a] > lr[b2]; });
    const int want = std::min<int>(k, static_cast<int>(ok.size()));
    const float kth = want > 0 ? lr[ok[static_cast<size_t>(want - 1)]] : 0.0f;
    for (int e = 0; e < k; ++e) {
      const int32_t j = idx[static_cast<size_t>(cu * k + e)];
      const float v = top[static_cast<size_t>(cu * k + e)];
      if (e >= want) {
        EXPECT_EQ(j, -1) << "customer " << cu << " rank " << e;
        EXPECT_TRUE(std::isinf(v) && v < 0) << "customer " << cu << " rank " << e;
        continue;
      }
      ASSERT_GE(j, 0) << "customer " << cu << " rank " << e;
      ASSERT_LT(j, candidates);
      EXPECT_TRUE(!masked || valid[static_cast<size_t>(cu * candidates + j)]) << "masked candidate " << j;
      EXPECT_NEAR(v, lr[j], tol) << "customer " << cu << " candidate " << j;
      // Chosen: at least the reference's k-th best, but for near-ties.
      EXPECT_GE(lr[j], kth - tol) << "customer " << cu << " candidate " << j;
      if (e > 0) {
        EXPECT_GE(top[static_cast<size_t>(cu * k + e - 1)], v) << "not descending";
      }
    }
    // Every reference winner clearly above the k-th is among the chosen.
    for (int e = 0; e < want; ++e) {
      const int32_t j = ok[static_cast<size_t>(e)];
      if (lr[j] > kth + tol) {
        const int32_t* first = idx.data() + cu * k;
        EXPECT_NE(std::find(first, first + k, j), first + k) << "customer " << cu << " lost candidate " << j;
      }
    }
  }
}

TEST(DlrmGpu, RecommendKeepsTheTopKOnTheDevice) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmGpu.Recommend");
  for (DType t : {DType::F32, DType::F16}) {
    check_recommend("dot", t, 10, false, rng);
    check_recommend("dot", t, 10, true, rng);
    check_recommend("dcnv2", t, 64, true, rng);  // k beyond the valid candidates: padding
  }
  check_recommend("outer", DType::F32, 5, false, rng);
  // More candidates than a pass holds are refused.
  const DlrmConfig c = model_config("dot");
  const Checkpoint ck = random_checkpoint("dot-refuse", c, DType::F32);
  DlrmGpuOptions o;
  o.dtype = DType::F32;
  o.max_batch = 16;
  DlrmGpu g;
  g.load(c, ck, o);
  const DlrmBatch b = random_batch(c, 2 * 17, 1, DType::F32, rng);
  std::vector<float> top(2 * 4);
  std::vector<int32_t> idx(2 * 4);
  EXPECT_THROW(g.recommend(b, 2, 17, nullptr, 4, top.data(), idx.data()), Error);
  EXPECT_THROW(g.recommend(b, 2, 17, nullptr, 65, top.data(), idx.data()), Error);
}

TEST(DlrmGpu, RefusesWhatItCannotRun) {
  // No GPU needed: refused before any device work.
  DlrmConfig c = model_config("dot");
  DlrmGpuOptions o;
  o.dtype = DType::I32;
  EXPECT_THROW(DlrmGpu::device_bytes(c, o), Error);
  o.dtype = DType::F16;
  o.max_batch = 0;
  EXPECT_THROW(DlrmGpu::device_bytes(c, o), Error);
  o.max_batch = 128;
  EXPECT_GT(DlrmGpu::device_bytes(c, o), size_t{0});
  DlrmGpu g;
  EXPECT_FALSE(g.loaded());
  std::vector<float> out(1);
  DlrmBatch b;
  EXPECT_THROW(g.forward(b, out.data()), Error);
}

// Bitwise equality of two logit vectors; the count of differing samples.
int64_t differing(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t bad = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) ++bad;
  }
  return bad;
}

// Graphs replay exactly the launches of the eager pass: at equal pass sizes the logits are
// bit-identical (the same cuBLASLt plans, the same kernels); ragged passes run at the bucket size
// with graphs and at their own without, so they agree to the dtype's bound.
void check_graphs(const std::string& kind, DType t, std::mt19937_64& rng) {
  SCOPED_TRACE(kind + " " + dtype_name(t));
  const DlrmConfig c = model_config(kind);
  const Checkpoint ck = random_checkpoint(kind + "-graphs", c, t);
  DlrmGpuOptions o;
  o.dtype = t;
  o.max_batch = 64;
  o.use_graphs = true;
  DlrmGpu graphed;
  graphed.load(c, ck, o);
  o.use_graphs = false;
  DlrmGpu eager;
  eager.load(c, ck, o);

  const DlrmBatch b = random_batch(c, 128, 4, t, rng);  // two full passes, one per slot
  std::vector<float> ref(static_cast<size_t>(b.n), std::numeric_limits<float>::quiet_NaN());
  eager.forward(b, ref.data());
  EXPECT_EQ(eager.graphs(), 0u);
  for (int rep = 0; rep < 3; ++rep) {  // the first captures, the next ones replay
    std::vector<float> got(static_cast<size_t>(b.n), std::numeric_limits<float>::quiet_NaN());
    graphed.forward(b, got.data());
    EXPECT_EQ(differing(got, ref), 0) << "repetition " << rep;
  }
  EXPECT_EQ(graphed.graphs(), 2u);  // bucket 64 on both slots

  // A ragged batch: 64 + 64 + 22 (bucket 32), against the CPU reference.
  const DlrmModel cpu = load_dlrm_cpu(c, ck);
  const DlrmBatch r = random_batch(c, 150, 4, t, rng);
  const std::vector<float> cref = cpu_logits(cpu, r);
  for (int rep = 0; rep < 2; ++rep) {
    std::vector<float> got(static_cast<size_t>(r.n), std::numeric_limits<float>::quiet_NaN());
    graphed.forward(r, got.data());
    EXPECT_TRUE(test::close_in_norm("dlrm_gpu_graphs_" + kind, got, cref, logit_bound(t)));
  }
  EXPECT_EQ(graphed.graphs(), 4u);  // and bucket 32 on both slots (the tail pass alternates)
}

TEST(DlrmGpu, GraphsAndNoGraphsGiveIdenticalLogits) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmGpu.Graphs");
  for (const char* kind : {"dot", "outer", "cat_no_bottom", "dcnv2"}) {
    for (DType t : {DType::F32, DType::F16}) check_graphs(kind, t, rng);
  }
}

// forward_async: batches queued back to back (the caller's batch object reused at once) give what
// forward() gives for each, bit for bit (same pass sizes).
TEST(DlrmGpu, PipelinedBatchesMatchSynchronousOnes) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmGpu.Pipeline");
  for (const char* kind : {"dot", "outer"}) {
    for (bool graphs : {true, false}) {
      SCOPED_TRACE(std::string(kind) + (graphs ? " graphs" : " eager"));
      const DlrmConfig c = model_config(kind);
      const Checkpoint ck = random_checkpoint(std::string(kind) + "-pipe", c, DType::F16);
      DlrmGpuOptions o;
      o.dtype = DType::F16;
      o.max_batch = 64;
      o.use_graphs = graphs;
      DlrmGpu g;
      g.load(c, ck, o);
      std::vector<DlrmBatch> batches;
      for (int64_t n : {64, 200, 7, 64, 130}) batches.push_back(random_batch(c, n, 3, DType::F16, rng));
      std::vector<std::vector<float>> sync, piped;
      for (const DlrmBatch& b : batches) {
        sync.emplace_back(static_cast<size_t>(b.n), std::numeric_limits<float>::quiet_NaN());
        g.forward(b, sync.back().data());
      }
      piped.reserve(batches.size());
      DlrmBatch reused;
      for (const DlrmBatch& b : batches) {
        piped.emplace_back(static_cast<size_t>(b.n), std::numeric_limits<float>::quiet_NaN());
        reused = b;
        g.forward_async(reused, piped.back().data());
        reused.dense.assign(reused.dense.size(), 1e6f);  // staged already: must not matter
      }
      g.wait();
      for (size_t i = 0; i < batches.size(); ++i) EXPECT_EQ(differing(piped[i], sync[i]), 0) << "batch " << i;
      g.wait();  // nothing queued: a no-op
    }
  }
}

// The fused outer interaction (kernels/dlrm/outer_linear.cuh) against the CPU reference, and
// against the materialised path.
void check_outer_fusion(const std::string& kind, DType t, std::mt19937_64& rng) {
  SCOPED_TRACE(kind + " " + dtype_name(t));
  const DlrmConfig c = model_config(kind);
  const Checkpoint ck = random_checkpoint(kind + "-fused", c, t);
  const DlrmModel cpu = load_dlrm_cpu(c, ck);
  const DlrmBatch b = random_batch(c, 150, 4, t, rng);
  const std::vector<float> ref = cpu_logits(cpu, b);
  for (OuterFusion f : {OuterFusion::kOn, OuterFusion::kOff}) {
    SCOPED_TRACE(outer_fusion_name(f));
    DlrmGpuOptions o;
    o.dtype = t;
    o.max_batch = 64;
    o.outer_fusion = f;
    DlrmGpu g;
    g.load(c, ck, o);
    EXPECT_EQ(g.outer_fused(), f == OuterFusion::kOn);
    std::vector<float> out(static_cast<size_t>(b.n), std::numeric_limits<float>::quiet_NaN());
    g.forward(b, out.data());
    EXPECT_TRUE(test::close_in_norm("dlrm_gpu_outer_" + kind + "_" + outer_fusion_name(f), out, ref, logit_bound(t)));
  }
}

TEST(DlrmGpu, FusedOuterInteractionMatchesTheCpuReference) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmGpu.OuterFusion");
  for (const char* kind : {"outer", "outer_odd", "outer_logit"}) {
    for (DType t : {DType::F32, DType::F16, DType::BF16}) check_outer_fusion(kind, t, rng);
  }
}

TEST(DlrmGpu, OuterFusionChoiceAndColumns) {
  // No GPU needed: the choice is made from the config and options, the column table on the host.
  DlrmConfig c = model_config("outer");
  EXPECT_TRUE(DlrmGpu::outer_fused(c, DlrmGpuOptions{}));  // f16, auto: fused
  DlrmGpuOptions o;
  o.dtype = DType::F32;
  EXPECT_FALSE(DlrmGpu::outer_fused(c, o));  // auto keeps fp32 materialised
  o.outer_fusion = OuterFusion::kOn;
  EXPECT_TRUE(DlrmGpu::outer_fused(c, o));
  // The fused path needs no [batch, 33,024] interaction buffer.
  DlrmGpuOptions off;
  off.outer_fusion = OuterFusion::kOff;
  EXPECT_LT(DlrmGpu::device_bytes(c, DlrmGpuOptions{}) + size_t{200} * 1000 * 1000, DlrmGpu::device_bytes(c, off));
  c.tables[0].dim = 600;  // z 728 wide: beyond the fp32 kernel, within the 16-bit one
  EXPECT_THROW(DlrmGpu::device_bytes(c, o), Error);
  o.outer_fusion = OuterFusion::kAuto;
  EXPECT_FALSE(DlrmGpu::outer_fused(c, o));
  o.dtype = DType::F16;
  EXPECT_TRUE(DlrmGpu::outer_fused(c, o));
  EXPECT_FALSE(DlrmGpu::outer_fused(model_config("dot"), DlrmGpuOptions{}));
  EXPECT_EQ(parse_outer_fusion("off"), OuterFusion::kOff);
  EXPECT_THROW(parse_outer_fusion("maybe"), Error);

  // The column table enumerates the pairs as the CPU reference does, after the prefix copies.
  const struct {
    Pairs p;
    PairOrder q;
  } orders[] = {{Pairs::kStrictLower, PairOrder::StrictLower},
                {Pairs::kLowerWithDiag, PairOrder::LowerWithDiag},
                {Pairs::kStrictUpper, PairOrder::StrictUpper},
                {Pairs::kUpperWithDiag, PairOrder::UpperWithDiag}};
  for (const auto& ord : orders) {
    const int64_t width = 35, prefix = 12;
    const std::vector<uint32_t> cols = outer_linear_columns(ord.q, width, prefix);
    const auto pairs = interaction_pairs(ord.p, width);
    ASSERT_EQ(cols.size(), static_cast<size_t>(prefix) + pairs.size());
    for (int64_t i = 0; i < prefix; ++i) EXPECT_EQ(cols[static_cast<size_t>(i)], (static_cast<uint32_t>(i) << 16) | 0xFFFFu);
    for (size_t e = 0; e < pairs.size(); ++e) {
      const uint32_t want = (static_cast<uint32_t>(pairs[e].first) << 16) | static_cast<uint32_t>(pairs[e].second);
      EXPECT_EQ(cols[static_cast<size_t>(prefix) + e], want) << "pair " << e;
    }
  }
}

}  // namespace
}  // namespace flurry::dlrm
