// Whisper's English/basic normalisation against goldens made by openai-whisper's own normalisers
// (tests/fixtures/text/make_normalizer_goldens.py), and the word error rate.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/json_file.h"
#include "io/text_normalizer.h"
#include "io/wer.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

std::string spelling_map_path() {
  const std::string p = std::string(FLURRY_SOURCE_DIR) + "/models-cache/openai-whisper/english.json";
  return std::filesystem::exists(p) ? p : std::string();
}

TEST(EnglishNormalizer, MatchesOpenAIWhisperGoldens) {
  const Json goldens = read_json_file(test::fixture_path("text/normalizer_goldens.json"));
  const std::string spelling = spelling_map_path();
  if (spelling.empty()) {
    std::printf("note: no spelling map (tools/fetch_openai_whisper.sh); comparing without it\n");
  }
  const EnglishTextNormalizer english(spelling);
  int n = 0;
  for (const auto& c : goldens.at("cases")) {
    const std::string input = c.at("input");
    const std::string expected = spelling.empty() ? c.at("english_no_spelling") : c.at("english");
    EXPECT_EQ(english(input), expected) << "input: " << input;
    EXPECT_EQ(basic_normalize(input), c.at("basic").get<std::string>()) << "input: " << input;
    ++n;
  }
  EXPECT_GE(n, 20);
}

TEST(EnglishNormalizer, Pieces) {
  EXPECT_EQ(utf8_lower("ÀÉÎ ÕÜ Straße ΑΒΓ"), "àéî õü straße αβγ");
  EXPECT_EQ(remove_symbols_and_diacritics("naïve, café!", ""), "naive  cafe ");
  EXPECT_EQ(remove_symbols_and_diacritics("$5.00", ".$"), "$5.00");
  EXPECT_EQ(normalize_english_numbers("twenty five"), "25");
}

TEST(Wer, CountsEditsByKind) {
  WerCounts c = word_errors("a b c d", "a x c d e");
  EXPECT_EQ(c.substitutions, 1);
  EXPECT_EQ(c.insertions, 1);
  EXPECT_EQ(c.deletions, 0);
  EXPECT_EQ(c.ref_words, 4);
  EXPECT_DOUBLE_EQ(c.wer(), 0.5);
  c = word_errors("a b c", "");
  EXPECT_EQ(c.deletions, 3);
  EXPECT_DOUBLE_EQ(c.wer(), 1.0);
  EXPECT_DOUBLE_EQ(word_errors("", "").wer(), 0.0);
}

TEST(Wer, RandomEditsAreBoundedByTheirCount) {
  auto rng = test::test_rng("wer");
  std::uniform_int_distribution<int> word(0, 20), len(1, 30), op(0, 2);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::string> ref;
    for (int i = len(rng); i > 0; --i) ref.push_back("w" + std::to_string(word(rng)));
    std::vector<std::string> hyp = ref;
    const int edits = trial % 5;
    for (int e = 0; e < edits; ++e) {
      const int kind = op(rng);
      const size_t pos = hyp.empty() ? 0 : rng() % hyp.size();
      if (kind == 0 && !hyp.empty()) hyp[pos] = "zz" + std::to_string(e);
      else if (kind == 1 && !hyp.empty()) hyp.erase(hyp.begin() + static_cast<long>(pos));
      else hyp.insert(hyp.begin() + static_cast<long>(pos), "ins" + std::to_string(e));
    }
    auto join = [](const std::vector<std::string>& w) {
      std::string s;
      for (const auto& x : w) s += x + " ";
      return s;
    };
    const WerCounts c = word_errors(join(ref), join(hyp));
    EXPECT_LE(c.errors(), edits);
    EXPECT_EQ(word_errors(join(ref), join(ref)).errors(), 0);
    // Distance is symmetric in total edits.
    EXPECT_EQ(word_errors(join(hyp), join(ref)).errors(), c.errors());
  }
}

}  // namespace
}  // namespace flurry
