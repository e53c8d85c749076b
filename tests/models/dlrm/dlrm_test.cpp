// DLRM on the CPU reference path: the config and feature-spec rules (what is refused and why), the
// interaction pair orders, the feature encoder's documented rules, the forward against a naive
// per-sample computation, batching invariance, and parity with PyTorch goldens
// (tests/fixtures/dlrm/make_goldens.py) for the trained food-truck model and random classic,
// TorchRec-order, DCNv2 and cat configurations.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "io/text_rows.h"
#include "models/dlrm/metrics.h"
#include "models/dlrm/config.h"
#include "models/dlrm/features.h"
#include "models/dlrm/model.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace fs = std::filesystem;

namespace flurry::dlrm {
namespace {

Json small_config(const std::string& interaction) {
  Json j = Json::parse(R"({
    "model_type": "dlrm",
    "dense_features": ["d0", "d1", "d2"],
    "embedding_tables": [{"name": "t0", "num_embeddings": 7, "embedding_dim": 4},
                         {"name": "t1", "num_embeddings": 11, "embedding_dim": 4}],
    "embedding_bags": [{"name": "b0", "table": "t0", "pooling": "sum", "features": ["c0"]},
                       {"name": "b1", "table": "t1", "pooling": "mean", "features": ["c1", "c2"]}],
    "bottom_mlp": [8, 4],
    "top_mlp": [6, 1]
  })");
  if (interaction == "dot") j["interaction"] = {{"type", "dot"}, {"pairs", "strict_lower"}};
  if (interaction == "dot_upper") j["interaction"] = {{"type", "dot"}, {"pairs", "upper_with_diag"}, {"include_dense", false}};
  if (interaction == "outer") j["interaction"] = {{"type", "outer"}, {"pairs", "upper_with_diag"}};
  if (interaction == "cat") j["interaction"] = {{"type", "cat"}};
  if (interaction == "dcnv2") j["interaction"] = {{"type", "dcnv2"}, {"layers", 2}, {"rank", 3}};
  return j;
}

Json small_spec() {
  return Json::parse(R"({
    "dense": [{"name": "d0", "transform": "minmax", "min": 0, "max": 10},
              {"name": "d1", "transform": "log1p", "missing": 0},
              {"name": "d2"}],
    "categorical": [{"name": "c0", "encoding": "vocab", "vocab": ["a", "b", "c"]},
                    {"name": "c1", "encoding": "hash"},
                    {"name": "c2", "encoding": "integer", "separator": "|"}],
    "label": "y"
  })");
}

std::string write_random_model(const std::string& name, const DlrmConfig& c) {
  const std::string dir = test::fresh_temp_dir("dlrm-" + name);
  models::RandomCheckpointOptions o;
  o.seed = 11;
  o.dtype = DType::F32;
  models::write_random_checkpoint(dlrm_weight_table(c), dir + "/model.safetensors", o);
  return dir;
}

TEST(DlrmConfig, WidthsOfEveryInteraction) {
  EXPECT_EQ(dlrm_config_from_json(small_config("dot"), "t").interaction_out(), 4 + 3);
  EXPECT_EQ(dlrm_config_from_json(small_config("dot_upper"), "t").interaction_out(), 6);
  EXPECT_EQ(dlrm_config_from_json(small_config("outer"), "t").interaction_out(), 4 + 12 * 13 / 2);
  EXPECT_EQ(dlrm_config_from_json(small_config("cat"), "t").interaction_out(), 12);
  EXPECT_EQ(dlrm_config_from_json(small_config("dcnv2"), "t").interaction_out(), 12);
  // The seed's shape: z of 256, upper triangle with the diagonal, after the bottom's 128.
  EXPECT_EQ(128 + DlrmConfig::pair_count(Pairs::kUpperWithDiag, 256), 33024);
  // Criteo Kaggle: 27 vectors, strict lower triangle, after the bottom's 16.
  EXPECT_EQ(16 + DlrmConfig::pair_count(Pairs::kStrictLower, 27), 367);
}

