// BertGpu (models/bert/gpu) against the CPU reference bert_forward + pool (label gpu: the GPU
// tests skip without a GPU; the sizing tests run everywhere):
//   the real all-MiniLM-L6-v2 (models-cache, skipped when absent): per-sentence cosine >= 0.999 in
//     fp16 against sentence-transformers' goldens (tests/fixtures/bert/minilm_goldens.json) and the
//     CPU path, on short, 256-token-truncated and mixed batches; batched = single-sentence results;
//   random checkpoints written from bert_weight_table: a bert-base shape (12 heads x 64, 768 wide,
//     2 layers) and a MiniLM shape (12 x 32), every pooling with and without normalisation, odd
//     lengths, one-token sequences, the longest allowed (512), small token budgets that force many
//     batches, and an empty request list; bad sequences refused;
//   CUDA graphs: the shape buckets (run everywhere), and graphs on and off giving the same vectors
//     bit for bit on a MiniLM-shaped checkpoint over request lists that replay each bucket.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "models/bert/gpu/bert_gpu.h"
#include "models/bert/model.h"
#include "models/common/weight_table.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "tests/common/test_util.h"

namespace fs = std::filesystem;

namespace flurry::bert {
namespace {

std::string minilm_dir() { return std::string(FLURRY_SOURCE_DIR) + "/models-cache/all-MiniLM-L6-v2"; }

double cosine(const float* a, const float* b, int64_t d) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < d; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

// The CPU reference of one request list: bert_forward + pool (+ l2_normalize), one at a time.
std::vector<float> cpu_encode(const BertModel& m, const std::vector<std::vector<int32_t>>& seqs, Pooling p,
                              bool normalize) {
  const int64_t d = m.config().hidden_size;
  int64_t longest = 1;
  for (const auto& s : seqs) longest = std::max<int64_t>(longest, static_cast<int64_t>(s.size()));
  BertScratch scratch(m, longest);
  std::vector<float> out(seqs.size() * static_cast<size_t>(d));
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto n = static_cast<int64_t>(seqs[i].size());
    bert_forward(m, seqs[i].data(), n, scratch);
    float* v = out.data() + i * static_cast<size_t>(d);
    pool(scratch.hidden.data(), n, d, p, v);
    if (normalize) l2_normalize(v, d);
  }
  return out;
}

std::vector<std::vector<int32_t>> random_seqs(const std::vector<int>& lens, int64_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> pick(1000 < vocab ? 1000 : 0, static_cast<int32_t>(vocab - 1));
  std::vector<std::vector<int32_t>> seqs;
  for (int n : lens) {
    std::vector<int32_t> s(static_cast<size_t>(n));
    for (auto& id : s) id = pick(rng);
    s.front() = 101 < vocab ? 101 : 0;  // [CLS]-like first token
    seqs.push_back(s);
  }
  return seqs;
}

// ---- sizing (no device needed) ----

BertConfig bert_base_shape(int64_t layers) {
  BertConfig c;
  c.hidden_size = 768;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 12;
  c.intermediate_size = 3072;
  c.vocab_size = 4000;
  c.max_position_embeddings = 512;
  c.type_vocab_size = 2;
  c.layer_norm_eps = 1e-12f;
  return c;
}
BertConfig minilm_shape(int64_t layers) {
  BertConfig c = bert_base_shape(layers);
  c.hidden_size = 384;
  c.intermediate_size = 1536;
  return c;
}

TEST(BertGpuSizing, TokenBudgetFitsTheMemoryGiven) {
  const BertConfig c = minilm_shape(6);
  const size_t weights = BertGpu::weight_bytes(c, DType::F16);
  EXPECT_GT(weights, size_t{0});
  EXPECT_EQ(BertGpu::tokens_for_memory(c, DType::F16, weights / 2, 0), 0);
  for (size_t mib : {64, 256, 1024, 80 * 1024}) {
    const size_t bytes = size_t{mib} << 20;
    const int64_t t = BertGpu::tokens_for_memory(c, DType::F16, bytes, 256);
    EXPECT_EQ(t % 64, 0);
    EXPECT_LE(t, kDefaultMaxTokens);
    if (t > 0) {
      EXPECT_LE(weights + BertGpu::state_bytes(c, DType::F16, t, 256), bytes) << mib << " MiB";
    }
    if (t > 0 && t < kDefaultMaxTokens) {
      EXPECT_GT(weights + BertGpu::state_bytes(c, DType::F16, t + 64, 256) + Arena::kDefaultAlign, bytes);
    }
  }
  EXPECT_EQ(BertGpu::tokens_for_memory(c, DType::F16, size_t{80} << 30, 256), kDefaultMaxTokens);
  // Buffers grow with the budget.
  EXPECT_LT(BertGpu::state_bytes(c, DType::F16, 1024, 64), BertGpu::state_bytes(c, DType::F16, 2048, 64));
}

TEST(BertGpuSizing, RefusesWhatTheKernelsCannotRun) {
  BertGpuOptions o;
  BertConfig c = minilm_shape(2);
  EXPECT_NO_THROW(BertGpu::check_supported(c, o));
  EXPECT_NO_THROW(BertGpu::check_supported(bert_base_shape(2), o));
  c.num_attention_heads = 3;  // head_dim 128
  EXPECT_THROW(BertGpu::check_supported(c, o), Error);
  c = minilm_shape(2);
  o.dtype = DType::F32;
  EXPECT_THROW(BertGpu::check_supported(c, o), Error);
  o.dtype = DType::F16;
  o.max_seq_len = 513;
  EXPECT_THROW(BertGpu::check_supported(c, o), Error);
}

// Every batch runs as its bucket: never smaller, never above the caps, under 1/8 (or 64 tokens)
// more rows, a power-of-two sequence count, the attention tile's length; few distinct buckets.
TEST(BertGpuSizing, ShapeBucketsCoverEveryBatchWithLittlePadding) {
  for (const int64_t max_tokens : {int64_t{600}, int64_t{4096}, kDefaultMaxTokens}) {
    std::set<int64_t> sizes;
    for (int64_t rows = 1; rows <= max_tokens; ++rows) {
      const BertBatchShape s = BertGpu::bucket_shape(rows, 1, 1, max_tokens, 1024);
      ASSERT_GE(s.rows, rows);
      ASSERT_LE(s.rows, max_tokens);
      ASSERT_LT(s.rows - rows, std::max<int64_t>(64, rows / 8)) << rows << " tokens";
      sizes.insert(s.rows);
    }
    EXPECT_LE(sizes.size(), 72u) << "token buckets under a budget of " << max_tokens;
  }
  for (int batch = 1; batch <= 1000; ++batch) {
    const BertBatchShape s = BertGpu::bucket_shape(batch, batch, 1, 4096, 1000);
    ASSERT_GE(s.batch, batch);
    ASSERT_LE(s.batch, 1000);
    ASSERT_TRUE(s.batch == 1000 || (s.batch & (s.batch - 1)) == 0) << s.batch;
  }
  for (int len = 1; len <= 512; ++len) {
    const BertBatchShape s = BertGpu::bucket_shape(len, 1, len, 4096, 8);
    ASSERT_EQ(s.max_len % 64, 0);
    ASSERT_GE(s.max_len, len);
    ASSERT_LT(s.max_len, len + 64);
  }
  EXPECT_THROW(BertGpu::bucket_shape(4097, 1, 1, 4096, 8), Error);
  EXPECT_THROW(BertGpu::bucket_shape(10, 9, 1, 4096, 8), Error);
}

// ---- random checkpoints ----

struct RandomModel {
  BertConfig config;
  std::string dir;
  std::shared_ptr<const BertModel> cpu;
};

RandomModel make_random(const BertConfig& c, const std::string& name, uint64_t seed) {
  RandomModel r;
  r.config = c;
  r.dir = test::fresh_temp_dir(name);
  models::write_random_checkpoint(bert_weight_table(c), r.dir + "/model.safetensors", {seed, DType::F16, 2});
  r.cpu = BertModel::from_checkpoint(c, Checkpoint::open(r.dir));
  return r;
}

void expect_close_rows(const std::string& name, const std::vector<float>& got, const std::vector<float>& want,
                       int64_t d, double min_cos) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 1.0;
  for (size_t i = 0; i * static_cast<size_t>(d) < got.size(); ++i) {
    const float* g = got.data() + i * static_cast<size_t>(d);
    for (int64_t j = 0; j < d; ++j) {
      ASSERT_TRUE(std::isfinite(g[j])) << name << ": row " << i << " col " << j;
    }
    const double c = cosine(g, want.data() + i * static_cast<size_t>(d), d);
    worst = std::min(worst, c);
    EXPECT_GE(c, min_cos) << name << ": row " << i;
  }
  std::printf("%s: worst cosine %.7f over %zu rows\n", name.c_str(), worst, got.size() / static_cast<size_t>(d));
}

