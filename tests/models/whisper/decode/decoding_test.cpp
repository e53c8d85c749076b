// decode() against openai-whisper's DecodingTask run on the same fake model (decode.json): greedy,
// beam search (patience, length penalty), best-of sampling with the shared hash sampler, language
// detection, prompts, prefixes, suppression options. Plus batching, determinism and sampler tests.
#include <cmath>
#include <vector>

#include "models/whisper/decoding.h"
#include "runtime/check.h"
#include "tests/models/whisper/decode/fake_model.h"
#include "tests/models/whisper/decode/golden_json.h"

namespace flurry::whisper::test {
namespace {

DecodingOptions options_from(const nlohmann::json& j) {
  DecodingOptions o;
  if (j.contains("task")) o.task = j["task"] == "translate" ? Task::kTranslate : Task::kTranscribe;
  if (j.contains("language")) o.language = j["language"];
  if (j.contains("temperature")) o.temperature = j["temperature"];
  if (j.contains("sample_len")) o.sample_len = j["sample_len"];
  if (j.contains("best_of")) o.best_of = j["best_of"];
  if (j.contains("beam_size")) o.beam_size = j["beam_size"];
  if (j.contains("patience")) o.patience = j["patience"];
  if (j.contains("length_penalty")) o.length_penalty = j["length_penalty"].get<double>();
  if (j.contains("prompt")) o.prompt = j["prompt"].get<std::vector<int>>();
  if (j.contains("prefix")) o.prefix = j["prefix"].get<std::vector<int>>();
  if (j.contains("suppress_tokens")) o.suppress_tokens = parse_suppress_tokens(j["suppress_tokens"]);
  if (j.contains("suppress_blank")) o.suppress_blank = j["suppress_blank"];
  if (j.contains("without_timestamps")) o.without_timestamps = j["without_timestamps"];
  if (j.contains("max_initial_timestamp")) {
    if (j["max_initial_timestamp"].is_null()) {
      o.max_initial_timestamp.reset();
    } else {
      o.max_initial_timestamp = j["max_initial_timestamp"].get<double>();
    }
  }
  return o;
}

void expect_result(const DecodingResult& r, const nlohmann::json& want) {
  EXPECT_EQ(r.language, want["language"].get<std::string>());
  EXPECT_EQ(r.tokens, want["tokens"].get<std::vector<int>>());
  EXPECT_EQ(r.text, want["text"].get<std::string>());
  EXPECT_NEAR(r.avg_logprob, want["avg_logprob"].get<double>(), 1e-4);
  EXPECT_NEAR(r.no_speech_prob, want["no_speech_prob"].get<double>(), 1e-5);
  EXPECT_DOUBLE_EQ(r.compression_ratio, want["compression_ratio"].get<double>());
  EXPECT_NEAR(r.temperature, want["temperature"].get<double>(), 1e-6);
  if (want["language_probs"].is_null()) {
    EXPECT_TRUE(r.language_probs.empty());
  } else {
    ASSERT_EQ(r.language_probs.size(), want["language_probs"].size());
    for (const auto& [code, p] : r.language_probs) {
      EXPECT_NEAR(p, want["language_probs"][code].get<double>(), 1e-5) << code;
    }
  }
}

TEST(WhisperDecoding, MatchesOpenaiWhisperOnFakeModel) {
  const auto g = load_golden("decode.json");
  ASSERT_TRUE(g.contains("cases"));
  const SpecialTokens sp = fake_special_tokens();
  int n = 0;
  for (const auto& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    FakeWhisperModel model;
    const auto& audio = c["audio"];
    for (size_t a = 0; a < audio.size(); ++a) model.set_audio(static_cast<int>(a), audio[a][0], audio[a][1]);
    HashSampler sampler;
    DecodeHooks hooks;
    hooks.detokenize = fake_detokenize;
    hooks.sampler = &sampler;
    const DecodingOptions o = options_from(c["options"]);
    const auto results = decode(model, sp, o, static_cast<int>(audio.size()), hooks);
    ASSERT_EQ(results.size(), c["results"].size());
    for (size_t a = 0; a < results.size(); ++a) expect_result(results[a], c["results"][a]);
    if (o.beam_size > 1) {
      EXPECT_GT(model.forks, 0) << "beam search never rearranged the caches";
    }
    ++n;
  }
  EXPECT_GE(n, 15);
}

// The same audio decodes the same alone and inside a batch, for every search.
TEST(WhisperDecoding, BatchingDoesNotChangeResults) {
  const SpecialTokens sp = fake_special_tokens();
  const int64_t keys[3][2] = {{4, 0}, {18, 2}, {9, 1}};
  for (int mode = 0; mode < 3; ++mode) {
    DecodingOptions o;
    if (mode == 1) o.beam_size = 4;
    if (mode == 2) {
      o.temperature = 0.7f;
      o.best_of = 2;
    }
    SCOPED_TRACE("mode " + std::to_string(mode));
    FakeWhisperModel batch;
    for (int a = 0; a < 3; ++a) batch.set_audio(a, keys[a][0], keys[a][1]);
    DecodeHooks hooks;
    hooks.detokenize = fake_detokenize;
    hooks.prompts = {{5, 6}, {}, {7, 8, 9, 10}};
    if (mode == 2) {
      // Draws interleave across the batch, so the sampling check is determinism, not equality.
      FakeWhisperModel again = batch;
      HashSampler s1, s2;
      hooks.sampler = &s1;
      const auto r1 = decode(batch, sp, o, 3, hooks);
      hooks.sampler = &s2;
      const auto r2 = decode(again, sp, o, 3, hooks);
      for (int a = 0; a < 3; ++a) EXPECT_EQ(r1[static_cast<size_t>(a)].tokens, r2[static_cast<size_t>(a)].tokens);
      continue;
    }
    const auto together = decode(batch, sp, o, 3, hooks);
    for (int a = 0; a < 3; ++a) {
      FakeWhisperModel single;
      single.set_audio(0, keys[a][0], keys[a][1]);
      DecodeHooks h1 = hooks;
      h1.prompts = {hooks.prompts[static_cast<size_t>(a)]};
      const auto alone = decode(single, sp, o, 1, h1);
      EXPECT_EQ(alone[0].tokens, together[static_cast<size_t>(a)].tokens) << "audio " << a;
      EXPECT_EQ(alone[0].language, together[static_cast<size_t>(a)].language);
      EXPECT_DOUBLE_EQ(alone[0].avg_logprob, together[static_cast<size_t>(a)].avg_logprob);
      EXPECT_DOUBLE_EQ(alone[0].no_speech_prob, together[static_cast<size_t>(a)].no_speech_prob);
    }
  }
}

TEST(WhisperDecoding, RejectsInconsistentOptions) {
  const SpecialTokens sp = fake_special_tokens();
  FakeWhisperModel model;
  model.set_audio(0, 1, 0);
  DecodingOptions o;
  o.beam_size = 2;
  o.best_of = 2;
  EXPECT_THROW(decode(model, sp, o, 1), flurry::Error);
  o = DecodingOptions();
  o.best_of = 3;  // best_of needs temperature > 0
  EXPECT_THROW(decode(model, sp, o, 1), flurry::Error);
  o = DecodingOptions();
  o.patience = 2.0f;
  EXPECT_THROW(decode(model, sp, o, 1), flurry::Error);
  o = DecodingOptions();
  o.length_penalty = 1.5;
  EXPECT_THROW(decode(model, sp, o, 1), flurry::Error);
  o = DecodingOptions();
  o.language = "xx";
  EXPECT_THROW(decode(model, sp, o, 1), flurry::Error);
}

// DecodingOptions::forced_length (benchmarks): greedy, beam search and best-of sampling all end with
// exactly that many tokens, shorter and longer than the model's own.
TEST(WhisperDecoding, ForcedLengthGivesExactlyThatManyTokens) {
  const SpecialTokens sp = fake_special_tokens();
  for (int mode = 0; mode < 3; ++mode) {
    DecodingOptions o;
    o.without_timestamps = true;
    if (mode == 1) o.beam_size = 3;
    if (mode == 2) {
      o.temperature = 0.6f;
      o.best_of = 2;
      o.seed = 11;
    }
    FakeWhisperModel free_model;
    free_model.set_audio(0, 4, 0);
    const auto natural = decode(free_model, sp, o, 1);
    for (int n : {1, 2, 9, 40}) {
      SCOPED_TRACE("mode " + std::to_string(mode) + ", length " + std::to_string(n));
      FakeWhisperModel model;
      model.set_audio(0, 4, 0);
      o.forced_length = n;
      const auto r = decode(model, sp, o, 1);
      EXPECT_EQ(static_cast<int>(r[0].tokens.size()), n);
      for (int t : r[0].tokens) EXPECT_NE(t, sp.eot);
      if (mode == 0 && n <= static_cast<int>(natural[0].tokens.size())) {
        // Greedy: the same tokens as the free run up to the length (EOT was not the argmax there).
        const std::vector<int> head(natural[0].tokens.begin(), natural[0].tokens.begin() + n);
        EXPECT_EQ(r[0].tokens, head);
      }
    }
    o.forced_length = 0;
  }
  DecodingOptions o;
  o.sample_len = 10;
  o.forced_length = 10;  // no step left for EOT
  FakeWhisperModel model;
  model.set_audio(0, 4, 0);
  EXPECT_THROW(decode(model, sp, o, 1), flurry::Error);
}

TEST(WhisperDecoding, InitialTokensFollowOpenaiWhisper) {
  const SpecialTokens sp = fake_special_tokens();
  DecodingOptions o;
  o.task = Task::kTranslate;
  o.without_timestamps = true;
  o.prefix = {20, 21, 22};
  o.sample_len = 222;  // room for n_ctx/2 - sample_len = 2 prefix tokens: the last two
  std::vector<int> prompt(300);
  for (int i = 0; i < 300; ++i) prompt[static_cast<size_t>(i)] = i % 90;
  const auto t = initial_tokens(sp, o, "de", 448, prompt);
  ASSERT_EQ(t.size(), 1u + 223u + 4u + 2u);
  EXPECT_EQ(t[0], sp.sot_prev);
  EXPECT_EQ(t[1], prompt[300 - 223]);  // the prompt keeps its last n_ctx/2 - 1 tokens
  const std::vector<int> tail(t.end() - 6, t.end());
  EXPECT_EQ(tail, (std::vector<int>{sp.sot, sp.language_id("de"), sp.translate, sp.no_timestamps, 21, 22}));
  // sample_len == n_ctx/2 gives Python's prefix[-0:], the whole prefix.
  o.sample_len = 0;
  const auto u = initial_tokens(sp, o, "de", 448, {});
  EXPECT_EQ(u.size(), 4u + 3u);
  const auto s = resolve_suppress_tokens(sp, {-1, 9});
  EXPECT_EQ(s, (std::vector<int>{1, 2, 3, 4, 7, 9, sp.sot, sp.translate, sp.transcribe, sp.sot_lm, sp.sot_prev, sp.no_speech}));
  EXPECT_TRUE(resolve_suppress_tokens(sp, parse_suppress_tokens("")).empty());
}

TEST(WhisperDecoding, RankerUsesLengthNormOrNmtPenalty) {
  // Sum logprobs -6 over 3 tokens (-2 per token) vs -10 over 10 (-1 per token).
  EXPECT_EQ(rank_sequences({3, 10}, {-6.0, -10.0}, std::nullopt), 1);
  // alpha = 0: no penalty, the higher sum wins.
  EXPECT_EQ(rank_sequences({3, 10}, {-6.0, -10.0}, 0.0), 0);
}

// The default sampler draws from softmax(logits / T): frequencies within 5 sigma of p.
TEST(WhisperDecoding, RandomSamplerFollowsTheDistribution) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, -std::numeric_limits<float>::infinity(), 0.5f};
  const float temperature = 0.7f;
  double z = 0.0;
  std::vector<double> p(logits.size());
  for (size_t i = 0; i < p.size(); ++i) z += p[i] = std::exp(static_cast<double>(logits[i]) / temperature);
  RandomSampler s(::flurry::test::test_seed());
  const int n = 20000;
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(s.sample(logits.data(), 5, temperature))];
  EXPECT_EQ(counts[3], 0);
  for (size_t i = 0; i < p.size(); ++i) {
    const double q = p[i] / z, sd = std::sqrt(q * (1 - q) / n);
    EXPECT_NEAR(counts[i] / static_cast<double>(n), q, 5 * sd + 1e-12) << "token " << i;
  }
}

TEST(WhisperDecoding, SeededSamplingIsRepeatable) {
  const SpecialTokens sp = fake_special_tokens();
  DecodingOptions o;
  o.language = "en";
  o.temperature = 1.0f;
  o.best_of = 3;
  o.seed = 77;
  std::vector<std::vector<int>> runs;
  for (int i = 0; i < 2; ++i) {
    FakeWhisperModel model;
    model.set_audio(0, 31, 0);
    runs.push_back(decode(model, sp, o, 1)[0].tokens);
  }
  EXPECT_EQ(runs[0], runs[1]);
  EXPECT_FALSE(runs[0].empty());
}

}  // namespace
}  // namespace flurry::whisper::test
