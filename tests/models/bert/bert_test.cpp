// all-MiniLM-L6-v2 (head dim 32) and a committed random BERT with head dim 64 on the CPU reference
// path against sentence-transformers (tests/fixtures/bert/make_goldens.py, make_random_bert.py): the
// token ids it feeds the model (truncated at max_seq_length: 256 for MiniLM, not tokenizer.json's
// 128; 128 for the random one) and the embedding, cosine >= 0.99999 per sentence;
// the sentence-transformers configuration read from the folder; checkpoints and configs this BERT
// cannot run refused with the reason; batching does not change a vector.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/bert/app/embed_job.h"
#include "models/bert/model.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace fs = std::filesystem;

namespace flurry::bert {
namespace {

std::string minilm_dir() { return std::string(FLURRY_SOURCE_DIR) + "/models-cache/all-MiniLM-L6-v2"; }

class MiniLM : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (fs::exists(minilm_dir() + "/model.safetensors")) assets_ = new EmbedAssets(load_embed_assets(minilm_dir()));
  }
  static void TearDownTestSuite() {
    delete assets_;
    assets_ = nullptr;
  }
  void SetUp() override {
    FLURRY_REQUIRE_MODEL_DATA(assets_ != nullptr, minilm_dir() << " absent (run make models: tools/fetch_minilm.sh)");
  }
  static nlohmann::json goldens() {
    std::ifstream in(test::fixture_path("bert/minilm_goldens.json"));
    return nlohmann::json::parse(in);
  }
  static EmbedAssets* assets_;
};
EmbedAssets* MiniLM::assets_ = nullptr;

double cosine(const float* a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

TEST_F(MiniLM, SentenceTransformersConfigurationIsRead) {
  EXPECT_TRUE(assets_->sentence.sentence_transformers);
  EXPECT_EQ(assets_->sentence.pooling, Pooling::kMean);
  EXPECT_TRUE(assets_->sentence.normalize);
  EXPECT_EQ(assets_->sentence.max_seq_length, 256);  // sentence_bert_config.json, not tokenizer.json's 128
  EXPECT_EQ(assets_->model->config().hidden_size, 384);
  EXPECT_EQ(assets_->model->config().head_dim(), 32);
}

// Token ids and embeddings of the CPU path against the goldens of sentence-transformers: ids equal,
// cosine >= 0.99999 and each element within 2e-5 per sentence, unit length after Normalize.
void expect_matches_goldens(const EmbedAssets& a, const nlohmann::json& g) {
  const int max_len = g["max_seq_length"].get<int>();
  EmbedOptions o;
  CpuEncoder enc(a, o, nullptr);
  const int64_t d = enc.dim();
  double worst = 1.0;
  for (const auto& c : g["cases"]) {
    const std::string text = c["text"];
    const auto want_ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(a.tokenizer->encode(text, max_len), want_ids) << text;
    std::vector<TextRow> rows(1);
    rows[0].text = text;
    std::vector<float> v(static_cast<size_t>(d), std::nanf(""));
    std::vector<std::string> errors;
    std::vector<int64_t> tokens;
    enc.encode(rows, v.data(), &errors, &tokens);
    ASSERT_TRUE(errors[0].empty()) << errors[0];
    EXPECT_EQ(tokens[0], static_cast<int64_t>(want_ids.size()));
    const auto want = c["embedding"].get<std::vector<float>>();
    ASSERT_EQ(want.size(), static_cast<size_t>(d));
    const double cs = cosine(v.data(), want);
    worst = std::min(worst, cs);
    EXPECT_GE(cs, 0.99999) << text;
    double norm = 0;
    for (float x : v) norm += static_cast<double>(x) * x;
    EXPECT_NEAR(norm, 1.0, 1e-5) << "modules.json's Normalize";
    for (int64_t j = 0; j < d; ++j) {
      EXPECT_NEAR(v[static_cast<size_t>(j)], want[static_cast<size_t>(j)], 2e-5) << text;
    }
  }
  std::printf("%s: worst cosine to sentence-transformers: %.9f\n", g["model"].get<std::string>().c_str(), worst);
}

// The goldens' sentences in one batch (one of them an error row) give the vectors each gives alone.
void expect_batch_equals_single(const EmbedAssets& a, const nlohmann::json& g) {
  EmbedOptions o;
  CpuEncoder enc(a, o, nullptr);
  const int64_t d = enc.dim();
  std::vector<TextRow> rows;
  for (const auto& c : g["cases"]) {
    TextRow r;
    r.text = c["text"];
    rows.push_back(r);
  }
  rows[3].error = "a bad row in the middle";
  std::vector<float> all(rows.size() * static_cast<size_t>(d), -1.0f);
  std::vector<std::string> errors;
  std::vector<int64_t> tokens;
  enc.encode(rows, all.data(), &errors, &tokens);
  EXPECT_EQ(errors[3], "a bad row in the middle");
  for (int64_t j = 0; j < d; ++j) {
    EXPECT_EQ(all[static_cast<size_t>(3 * d + j)], 0.0f);
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i == 3) continue;
    std::vector<float> one(static_cast<size_t>(d));
    enc.encode({rows[i]}, one.data(), &errors, &tokens);
    for (int64_t j = 0; j < d; ++j) {
      ASSERT_EQ(one[static_cast<size_t>(j)], all[i * static_cast<size_t>(d) + static_cast<size_t>(j)]);
    }
  }
}