void check_random_model(const RandomModel& m, const std::string& tag, std::mt19937_64& rng) {
  const int64_t d = m.config.hidden_size;
  // Odd lengths, one-token sequences, the longest allowed, a spread in between.
  const std::vector<int> lens = {1, 7, 33, 512, 2, 1, 130, 255, 64, 65, 3, 400};
  const auto seqs = random_seqs(lens, m.config.vocab_size, rng);
  for (DType t : {DType::F16, DType::BF16}) {
    for (Pooling p : {Pooling::kMean, Pooling::kCls, Pooling::kMax, Pooling::kMeanSqrtLen}) {
      for (bool norm : {false, true}) {
        if (t == DType::BF16 && (p != Pooling::kMean || !norm)) continue;  // bf16: the default head only
        const std::string name = tag + "_" + dtype_name(t) + "_" + pooling_name(p) + (norm ? "_l2" : "");
        BertGpuOptions o;
        o.dtype = t;
        o.max_tokens = 2048;
        o.pooling = p;
        o.normalize = norm;
        auto gpu = BertGpu::create(m.config, Checkpoint::open(m.dir), o);
        std::vector<float> got(seqs.size() * static_cast<size_t>(d), std::nanf(""));
        gpu->encode(seqs, got.data());
        const std::vector<float> want = cpu_encode(*m.cpu, seqs, p, norm);
        // fp16: 0.999 (the bound); bf16 keeps 8 bits of mantissa, a looser 0.995.
        expect_close_rows(name, got, want, d, t == DType::F16 ? 0.999 : 0.995);
      }
    }
  }
}

