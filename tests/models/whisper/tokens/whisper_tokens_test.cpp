// WhisperSpecialTokens on the small fixture tokenizer: every token found by name, the language
// tokens between <|startoftranscript|> and <|translate|>, timestamps, and a clear error otherwise.
// The real large-v3 tokenizer is checked in whisper_v3_test.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "io/bpe_tokenizer.h"
#include "models/whisper/tokens.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

TEST(WhisperTokens, ResolvesByNameOnFixtureTokenizer) {
  for (const char* dir : {"tokenizer/tiny", "tokenizer/tiny_slow", "tokenizer/tiny_legacy"}) {
    SCOPED_TRACE(dir);
    const auto tok = BpeTokenizer::from_dir(test::fixture_path(dir));
    const auto w = whisper::resolve_special_tokens(tok);
    EXPECT_EQ(w.sot, *tok.token_to_id("<|startoftranscript|>"));
    EXPECT_EQ(w.eot, *tok.token_to_id("<|endoftext|>"));
    EXPECT_EQ(w.translate, *tok.token_to_id("<|translate|>"));
    EXPECT_EQ(w.transcribe, *tok.token_to_id("<|transcribe|>"));
    EXPECT_EQ(w.no_timestamps, *tok.token_to_id("<|notimestamps|>"));
    EXPECT_EQ(w.no_speech, *tok.token_to_id("<|nospeech|>"));
    EXPECT_EQ(w.sot_prev, *tok.token_to_id("<|startofprev|>"));
    EXPECT_EQ(w.sot_lm, *tok.token_to_id("<|startoflm|>"));
    EXPECT_EQ(w.timestamp_begin, *tok.token_to_id("<|0.00|>"));
    EXPECT_EQ(w.timestamp_begin + 50, *tok.token_to_id("<|1.00|>"));
    EXPECT_NEAR(w.timestamp_seconds(*tok.token_to_id("<|0.50|>")), 0.5, 1e-9);
    EXPECT_TRUE(w.is_timestamp(*tok.token_to_id("<|0.02|>")));
    EXPECT_FALSE(w.is_timestamp(w.eot));
    // make_goldens.py adds the languages in this order between sot and translate.
    std::vector<std::string> codes;
    for (const auto& [code, id] : w.languages) codes.push_back(code);
    EXPECT_EQ(codes, (std::vector<std::string>{"en", "de", "yue"}));
    EXPECT_EQ(w.language_id("yue"), *tok.token_to_id("<|yue|>"));
    EXPECT_EQ(w.language_code(*tok.token_to_id("<|de|>")), "de");
    EXPECT_THROW(w.language_id("fr"), Error);
    EXPECT_EQ(w.language_code(w.eot), "");
    // No generation_config: the blank is the tokenizer's encoding of " ", nothing else suppressed.
    EXPECT_EQ(w.blank_tokens, tok.encode(" ", false));
    EXPECT_TRUE(w.suppress_tokens.empty());
    const auto g = whisper::resolve_special_tokens(
        tok, nlohmann::json{{"suppress_tokens", {1, 2}}, {"begin_suppress_tokens", {220, w.eot}}});
    EXPECT_EQ(g.suppress_tokens, (std::vector<int>{1, 2}));
    EXPECT_EQ(g.blank_tokens, (std::vector<int>{220}));  // EOT is added by the rule itself
  }
}

TEST(WhisperTokens, NonWhisperTokenizerIsRejectedWithTheMissingName) {
  const std::string path = testing::TempDir() + "flurry_not_whisper.json";
  {
    std::ofstream f(path);
    f << R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
             "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
             "added_tokens": [{"id": 2, "content": "<|endoftext|>", "special": true}]})";
  }
  const auto tok = BpeTokenizer::from_tokenizer_json(path);
  try {
    whisper::resolve_special_tokens(tok);
    FAIL() << "expected flurry::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("<|startoftranscript|>"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace flurry