TEST(DlrmConfig, PairOrders) {
  using P = std::vector<std::pair<int32_t, int32_t>>;
  EXPECT_EQ(interaction_pairs(Pairs::kStrictLower, 3), (P{{1, 0}, {2, 0}, {2, 1}}));
  EXPECT_EQ(interaction_pairs(Pairs::kStrictUpper, 3), (P{{0, 1}, {0, 2}, {1, 2}}));
  EXPECT_EQ(interaction_pairs(Pairs::kUpperWithDiag, 2), (P{{0, 0}, {0, 1}, {1, 1}}));
  EXPECT_EQ(interaction_pairs(Pairs::kLowerWithDiag, 2), (P{{0, 0}, {1, 0}, {1, 1}}));
}

TEST(DlrmConfig, RefusesWhatItCannotRun) {
  auto refused = [](Json j, const std::string& words) {
    try {
      dlrm_config_from_json(j, "cfg");
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted a config that should be refused for: " << words;
  };
  Json j = small_config("dot");
  j["model_type"] = "bert";
  refused(j, "not a DLRM");
  j = small_config("dot");
  j["top_mlp"] = {6, 2};
  refused(j, "width of 1");
  j = small_config("dot");
  j["embedding_bags"][0]["table"] = "nope";
  refused(j, "no embedding table named 'nope'");
  j = small_config("dot");
  j["embedding_tables"][0]["embedding_dim"] = 5;
  refused(j, "dot interaction needs every bag's dim");
  j = small_config("dot");
  j["interaction"] = {{"type", "transformer"}};
  refused(j, "interaction type 'transformer'");
  j = small_config("dot");
  j["embedding_bags"][1]["features"] = {"c0"};
  refused(j, "feeds two bags");
}

TEST(DlrmFeatures, RulesOfTheEncoder) {
  const DlrmConfig c = dlrm_config_from_json(small_config("dot"), "t");
  const FeatureSpec spec = feature_spec_from_json(small_spec(), "spec");
  FeatureEncoder enc(c, spec);
  // columns: d0 d1 d2 c0 c1 c2
  ASSERT_EQ(enc.columns(), (std::vector<std::string>{"d0", "d1", "d2", "c0", "c1", "c2"}));
  const std::vector<std::vector<std::string>> rows = {
      {"5", "", "-2.5", "b", "1f", "3|4"},       // ok: minmax 0.5, missing -> log1p(0), multi-hot
      {"20", "3", "1", "zzz", "", "10"},         // clamped to 1, unknown category skipped, blank hash
      {"x", "1", "1", "a", "0", "1"},            // not a number
      {"1", "1", "1", "a", "0", "11"},           // id not below the table's 11 rows
      {"1", "1", "1", "a", "0g", "1"},           // not hexadecimal
  };
  DlrmBatch b;
  std::vector<std::string> errors;
  EncodeStats stats;
  enc.encode(static_cast<int64_t>(rows.size()),
             [&](int64_t i, int col) { return &rows[static_cast<size_t>(i)][static_cast<size_t>(col)]; }, &b, &errors,
             &stats);
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_NE(errors[2].find("not a number"), std::string::npos) << errors[2];
  EXPECT_NE(errors[3].find("not below"), std::string::npos) << errors[3];
  EXPECT_NE(errors[4].find("hexadecimal"), std::string::npos) << errors[4];
  EXPECT_FLOAT_EQ(b.dense[0], 0.5f);
  EXPECT_FLOAT_EQ(b.dense[1], 0.0f);
  EXPECT_FLOAT_EQ(b.dense[2], -2.5f);
  EXPECT_FLOAT_EQ(b.dense[3], 1.0f);
  EXPECT_FLOAT_EQ(b.dense[4], std::log1p(3.0f));
  // Bag 0 (c0): row 0 -> [1], row 1 -> [] (unknown skipped), error rows empty.
  const int64_t n = 5;
  ASSERT_EQ(b.offsets.size(), static_cast<size_t>(2 * n + 1));
  EXPECT_EQ(b.offsets[1] - b.offsets[0], 1);
  EXPECT_EQ(b.indices[static_cast<size_t>(b.offsets[0])], 1);
  EXPECT_EQ(b.offsets[2] - b.offsets[1], 0);
  for (int64_t i = 2; i < n; ++i) EXPECT_EQ(b.offsets[i + 1] - b.offsets[i], 0) << i;
  // Bag 1 (c1 hashed mod 11, then c2's ids): row 0 -> [0x1f % 11, 3, 4], row 1 -> [10].
  const int32_t* b1 = b.offsets.data() + n;
  ASSERT_EQ(b1[1] - b1[0], 3);
  EXPECT_EQ(b.indices[static_cast<size_t>(b1[0])], 0x1f % 11);
  EXPECT_EQ(b.indices[static_cast<size_t>(b1[0]) + 1], 3);
  EXPECT_EQ(b.indices[static_cast<size_t>(b1[0]) + 2], 4);
  ASSERT_EQ(b1[2] - b1[1], 1);
  EXPECT_EQ(b.indices[static_cast<size_t>(b1[1])], 10);
  EXPECT_EQ(stats.unknown["c0"], 1);
  EXPECT_EQ(stats.clamped["d0"], 1);
  EXPECT_EQ(stats.missing["d1"], 1);
  EXPECT_EQ(stats.missing["c1"], 1);
}

TEST(DlrmFeatures, SpecThatDoesNotFitTheModelIsRefused) {
  const DlrmConfig c = dlrm_config_from_json(small_config("dot"), "t");
  Json s = small_spec();
  s["categorical"][0]["vocab"] = {"a", "b", "c", "d", "e", "f", "g", "h"};  // 8 categories, table t0 has 7 rows
  EXPECT_THROW({ FeatureEncoder e(c, feature_spec_from_json(s, "spec")); }, Error);
  s = small_spec();
  s["dense"].erase(1);
  const FeatureSpec lacking = feature_spec_from_json(s, "spec");
  try {
    FeatureEncoder e(c, lacking);
    ADD_FAILURE() << "a spec without dense feature d1 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no dense feature 'd1'"), std::string::npos) << e.what();
  }
  s = small_spec();
  s["unknown"] = "maybe";
  EXPECT_THROW(feature_spec_from_json(s, "spec"), Error);
}