TEST(BertGpuRandom, BertBaseShapeMatchesCpuForEveryPooling) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("BertGpuRandom.base");
  const RandomModel m = make_random(bert_base_shape(2), "bert-gpu-base", 11);
  check_random_model(m, "bert_base_hd64", rng);
}

TEST(BertGpuRandom, MiniLMShapeMatchesCpuForEveryPooling) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("BertGpuRandom.minilm");
  const RandomModel m = make_random(minilm_shape(2), "bert-gpu-minilm", 12);
  check_random_model(m, "minilm_hd32", rng);
}

// Budgets that cut the request list into many batches (3 sequences, 600 tokens) give the vectors
// one large batch gives, and one sequence alone gives the same vector as inside a batch; an empty
// request list does nothing; bad sequences are refused.
TEST(BertGpuRandom, BatchingDoesNotChangeResults) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("BertGpuRandom.batching");
  const RandomModel m = make_random(bert_base_shape(2), "bert-gpu-batching", 13);
  const int64_t d = m.config.hidden_size;
  const auto seqs = random_seqs({17, 300, 1, 512, 45, 46, 2, 99, 250, 5}, m.config.vocab_size, rng);
  BertGpuOptions big;
  big.max_tokens = 4096;
  big.normalize = true;
  auto one_batch = BertGpu::create(m.config, Checkpoint::open(m.dir), big);
  BertGpuOptions small = big;
  small.max_tokens = 600;
  small.max_batch = 3;
  auto many = BertGpu::create(m.config, Checkpoint::open(m.dir), small);
  std::vector<float> a(seqs.size() * static_cast<size_t>(d)), b(a.size());
  one_batch->encode(seqs, a.data());
  many->encode(seqs, b.data());
  EXPECT_GE(many->stage_times().batches, 4);
  expect_close_rows("batched_vs_budget", b, a, d, 0.99999);
  for (size_t i = 0; i < seqs.size(); ++i) {
    std::vector<float> single(static_cast<size_t>(d));
    one_batch->encode({seqs[i]}, single.data());
    const double c = cosine(single.data(), a.data() + i * static_cast<size_t>(d), d);
    EXPECT_GE(c, 0.99999) << "sequence " << i << " alone vs batched";
  }
  std::vector<float> untouched(4, 7.0f);
  one_batch->encode({}, untouched.data());
  EXPECT_EQ(untouched[0], 7.0f);
  EXPECT_THROW(one_batch->encode({{}}, a.data()), Error);                                   // no tokens
  EXPECT_THROW(one_batch->encode({std::vector<int32_t>(513, 5)}, a.data()), Error);        // too long
  EXPECT_THROW(one_batch->encode({{101, static_cast<int32_t>(m.config.vocab_size)}}, a.data()), Error);  // bad id
  // The model still works after a refused request.
  one_batch->encode({seqs[0]}, a.data());
  EXPECT_GE(cosine(a.data(), b.data(), d), 0.99999);
}