TEST_F(MiniLM, TokensAndEmbeddingsMatchSentenceTransformers) {
  const nlohmann::json g = goldens();
  ASSERT_EQ(g["max_seq_length"], 256);
  expect_matches_goldens(*assets_, g);
}

TEST_F(MiniLM, BatchingDoesNotChangeAVector) { expect_batch_equals_single(*assets_, goldens()); }

// Prompts (tests/fixtures/bert/make_prompt_goldens.py): an explicit prompt on the real folder, and on
// a copy whose config_sentence_transformers.json names prompts with a default: the default, a named
// one, and an empty prompt overriding the default. The prompt resolve_prompt picks must be the one
// sentence-transformers used, the ids equal, the vectors within cosine 0.99999 and 2e-5.
TEST_F(MiniLM, PromptsMatchSentenceTransformers) {
  std::ifstream in(test::fixture_path("bert/minilm_prompt_goldens.json"));
  const nlohmann::json g = nlohmann::json::parse(in);
  const fs::path copy = test::fresh_temp_dir("minilm-prompted");
  for (const auto& e : fs::directory_iterator(minilm_dir())) {
    if (e.path().filename() != "config_sentence_transformers.json") {
      fs::create_symlink(fs::absolute(e.path()), copy / e.path().filename());
    }
  }
  nlohmann::json st = nlohmann::json::object();
  if (fs::exists(minilm_dir() + "/config_sentence_transformers.json")) {
    std::ifstream cin(minilm_dir() + "/config_sentence_transformers.json");
    st = nlohmann::json::parse(cin);
  }
  st.update(g["config_sentence_transformers"]);
  std::ofstream(copy / "config_sentence_transformers.json") << st.dump(2);
  const EmbedAssets prompted = load_embed_assets(copy.string());
  EXPECT_EQ(prompted.sentence.default_prompt_name, "passage");
  EXPECT_EQ(prompted.sentence.prompts.size(), 3u);
  EXPECT_TRUE(assets_->sentence.prompts.empty());

  double worst = 1.0;
  int cases = 0;
  for (const auto& c : g["cases"]) {
    const EmbedAssets& a = c["folder"] == "plain" ? *assets_ : prompted;
    const nlohmann::json& args = c["args"];
    std::optional<std::string> prompt;
    if (args.contains("prompt")) prompt = args["prompt"].get<std::string>();
    const std::string name = args.contains("prompt_name") ? args["prompt_name"].get<std::string>() : "";
    EmbedOptions o;
    o.prompt = resolve_prompt(a.sentence, prompt, name, "test");
    const std::string what = c["text"].get<std::string>().substr(0, 40) + " with " + args.dump();
    EXPECT_EQ(o.prompt, c["prompt"].get<std::string>()) << what;
    CpuEncoder enc(a, o, nullptr);
    enc.set_prompt(o.prompt);
    std::vector<TextRow> rows(1);
    rows[0].text = c["text"];
    std::vector<int32_t> ids;
    ASSERT_EQ(enc.tokenize(rows[0], false, &ids), "");
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>()) << what;
    std::vector<float> v(static_cast<size_t>(enc.dim()), std::nanf(""));
    std::vector<std::string> errors;
    std::vector<int64_t> tokens;
    enc.encode(rows, v.data(), &errors, &tokens);
    ASSERT_TRUE(errors[0].empty()) << errors[0];
    const auto want = c["embedding"].get<std::vector<float>>();
    const double cs = cosine(v.data(), want);
    worst = std::min(worst, cs);
    EXPECT_GE(cs, 0.99999) << what;
    for (size_t j = 0; j < want.size(); ++j) EXPECT_NEAR(v[j], want[j], 2e-5) << what;
    ++cases;
  }
  EXPECT_EQ(cases, 12);
  std::printf("prompts: %d cases, worst cosine to sentence-transformers %.9f\n", cases, worst);

  // What resolve_prompt refuses: an unknown name (the error lists the known ones), and any prompt
  // on a checkpoint whose pooling leaves the prompt out.
  try {
    resolve_prompt(prompted.sentence, std::nullopt, "document", "--prompt-name");
    ADD_FAILURE() << "an unknown prompt name was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("passage, query, retrieval"), std::string::npos) << e.what();
  }
  SentenceConfig no_prompt_pooling = prompted.sentence;
  no_prompt_pooling.include_prompt = false;
  EXPECT_THROW(resolve_prompt(no_prompt_pooling, std::nullopt, "", "--prompt"), Error);
  EXPECT_EQ(resolve_prompt(no_prompt_pooling, std::string(), "", "--prompt"), "");
  fs::remove_all(copy);
}