// A plain per-sample forward written from the definitions, against dlrm_forward's batched one.
float naive_logit(const DlrmModel& m, const DlrmBatch& b, int64_t i) {
  const DlrmConfig& c = m.cfg;
  auto mlp = [](const std::vector<models::LinearW>& layers, std::vector<float> x, bool final_relu) {
    for (size_t l = 0; l < layers.size(); ++l) {
      std::vector<float> y(static_cast<size_t>(layers[l].out));
      for (int64_t o = 0; o < layers[l].out; ++o) {
        double acc = layers[l].b.empty() ? 0.0 : layers[l].b[static_cast<size_t>(o)];
        for (int64_t k = 0; k < layers[l].in; ++k) {
          acc += static_cast<double>(layers[l].w[static_cast<size_t>(o * layers[l].in + k)]) * x[static_cast<size_t>(k)];
        }
        const bool relu = l + 1 < layers.size() || final_relu;
        y[static_cast<size_t>(o)] = static_cast<float>(relu ? std::max(0.0, acc) : acc);
      }
      x = y;
    }
    return x;
  };
  std::vector<float> z = mlp(m.bottom, std::vector<float>(b.dense.begin() + i * c.num_dense(),
                                                          b.dense.begin() + (i + 1) * c.num_dense()),
                             c.bottom_final_relu);
  const std::vector<float> bottom = z;
  for (int64_t k = 0; k < c.num_bags(); ++k) {
    const TableConfig& t = c.tables[static_cast<size_t>(c.bags[static_cast<size_t>(k)].table)];
    std::vector<float> v(static_cast<size_t>(t.dim), 0.0f);
    const int32_t s = b.offsets[static_cast<size_t>(k * b.n + i)], e = b.offsets[static_cast<size_t>(k * b.n + i + 1)];
    for (int32_t r = s; r < e; ++r) {
      for (int64_t d = 0; d < t.dim; ++d) {
        v[static_cast<size_t>(d)] += m.tables[static_cast<size_t>(c.bags[static_cast<size_t>(k)].table)]
                                             [static_cast<size_t>(b.indices[static_cast<size_t>(r)] * t.dim + d)];
      }
    }
    if (c.bags[static_cast<size_t>(k)].pooling == Pooling::kMean && e > s) {
      for (float& x : v) x /= static_cast<float>(e - s);
    }
    z.insert(z.end(), v.begin(), v.end());
  }
  std::vector<float> top_in;
  if (c.interaction.type == InteractionType::kDot) {
    const int64_t d = c.bottom_out();
    if (c.interaction.include_dense) top_in = bottom;
    for (const auto& [p, q] : interaction_pairs(c.interaction.pairs, 1 + c.num_bags())) {
      double acc = 0;
      for (int64_t k = 0; k < d; ++k) acc += static_cast<double>(z[static_cast<size_t>(p * d + k)]) * z[static_cast<size_t>(q * d + k)];
      top_in.push_back(static_cast<float>(acc));
    }
  } else if (c.interaction.type == InteractionType::kOuter) {
    top_in = bottom;
    for (const auto& [p, q] : interaction_pairs(c.interaction.pairs, static_cast<int64_t>(z.size()))) {
      top_in.push_back(z[static_cast<size_t>(p)] * z[static_cast<size_t>(q)]);
    }
  } else {
    top_in = z;
    for (const DlrmModel::Cross& l : m.cross) {
      const int64_t nn = static_cast<int64_t>(z.size()), r = c.interaction.rank;
      std::vector<double> t(static_cast<size_t>(r), 0.0);
      for (int64_t a = 0; a < r; ++a) {
        for (int64_t k = 0; k < nn; ++k) t[static_cast<size_t>(a)] += static_cast<double>(l.v[static_cast<size_t>(a * nn + k)]) * top_in[static_cast<size_t>(k)];
      }
      std::vector<float> next(top_in.size());
      for (int64_t k = 0; k < nn; ++k) {
        double u = l.b[static_cast<size_t>(k)];
        for (int64_t a = 0; a < r; ++a) u += static_cast<double>(l.w[static_cast<size_t>(k * r + a)]) * t[static_cast<size_t>(a)];
        next[static_cast<size_t>(k)] = static_cast<float>(z[static_cast<size_t>(k)] * u + top_in[static_cast<size_t>(k)]);
      }
      top_in = next;
    }
  }
  return mlp(m.top, top_in, false)[0];
}

