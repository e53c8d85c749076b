// The real Whisper large-v3 tokenizer (51866 tokens, 100 languages), when tools/fetch_tokenizer.sh
// has put it in models-cache/: ids, decodings, special token ids and the prompt prefix against
// Hugging Face's WhisperTokenizer (tests/fixtures/tokenizer/whisper_v3_goldens.json, whose ids
// make_goldens.py also cross-checks against openai-whisper's tiktoken encoder when it can).
// Skips when the tokenizer is absent; a separate binary so that the skip hides no other test.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "io/bpe_tokenizer.h"
#include "io/json_file.h"
#include "models/whisper/tokens.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

std::string v3_dir() { return std::string(FLURRY_SOURCE_DIR) + "/models-cache/whisper-large-v3-tokenizer"; }

TEST(WhisperTokens, LargeV3MatchesHuggingFace) {
  const std::string goldens = test::fixture_path("tokenizer/whisper_v3_goldens.json");
  if (!std::filesystem::exists(v3_dir())) GTEST_SKIP() << v3_dir() << " absent: run tools/fetch_tokenizer.sh";
  ASSERT_TRUE(std::filesystem::exists(goldens)) << "run tests/fixtures/tokenizer/make_goldens.py";
  const Json g = read_json_file(goldens);
  for (const char* layout : {"tokenizer.json", "vocab.json"}) {
    SCOPED_TRACE(layout);
    const BpeTokenizer tok = std::string(layout) == "tokenizer.json"
        ? BpeTokenizer::from_tokenizer_json(v3_dir() + "/tokenizer.json")
        : BpeTokenizer::from_vocab_merges(v3_dir() + "/vocab.json", v3_dir() + "/merges.txt", v3_dir());
    EXPECT_EQ(tok.vocab_size(), g.at("vocab_size").get<int>());
    const auto w = whisper::resolve_special_tokens(tok);
    const Json& named = g.at("special_ids");
    EXPECT_EQ(w.eot, named.at("<|endoftext|>").get<int>());
    EXPECT_EQ(w.sot, named.at("<|startoftranscript|>").get<int>());
    EXPECT_EQ(w.translate, named.at("<|translate|>").get<int>());
    EXPECT_EQ(w.transcribe, named.at("<|transcribe|>").get<int>());
    EXPECT_EQ(w.sot_lm, named.at("<|startoflm|>").get<int>());
    EXPECT_EQ(w.sot_prev, named.at("<|startofprev|>").get<int>());
    EXPECT_EQ(w.no_speech, named.at("<|nospeech|>").get<int>());
    EXPECT_EQ(w.no_timestamps, named.at("<|notimestamps|>").get<int>());
    EXPECT_EQ(w.timestamp_begin, named.at("<|0.00|>").get<int>());
    EXPECT_EQ(w.timestamp_begin + 1500, named.at("<|30.00|>").get<int>());
    std::vector<std::string> codes;
    for (const auto& [code, id] : w.languages) codes.push_back(code);
    EXPECT_EQ(codes, g.at("languages").get<std::vector<std::string>>());
    EXPECT_EQ(codes.size(), 100u);
    const std::vector<int> prefix{w.sot, w.language_id("de"), w.transcribe, w.no_timestamps};
    EXPECT_EQ(prefix, g.at("prefix_de_transcribe").get<std::vector<int>>());

    int failures = 0;
    for (const Json& c : g.at("cases")) {
      const std::string text = c.at("text").get<std::string>();
      const bool ok = tok.encode(text, true) == c.at("ids_special").get<std::vector<int>>() &&
                      tok.encode(text, false) == c.at("ids_plain").get<std::vector<int>>();
      EXPECT_TRUE(ok) << "encode of '" << text << "'";
      EXPECT_EQ(tok.decode(c.at("ids_special").get<std::vector<int>>(), true), c.at("decoded_skip").get<std::string>());
      if (!ok && ++failures > 10) FAIL() << "too many failures";
    }
    for (const Json& d : g.at("decodes")) {
      const auto ids = d.at("ids").get<std::vector<int>>();
      EXPECT_EQ(tok.decode(ids, false), d.at("text").get<std::string>());
      EXPECT_EQ(tok.decode(ids, true), d.at("text_skip").get<std::string>());
    }
  }
}

}  // namespace
}  // namespace flurry