// A random BERT with the head size of bert-base (tests/fixtures/bert/make_random_bert.py: 4 heads x
// 64, F16 weights, a vocab.txt and no tokenizer.json), committed so that it runs everywhere.
class RandomH64 : public ::testing::Test {
 protected:
  static std::string dir() { return test::fixture_path("bert/random_h64"); }
  static nlohmann::json goldens() {
    std::ifstream in(test::fixture_path("bert/random_h64_goldens.json"));
    return nlohmann::json::parse(in);
  }
};

TEST_F(RandomH64, FolderLoadsAsSentenceTransformersConfigures) {
  const EmbedAssets a = load_embed_assets(dir());
  EXPECT_EQ(a.model->config().head_dim(), 64);
  EXPECT_EQ(a.model->config().hidden_size, 256);
  EXPECT_TRUE(a.sentence.sentence_transformers);
  EXPECT_EQ(a.sentence.pooling, Pooling::kMean);
  EXPECT_TRUE(a.sentence.normalize);
  EXPECT_EQ(a.sentence.max_seq_length, 128);
}

TEST_F(RandomH64, TokensAndEmbeddingsMatchSentenceTransformers) {
  const nlohmann::json g = goldens();
  ASSERT_EQ(g["max_seq_length"], 128);
  bool truncated = false;
  for (const auto& c : g["cases"]) truncated = truncated || c["ids"].size() == 128u;
  ASSERT_TRUE(truncated) << "no golden sentence reaches max_seq_length";
  expect_matches_goldens(load_embed_assets(dir()), g);
}

TEST_F(RandomH64, BatchingDoesNotChangeAVector) { expect_batch_equals_single(load_embed_assets(dir()), goldens()); }