DlrmBatch random_batch(const DlrmConfig& c, int64_t n, std::mt19937_64& rng) {
  DlrmBatch b;
  b.n = n;
  b.dense = test::random_vector(static_cast<size_t>(n * c.num_dense()), rng, 0.0f, 1.0f);
  b.offsets.push_back(0);
  for (int64_t k = 0; k < c.num_bags(); ++k) {
    const int64_t rows = c.tables[static_cast<size_t>(c.bags[static_cast<size_t>(k)].table)].rows;
    for (int64_t i = 0; i < n; ++i) {
      const int hot = static_cast<int>(rng() % 4);  // 0..3, empty bags included
      for (int h = 0; h < hot; ++h) b.indices.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(rows)));
      b.offsets.push_back(static_cast<int32_t>(b.indices.size()));
    }
  }
  return b;
}

DlrmBatch slice(const DlrmConfig& c, const DlrmBatch& b, int64_t i) {
  DlrmBatch s;
  s.n = 1;
  s.dense.assign(b.dense.begin() + i * c.num_dense(), b.dense.begin() + (i + 1) * c.num_dense());
  s.offsets.push_back(0);
  for (int64_t k = 0; k < c.num_bags(); ++k) {
    const int32_t from = b.offsets[static_cast<size_t>(k * b.n + i)], to = b.offsets[static_cast<size_t>(k * b.n + i + 1)];
    s.indices.insert(s.indices.end(), b.indices.begin() + from, b.indices.begin() + to);
    s.offsets.push_back(static_cast<int32_t>(s.indices.size()));
  }
  return s;
}

