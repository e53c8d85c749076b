// Logit filters and compression ratio against openai-whisper (logit_rules.json, compression.json:
// SuppressBlank, SuppressTokens, ApplyTimestampRules and their chain on random logits and token
// histories; utils.compression_ratio on assorted text).
#include <cmath>
#include <limits>
#include <vector>

#include "models/whisper/logit_rules.h"
#include "models/whisper/text_metrics.h"
#include "runtime/check.h"
#include "tests/models/whisper/decode/golden_json.h"

namespace flurry::whisper::test {
namespace {

std::vector<int> masked(const std::vector<float>& x) {
  std::vector<int> out;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isinf(x[i]) && x[i] < 0) out.push_back(static_cast<int>(i));
  }
  return out;
}

TEST(WhisperLogitRules, MatchOpenaiWhisperFilters) {
  const auto g = load_golden("logit_rules.json");
  ASSERT_TRUE(g.contains("cases"));
  const int vocab = g["vocab"];
  TimestampRules base;
  base.eot = g["eot"];
  base.no_timestamps = g["no_timestamps"];
  base.timestamp_begin = g["timestamp_begin"];
  const std::vector<int> blank = g["blank"];
  std::vector<float> scratch;
  int forced = 0, cases = 0;
  for (const auto& c : g["cases"]) {
    SCOPED_TRACE("case " + std::to_string(cases++));
    const std::vector<float> logits = c["logits"];
    ASSERT_EQ(static_cast<int>(logits.size()), vocab);
    const std::vector<int> tokens = c["tokens"];
    const int begin = c["sample_begin"];
    const int n_sampled = static_cast<int>(tokens.size()) - begin;
    const std::vector<int> suppress = c["suppress_tokens"];
    TimestampRules rules = base;
    rules.max_initial_timestamp_index = c["max_initial_timestamp_index"].is_null() ? -1 : c["max_initial_timestamp_index"].get<int>();

    std::vector<float> x = logits;
    suppress_blank(x.data(), vocab, n_sampled, blank, base.eot);
    EXPECT_EQ(masked(x), c["masked"]["blank"].get<std::vector<int>>()) << "SuppressBlank";
    x = logits;
    suppress_tokens(x.data(), vocab, suppress);
    EXPECT_EQ(masked(x), c["masked"]["suppress"].get<std::vector<int>>()) << "SuppressTokens";
    x = logits;
    apply_timestamp_rules(x.data(), vocab, tokens.data() + begin, n_sampled, rules, scratch);
    EXPECT_EQ(masked(x), c["masked"]["timestamps"].get<std::vector<int>>()) << "ApplyTimestampRules";
    if (std::isinf(x[0]) && n_sampled > 0) ++forced;
    x = logits;
    suppress_blank(x.data(), vocab, n_sampled, blank, base.eot);
    suppress_tokens(x.data(), vocab, suppress);
    apply_timestamp_rules(x.data(), vocab, tokens.data() + begin, n_sampled, rules, scratch);
    EXPECT_EQ(masked(x), c["masked"]["chain"].get<std::vector<int>>()) << "chain";
    // Entries the rules keep are untouched.
    for (int i = 0; i < vocab; ++i) {
      if (!std::isinf(x[static_cast<size_t>(i)])) {
        EXPECT_EQ(x[static_cast<size_t>(i)], logits[static_cast<size_t>(i)]);
      }
    }
  }
  EXPECT_GE(cases, 40);
  EXPECT_GT(forced, 0) << "no case exercised the forced-timestamp rule";
}

TEST(WhisperLogitRules, LogSoftmaxKeepsMaskedTokens) {
  std::vector<float> x = {1.0f, -std::numeric_limits<float>::infinity(), 3.0f}, y(3);
  log_softmax(x.data(), 3, y.data());
  EXPECT_TRUE(std::isinf(y[1]));
  EXPECT_NEAR(std::exp(y[0]) + std::exp(y[2]), 1.0, 1e-6);
}

// The benchmark's forced length (the Hugging Face peer's ForcedLengths): EOT masked before the
// length, the only choice (logit 0) at and after it, nothing touched when off.
TEST(WhisperLogitRules, ForcedLengthMasksThenForcesEot) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> row = {0.5f, 2.0f, -1.0f, 3.0f, 0.25f};  // EOT is id 3, the largest
  std::vector<float> x = row;
  apply_forced_length(x.data(), 5, 2, 3, 3);
  EXPECT_EQ(masked(x), std::vector<int>({3}));
  EXPECT_EQ(x[1], 2.0f);
  x = row;
  apply_forced_length(x.data(), 5, 3, 3, 3);
  EXPECT_EQ(masked(x), std::vector<int>({0, 1, 2, 4}));
  EXPECT_EQ(x[3], 0.0f);
  x = row;
  x[3] = -inf;  // EOT masked by an earlier rule: forced all the same
  apply_forced_length(x.data(), 5, 7, 3, 3);
  EXPECT_EQ(masked(x), std::vector<int>({0, 1, 2, 4}));
  EXPECT_EQ(x[3], 0.0f);
  x = row;
  apply_forced_length(x.data(), 5, 9, 0, 3);
  EXPECT_EQ(x, row);
  EXPECT_THROW(apply_forced_length(x.data(), 5, 0, 2, 5), flurry::Error);
}

TEST(WhisperLogitRules, RejectsIdsOutsideVocab) {
  std::vector<float> x(10, 0.0f);
  EXPECT_THROW(suppress_tokens(x.data(), 10, {10}), flurry::Error);
  SpecialTokens sp;
  EXPECT_THROW(sp.validate(100), flurry::Error);  // nothing filled in
}

TEST(WhisperTextMetrics, CompressionRatioMatchesPythonZlib) {
  const auto g = load_golden("compression.json");
  ASSERT_TRUE(g.contains("cases"));
  for (const auto& c : g["cases"]) {
    const std::string text = c["text"];
    EXPECT_DOUBLE_EQ(compression_ratio(text), c["ratio"].get<double>()) << "text: " << text;
  }
}

TEST(WhisperTextMetrics, StripMatchesPythonForAscii) {
  EXPECT_EQ(strip_whitespace("  \t hello world \n"), "hello world");
  EXPECT_EQ(strip_whitespace(" \x1f "), "");
  EXPECT_EQ(strip_whitespace("x"), "x");
}

}  // namespace
}  // namespace flurry::whisper::test