TEST(TokenWindows, CoverTheTextWithTheOverlapAsked) {
  std::vector<int32_t> ids = {101};
  for (int i = 0; i < 23; ++i) ids.push_back(1000 + i);
  ids.push_back(102);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  const auto w = token_windows(ids, 10, 3, &ranges);  // width 8, stride 5: [0,8) [5,13) [10,18) [15,23)
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(ranges, (std::vector<std::pair<int64_t, int64_t>>{{0, 8}, {5, 13}, {10, 18}, {15, 23}}));
  for (size_t k = 0; k < w.size(); ++k) {
    EXPECT_EQ(w[k].front(), 101);
    EXPECT_EQ(w[k].back(), 102);
    EXPECT_LE(w[k].size(), 10u);
    for (int64_t j = ranges[k].first; j < ranges[k].second; ++j) {
      EXPECT_EQ(w[k][static_cast<size_t>(j - ranges[k].first + 1)], 1000 + j);
    }
  }
  // Short and empty texts: one window.
  EXPECT_EQ(token_windows({101, 7, 102}, 10, 3, &ranges).size(), 1u);
  EXPECT_EQ(token_windows({101, 102}, 10, 0, &ranges).size(), 1u);
  EXPECT_EQ(ranges[0], (std::pair<int64_t, int64_t>{0, 0}));
  EXPECT_THROW(token_windows(ids, 10, 8, &ranges), Error);  // overlap >= width: no progress
  EXPECT_THROW(token_windows(ids, 2, 0, &ranges), Error);
}

TEST(BertCheckpoint, RefusesWhatItCannotRun) {
  const fs::path dir = test::fresh_temp_dir("bert-bad");
  nlohmann::json cfg = {{"model_type", "bert"}, {"hidden_size", 32}, {"num_hidden_layers", 2},
                        {"num_attention_heads", 4}, {"intermediate_size", 64}, {"vocab_size", 50},
                        {"max_position_embeddings", 16}, {"type_vocab_size", 2}, {"layer_norm_eps", 1e-12}};
  const BertConfig c = bert_config_from_json(cfg, "cfg");
  models::WeightTable t = bert_weight_table(c);
  models::write_random_checkpoint(t, (dir / "model.safetensors").string(), {7, DType::F32, 1});
  std::ofstream(dir / "config.json") << cfg.dump();
  auto m = BertModel::load(dir.string());
  // Every token's embedding is finite and the pooled vector is unit length when normalised.
  BertScratch s(*m, 16);
  const int32_t ids[5] = {1, 7, 9, 3, 2};
  bert_forward(*m, ids, 5, s);
  std::vector<float> v(32);
  pool(s.hidden.data(), 5, 32, Pooling::kMean, v.data());
  l2_normalize(v.data(), 32);
  double n = 0;
  for (float x : v) n += static_cast<double>(x) * x;
  EXPECT_NEAR(n, 1.0, 1e-6);
  EXPECT_THROW(bert_forward(*m, ids, 17, s), Error);
  const int32_t bad[1] = {50};
  EXPECT_THROW(bert_forward(*m, bad, 1, s), Error);

  auto expect_refused = [&](nlohmann::json j, const std::string& what) {
    try {
      bert_config_from_json(j, "cfg");
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  nlohmann::json r = cfg;
  r["model_type"] = "roberta";
  expect_refused(r, "model_type 'roberta'");
  r = cfg;
  r["hidden_act"] = "gelu_new";
  expect_refused(r, "hidden_act 'gelu_new'");
  r = cfg;
  r["position_embedding_type"] = "relative_key";
  expect_refused(r, "relative_key");
  r = cfg;
  r["num_attention_heads"] = 5;
  expect_refused(r, "not a multiple");
  r = cfg;
  r.erase("hidden_size");
  expect_refused(r, "hidden_size");

  // A checkpoint of another shape is refused naming the tensor.
  nlohmann::json wider = cfg;
  wider["intermediate_size"] = 96;
  std::ofstream(dir / "config.json") << wider.dump();
  try {
    BertModel::load(dir.string());
    ADD_FAILURE() << "a checkpoint of the wrong shape was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("intermediate.dense"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace flurry::bert