class DlrmForward : public ::testing::TestWithParam<std::string> {};

TEST_P(DlrmForward, MatchesThePerSampleDefinitionAndIsBatchInvariant) {
  const DlrmConfig c = dlrm_config_from_json(small_config(GetParam()), "t");
  const std::string dir = write_random_model(GetParam(), c);
  const Checkpoint ck = Checkpoint::open(dir + "/model.safetensors");
  const DlrmModel m = load_dlrm_cpu(c, ck);
  auto rng = test::test_rng("dlrm-forward-" + GetParam());
  const int64_t n = 37;
  const DlrmBatch b = random_batch(c, n, rng);
  DlrmScratch s;
  std::vector<float> logits(static_cast<size_t>(n), NAN);
  dlrm_forward(m, b, s, logits.data());
  for (int64_t i = 0; i < n; ++i) {
    const float ref = naive_logit(m, b, i);
    EXPECT_NEAR(logits[static_cast<size_t>(i)], ref, 1e-5 * (1.0 + std::fabs(ref))) << "sample " << i;
    float one = NAN;
    dlrm_forward(m, slice(c, b, i), s, &one);
    // OpenBLAS may take another kernel for one row: equal up to fp32 summation order.
    EXPECT_NEAR(one, logits[static_cast<size_t>(i)], 1e-6 * (1.0 + std::fabs(ref)))
        << "sample " << i << " alone differs from it in a batch";
  }
}

INSTANTIATE_TEST_SUITE_P(Interactions, DlrmForward, ::testing::Values("dot", "dot_upper", "outer", "cat", "dcnv2"));

TEST(DlrmModel, CheckpointThatDoesNotFitIsRefused) {
  const DlrmConfig c = dlrm_config_from_json(small_config("dot"), "t");
  Json other = small_config("dot");
  other["top_mlp"] = {5, 1};
  const std::string dir = write_random_model("mismatch", dlrm_config_from_json(other, "t"));
  const Checkpoint ck = Checkpoint::open(dir + "/model.safetensors");
  try {
    load_dlrm_cpu(c, ck);
    ADD_FAILURE() << "a checkpoint of another top MLP was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("top_mlp.0.weight"), std::string::npos) << e.what();
  }
}

// ---- Parity with PyTorch (tests/fixtures/dlrm/make_goldens.py) ----

struct Scored {
  std::vector<float> logits;
  std::vector<std::string> errors;
};

// Reads every row of `input` through the model folder's feature spec and scores it.
Scored score_file(const std::string& model_dir, const std::string& input, TextFormat format) {
  const DlrmConfig c = load_dlrm_config(model_dir);
  const FeatureSpec spec = load_feature_spec(model_dir);
  const Checkpoint ck = Checkpoint::open(model_dir);
  const DlrmModel m = load_dlrm_cpu(c, ck);
  FeatureEncoder enc(c, spec);
  TextSpec ts;
  ts.format = format;
  ts.text_field.clear();
  std::vector<FieldRow> rows;
  for (const TextChunk& ch : index_text_inputs({input}, ts, 1000)) {
    auto part = read_field_chunk(ch, enc.columns());
    rows.insert(rows.end(), part.begin(), part.end());
  }
  DlrmBatch b;
  Scored out;
  EncodeStats stats;
  enc.encode(static_cast<int64_t>(rows.size()), [&](int64_t i, int col) -> const std::string* {
    const FieldRow& r = rows[static_cast<size_t>(i)];
    return r.present[static_cast<size_t>(col)] ? &r.values[static_cast<size_t>(col)] : nullptr;
  }, &b, &out.errors, &stats);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].error.empty()) out.errors[i] = rows[i].error;
  }
  DlrmScratch s;
  out.logits.assign(rows.size(), NAN);
  dlrm_forward(m, b, s, out.logits.data());
  return out;
}