// A bucket's second batch is captured as a CUDA graph and later ones replay it (in either staging
// slot); graphs off runs the same padded launches eagerly: the same vectors bit for bit, pass after
// pass, on a MiniLM-shaped checkpoint (head dim 32, 6 layers); and both match the CPU reference.
TEST(BertGpuRandom, GraphsOnAndOffGiveIdenticalVectors) {
  FLURRY_REQUIRE_GPU();
  if (sync_launches()) GTEST_SKIP() << "FLURRY_SYNC_LAUNCHES runs every batch eagerly";
  auto rng = test::test_rng("BertGpuRandom.graphs");
  const RandomModel m = make_random(minilm_shape(6), "bert-gpu-graphs", 14);
  const int64_t d = m.config.hidden_size;
  std::vector<int> lens = {256, 1, 2, 63, 64, 65, 255};
  std::uniform_int_distribution<int> pick_len(1, 256);
  while (lens.size() < 120) lens.push_back(pick_len(rng));
  const auto seqs = random_seqs(lens, m.config.vocab_size, rng);
  BertGpuOptions o;
  o.max_tokens = 2048;  // ~8 batches per pass, several buckets
  o.max_seq_len = 256;
  o.normalize = true;
  BertGpuOptions eager = o;
  eager.use_graphs = false;
  auto with = BertGpu::create(m.config, Checkpoint::open(m.dir), o);
  auto without = BertGpu::create(m.config, Checkpoint::open(m.dir), eager);
  ASSERT_TRUE(with->graphs_enabled());
  ASSERT_FALSE(without->graphs_enabled());
  std::vector<float> ref(seqs.size() * static_cast<size_t>(d), std::nanf(""));
  without->encode(seqs, ref.data());
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<float> got(ref.size(), std::nanf(""));
    with->encode(seqs, got.data());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - ref[i]));
    EXPECT_EQ(std::memcmp(got.data(), ref.data(), ref.size() * sizeof(float)), 0)
        << "pass " << pass << ": graphs changed the vectors (largest difference " << worst << ")";
  }
  // One sequence at a time: the smallest buckets, replayed from the second call on.
  for (size_t i : {size_t{0}, size_t{1}, size_t{1}, size_t{1}, size_t{0}, size_t{0}}) {
    std::vector<float> one(static_cast<size_t>(d)), one_eager(static_cast<size_t>(d));
    with->encode({seqs[i]}, one.data());
    without->encode({seqs[i]}, one_eager.data());
    EXPECT_EQ(std::memcmp(one.data(), one_eager.data(), one.size() * sizeof(float)), 0) << "sequence " << i;
  }
  EXPECT_GT(with->graphs(), size_t{0});
  EXPECT_GT(with->stage_times().graph_batches, 0);
  EXPECT_EQ(without->graphs(), size_t{0});
  EXPECT_EQ(without->stage_times().graph_batches, 0);
  EXPECT_GE(with->stage_times().padded_tokens, with->stage_times().tokens);
  std::printf("graphs: %zu captured, %lld of %lld batches replayed\n", with->graphs(),
              static_cast<long long>(with->stage_times().graph_batches),
              static_cast<long long>(with->stage_times().batches));
  expect_close_rows("minilm_graphs_vs_cpu", ref, cpu_encode(*m.cpu, seqs, Pooling::kMean, true), d, 0.999);
}