std::vector<float> golden_logits(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "row,logit");
  std::vector<float> out;
  while (std::getline(in, line)) {
    const size_t comma = line.find(',');
    EXPECT_EQ(std::stoul(line.substr(0, comma)), out.size());
    out.push_back(std::stof(line.substr(comma + 1)));
  }
  return out;
}

// Relative error per logit against PyTorch: 1e-5 of the logit, with a floor for logits near 0.
void expect_parity(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]) / std::max(1.0, std::fabs(static_cast<double>(want[i])));
    worst = std::max(worst, err);
    EXPECT_LE(err, 1e-5) << what << " row " << i << ": " << got[i] << " vs PyTorch " << want[i];
  }
  ::testing::Test::RecordProperty(what + "_worst_rel_err", std::to_string(worst));
}

struct GoldenSet {
  const char* name;
  const char* input;
  TextFormat format;
};

class DlrmGolden : public ::testing::TestWithParam<GoldenSet> {};

TEST_P(DlrmGolden, LogitsEqualPyTorch) {
  const GoldenSet g = GetParam();
  const std::string dir = test::fixture_path(std::string("dlrm/") + g.name);
  const Scored s = score_file(dir + "/model", dir + "/" + g.input, g.format);
  for (size_t i = 0; i < s.errors.size(); ++i) EXPECT_EQ(s.errors[i], "") << g.name << " row " << i;
  expect_parity(s.logits, golden_logits(dir + "/golden_logits.csv"), g.name);
}

INSTANTIATE_TEST_SUITE_P(Configs, DlrmGolden,
                         ::testing::Values(GoldenSet{"classic", "input.tsv", TextFormat::kCriteo},
                                           GoldenSet{"torchrec_dot", "input.tsv", TextFormat::kCriteo},
                                           GoldenSet{"dcnv2", "input.csv", TextFormat::kCsv},
                                           GoldenSet{"cat", "input.tsv", TextFormat::kCriteo}),
                         [](const auto& p) { return std::string(p.param.name); });

// The trained food-truck model (the seed's architecture, trained by train_seed.py): every logit of
// test.csv and the seed's metrics as PyTorch computes them.
TEST(DlrmGoldenFoodtruck, TrainedModelLogitsAndMetricsEqualPyTorch) {
  const std::string dir = test::fixture_path("dlrm/foodtruck");
  const Scored s = score_file(dir + "/model", dir + "/test.csv", TextFormat::kCsv);
  for (size_t i = 0; i < s.errors.size(); ++i) EXPECT_EQ(s.errors[i], "") << "row " << i;
  expect_parity(s.logits, golden_logits(dir + "/golden_test_logits.csv"), "foodtruck");
  // Labels from test.csv.
  TextSpec ts;
  ts.format = TextFormat::kCsv;
  ts.text_field.clear();
  std::vector<int> labels;
  for (const TextChunk& ch : index_text_inputs({dir + "/test.csv"}, ts, 100000)) {
    for (const FieldRow& r : read_field_chunk(ch, {"label"})) labels.push_back(std::stoi(r.values[0]));
  }
  const BinaryMetrics m = binary_metrics(s.logits, labels, 0.5);
  std::ifstream in(dir + "/metrics.json");
  const nlohmann::json want = nlohmann::json::parse(in);
  EXPECT_EQ(m.n, want["rows"].get<int64_t>());
  EXPECT_EQ(m.positives, want["positives"].get<int64_t>());
  EXPECT_NEAR(m.auc, want["auc"].get<double>(), 1e-6);
  EXPECT_NEAR(m.precision, want["precision"].get<double>(), 1e-9);
  EXPECT_NEAR(m.recall, want["recall"].get<double>(), 1e-9);
  EXPECT_NEAR(m.log_loss, want["log_loss"].get<double>(), 1e-6);
}

// The published configurations (models/dlrm/configs) run end to end on Criteo rows: tables capped
// at 2,000 rows (the shapes of the MLPs and interactions are the real ones), random weights, the
// Criteo feature spec; every logit equals the per-sample definition.
class DlrmPublished : public ::testing::TestWithParam<std::string> {};

TEST_P(DlrmPublished, RunsOnCriteoRowsAsDefined) {
  Json j = read_json_file(std::string(FLURRY_SOURCE_DIR) + "/models/dlrm/configs/" + GetParam() + ".json");
  for (Json& t : j["embedding_tables"]) t["num_embeddings"] = std::min<int64_t>(t["num_embeddings"].get<int64_t>(), 2000);
  const DlrmConfig c = dlrm_config_from_json(j, GetParam());
  const std::string dir = test::fresh_temp_dir("dlrm-published-" + GetParam());
  models::RandomCheckpointOptions ro;
  ro.seed = 5;
  ro.dtype = DType::F32;
  ro.threads = 2;
  models::write_random_checkpoint(dlrm_weight_table(c), dir + "/model.safetensors", ro);
  const Checkpoint ck = Checkpoint::open(dir + "/model.safetensors");
  const DlrmModel m = load_dlrm_cpu(c, ck);
  const FeatureSpec spec = load_feature_spec(std::string(FLURRY_SOURCE_DIR) + "/models/dlrm/configs/criteo_features.json");
  FeatureEncoder enc(c, spec);
  TextSpec ts;
  ts.format = TextFormat::kCriteo;
  ts.text_field.clear();
  std::vector<FieldRow> rows;
  for (const TextChunk& ch : index_text_inputs({test::fixture_path("dlrm/classic/input.tsv")}, ts, 1000)) {
    auto part = read_field_chunk(ch, enc.columns());
    rows.insert(rows.end(), part.begin(), part.end());
  }
  rows.resize(16);
  DlrmBatch b;
  std::vector<std::string> errors;
  enc.encode(static_cast<int64_t>(rows.size()), [&](int64_t i, int col) -> const std::string* {
    return &rows[static_cast<size_t>(i)].values[static_cast<size_t>(col)];
  }, &b, &errors, nullptr);
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  DlrmScratch s;
  std::vector<float> logits(rows.size(), NAN);
  dlrm_forward(m, b, s, logits.data());
  for (int64_t i = 0; i < b.n; ++i) {
    const float ref = naive_logit(m, b, i);
    EXPECT_NEAR(logits[static_cast<size_t>(i)], ref, 1e-4 * (1.0 + std::fabs(ref))) << GetParam() << " row " << i;
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Configs, DlrmPublished, ::testing::Values("criteo_kaggle", "criteo_terabyte", "mlperf_dlrm_v2"));

TEST(DlrmMetrics, AucWithTiesAndDegenerateSets) {
  // By hand over the (positive, negative) pairs: (0.8, 0.4) 1, (0.8, 0.1) 1, (0.4, 0.4) a tie 0.5,
  // (0.4, 0.1) 1 -> AUC 3.5 / 4.
  const std::vector<float> l = {0.8f, 0.4f, 0.4f, 0.1f};
  const std::vector<int> y = {1, 1, 0, 0};
  const BinaryMetrics m = binary_metrics(l, y, 0.5);
  EXPECT_DOUBLE_EQ(m.auc, 3.5 / 4.0);
  // Probabilities sigmoid(l) are all >= 0.5: everything predicted positive.
  EXPECT_DOUBLE_EQ(m.precision, 0.5);
  EXPECT_DOUBLE_EQ(m.recall, 1.0);
  EXPECT_TRUE(std::isnan(binary_metrics({0.1f, 0.2f}, {1, 1}, 0.5).auc));
  EXPECT_THROW(binary_metrics({0.1f}, {2}, 0.5), Error);
}

}  // namespace
}  // namespace flurry::dlrm