// ---- the real all-MiniLM-L6-v2 ----

class MiniLMGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    FLURRY_REQUIRE_GPU();
    FLURRY_REQUIRE_MODEL_DATA(fs::exists(minilm_dir() + "/model.safetensors"),
                              minilm_dir() << " absent (run make models: tools/fetch_minilm.sh)");
    std::ifstream in(test::fixture_path("bert/minilm_goldens.json"));
    goldens_ = nlohmann::json::parse(in);
    for (const auto& c : goldens_["cases"]) {
      seqs_.push_back(c["ids"].get<std::vector<int32_t>>());
      want_.push_back(c["embedding"].get<std::vector<float>>());
    }
  }
  nlohmann::json goldens_;
  std::vector<std::vector<int32_t>> seqs_;
  std::vector<std::vector<float>> want_;
};

TEST_F(MiniLMGpu, MatchesSentenceTransformersAndTheCpuPath) {
  const std::shared_ptr<const BertModel> cpu = BertModel::load(minilm_dir());
  const int64_t d = cpu->config().hidden_size;
  ASSERT_EQ(d, 384);
  BertGpuOptions o;
  o.max_tokens = 4096;
  o.max_seq_len = 256;
  o.pooling = Pooling::kMean;  // 1_Pooling/config.json
  o.normalize = true;          // modules.json's Normalize
  auto gpu = BertGpu::load(minilm_dir(), o);
  const std::vector<float> ref = cpu_encode(*cpu, seqs_, o.pooling, o.normalize);

  // Mixed batch: every case at once (8 .. 256 tokens, two truncated at 256).
  std::vector<float> mixed(seqs_.size() * static_cast<size_t>(d));
  gpu->encode(seqs_, mixed.data());
  expect_close_rows("minilm_f16_mixed_vs_cpu", mixed, ref, d, 0.999);
  for (size_t i = 0; i < seqs_.size(); ++i) {
    const double c = cosine(mixed.data() + i * static_cast<size_t>(d), want_[i].data(), d);
    EXPECT_GE(c, 0.999) << "case " << i << " (" << seqs_[i].size() << " tokens) vs sentence-transformers";
  }
  // Short-only and truncated-only batches, and each sentence alone: the same vectors.
  std::vector<std::vector<int32_t>> short_seqs, long_seqs;
  std::vector<size_t> short_idx, long_idx;
  for (size_t i = 0; i < seqs_.size(); ++i) {
    if (seqs_[i].size() == 256) {
      long_seqs.push_back(seqs_[i]);
      long_idx.push_back(i);
    } else {
      short_seqs.push_back(seqs_[i]);
      short_idx.push_back(i);
    }
  }
  ASSERT_FALSE(long_seqs.empty()) << "the goldens have 256-token-truncated cases";
  for (const auto& [group, idx] : {std::make_pair(&short_seqs, &short_idx), std::make_pair(&long_seqs, &long_idx)}) {
    std::vector<float> out(group->size() * static_cast<size_t>(d));
    gpu->encode(*group, out.data());
    for (size_t k = 0; k < group->size(); ++k) {
      const size_t i = (*idx)[k];
      const float* v = out.data() + k * static_cast<size_t>(d);
      EXPECT_GE(cosine(v, want_[i].data(), d), 0.999) << "case " << i;
      EXPECT_GE(cosine(v, mixed.data() + i * static_cast<size_t>(d), d), 0.99999) << "case " << i << ": batch changed it";
    }
  }
  for (size_t i = 0; i < seqs_.size(); ++i) {
    std::vector<float> one(static_cast<size_t>(d));
    gpu->encode({seqs_[i]}, one.data());
    EXPECT_GE(cosine(one.data(), mixed.data() + i * static_cast<size_t>(d), d), 0.99999) << "case " << i << " alone";
    double norm = 0;
    for (float x : one) norm += static_cast<double>(x) * x;
    EXPECT_NEAR(norm, 1.0, 1e-4);
  }
}

}  // namespace
}  // namespace flurry::bert
