// WordPiece (BERT) tokenizer: its rules on a tiny vocabulary written here, what the normalizer and
// pre-tokenizer do with every code point against Hugging Face `tokenizers`, and the ids of
// all-MiniLM-L6-v2's real vocabulary against goldens from BertTokenizerFast
// (tests/fixtures/wordpiece/make_goldens.py). The last part needs tools/fetch_minilm.sh and skips
// without it, unless FLURRY_REQUIRE_MODELS=1.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "io/unicode.h"
#include "io/wordpiece_tokenizer.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

const std::vector<std::string> kTinyVocab = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "want", "##want", "##ed", "wa", "un", "runn",
    "##ing", ",", "a", "ab", "abc", "##d", "##bcd", "##a", "Want", "想", "要", "##要", "é", ".", "x", "xy", "##yz"};

WordPieceTokenizer tiny(WordPieceConfig cfg = {}) { return WordPieceTokenizer::from_tokens(kTinyVocab, cfg); }

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + v[i];
  return s;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

TEST(WordPieceTiny, GreedyLongestMatchWithContinuationPrefix) {
  const WordPieceTokenizer t = tiny();
  EXPECT_EQ(joined(t.tokenize("unwanted running")), "un ##want ##ed runn ##ing");
  EXPECT_EQ(joined(t.tokenize("abcd abd")), "abc ##d ab ##d");
  EXPECT_EQ(joined(t.tokenize("abbcd")), "ab ##bcd");
  // Greedy, not best: "xy" is taken first and "##z" has no entry, so the word is unknown even
  // though "x" + "##yz" would spell it. BERT's rule, kept.
  EXPECT_EQ(joined(t.tokenize("xyz")), "[UNK]");
  EXPECT_EQ(joined(t.tokenize("xy x")), "xy x");
  EXPECT_EQ(joined(t.tokenize("aaa")), "a ##a ##a");
}

TEST(WordPieceTiny, UnknownWordsAndPunctuation) {
  const WordPieceTokenizer t = tiny();
  EXPECT_EQ(joined(t.tokenize("unwantedx running")), "[UNK] runn ##ing");  // one bad part: all [UNK]
  EXPECT_EQ(joined(t.tokenize("want,want")), "want , want");
  EXPECT_EQ(joined(t.tokenize("want!!")), "want [UNK] [UNK]");  // each punctuation mark alone
  EXPECT_EQ(joined(t.tokenize("want$")), "want [UNK]");         // ASCII symbols count as punctuation
  EXPECT_EQ(joined(t.tokenize("want\xE3\x80\x82")), "want [UNK]");  // U+3002 (Po)
}

TEST(WordPieceTiny, LongWordsAreUnknown) {
  const WordPieceTokenizer t = tiny();
  const std::vector<std::string> hundred = t.tokenize(std::string(100, 'a'));
  ASSERT_EQ(hundred.size(), 100u);
  EXPECT_EQ(hundred.front(), "a");
  EXPECT_EQ(hundred.back(), "##a");
  EXPECT_EQ(joined(t.tokenize(std::string(101, 'a'))), "[UNK]");
  // The limit counts characters, not bytes: 100 two-byte "é" are still a word of 100.
  std::string e100;
  for (int i = 0; i < 100; ++i) e100 += "\xC3\xA9";
  WordPieceConfig keep;
  keep.strip_accents = WordPieceConfig::Accents::kKeep;
  EXPECT_EQ(tiny(keep).tokenize(e100).size(), 1u);  // "é" then no "##é": [UNK], but not by length
  WordPieceConfig small;
  small.max_input_chars_per_word = 3;
  EXPECT_EQ(joined(tiny(small).tokenize("abc abcd")), "abc [UNK]");
  // 10,000 characters in one word, and as many words.
  EXPECT_EQ(joined(t.tokenize(std::string(10000, 'a'))), "[UNK]");
  std::string many;
  for (int i = 0; i < 2500; ++i) many += "want";
  EXPECT_EQ(t.tokenize(many).size(), 1u);
  many.clear();
  for (int i = 0; i < 2000; ++i) many += "want ";
  EXPECT_EQ(t.tokenize(many).size(), 2000u);
}

TEST(WordPieceTiny, SpecialsAndTruncation) {
  const WordPieceTokenizer t = tiny();
  EXPECT_EQ(t.cls_id(), 2);
  EXPECT_EQ(t.sep_id(), 3);
  EXPECT_EQ(t.pad_id(), 0);
  EXPECT_EQ(t.unk_id(), 1);
  EXPECT_EQ(t.mask_id(), 4);
  EXPECT_EQ(show(t.encode("", 256)), "[2,3]");
  EXPECT_EQ(show(t.encode(" \t\n ", 256)), "[2,3]");
  EXPECT_EQ(show(t.encode("want want want", 0)), "[2,5,5,5,3]");   // 0: no limit
  EXPECT_EQ(show(t.encode("want want want", 4)), "[2,5,5,3]");     // both specials counted
  EXPECT_EQ(show(t.encode("want want want", 2)), "[2,3]");
  EXPECT_EQ(show(t.encode("unwanted", 3)), "[2,9,3]");  // cuts between the pieces of a word
  EXPECT_THROW(t.encode("want", 1), Error);
  // Specials written in the text are taken as they are (case-sensitive), before normalization.
  EXPECT_EQ(joined(t.tokenize("want[MASK]want [SEP]")), "want [MASK] want [SEP]");
  EXPECT_EQ(joined(t.tokenize("[mask]")), "[UNK] [UNK] [UNK]");
  EXPECT_EQ(show(t.encode("[MASK] [MASK] [MASK]", 4)), "[2,4,4,3]");
}

TEST(WordPieceTiny, CaseAccentsAndChineseAreConfigurable) {
  EXPECT_EQ(joined(tiny().tokenize("WANT Wänted")), "want want ##ed");
  WordPieceConfig cased;
  cased.lowercase = false;  // accents follow lower-casing: kept too
  EXPECT_EQ(joined(tiny(cased).tokenize("WANT Want Wänt")), "[UNK] Want [UNK]");
  cased.strip_accents = WordPieceConfig::Accents::kStrip;
  EXPECT_EQ(joined(tiny(cased).tokenize("Wänt")), "Want");
  WordPieceConfig keep;
  keep.strip_accents = WordPieceConfig::Accents::kKeep;
  EXPECT_EQ(joined(tiny(keep).tokenize("wänt \xC3\x89")), "[UNK] \xC3\xA9");  // É lower-cased only
  // Ideographs are words of their own; without that rule they join into one word.
  EXPECT_EQ(joined(tiny().tokenize("\xE6\x83\xB3\xE8\xA6\x81")), "\xE6\x83\xB3 \xE8\xA6\x81");
  WordPieceConfig no_cjk;
  no_cjk.handle_chinese_chars = false;
  EXPECT_EQ(joined(tiny(no_cjk).tokenize("\xE6\x83\xB3\xE8\xA6\x81")), "\xE6\x83\xB3 ##\xE8\xA6\x81");
}

TEST(WordPieceTiny, CleaningDropsControlsAndMapsWhiteSpace) {
  const WordPieceTokenizer t = tiny();
  EXPECT_EQ(joined(t.tokenize(std::string("want\0want", 9))), "want ##want");  // NUL dropped
  EXPECT_EQ(joined(t.tokenize("want\x01\x7F" "ed")), "want ##ed");             // Cc dropped
  EXPECT_EQ(joined(t.tokenize("want\xE2\x80\x8B" "ed")), "want ##ed");         // U+200B (Cf)
  EXPECT_EQ(joined(t.tokenize("want\xEF\xBF\xBD" "ed")), "want ##ed");         // U+FFFD
  EXPECT_EQ(joined(t.tokenize("want\twant\r\nwant")), "want want want");
  EXPECT_EQ(joined(t.tokenize("want\xC2\xA0want\xE3\x80\x80want")), "want want want");  // NBSP, U+3000
  EXPECT_EQ(t.normalize("A\x0B" "B\xC2\x85" "C"), "abc");  // white space that is Cc goes, not ' '
  // Emoji and other symbols without an entry are [UNK], each word once.
  EXPECT_EQ(joined(t.tokenize("\xF0\x9F\x98\x80 want")), "[UNK] want");
}

TEST(WordPieceTiny, InvalidUtf8Throws) {
  const WordPieceTokenizer t = tiny();
  for (const std::string& bad : {std::string("\xFF"), std::string("want\xC3"), std::string("\xED\xA0\x80"),
                                std::string("\xC0\xAF"), std::string("ok \xF4\x90\x80\x80")}) {
    try {
      t.encode(bad, 16);
      ADD_FAILURE() << "no error for invalid UTF-8";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(t.tokenize("a\x80"), Error);
}

// Writes `files` (name -> content) into a fresh folder under the temp dir.
std::string write_dir(const std::string& name, const std::vector<std::pair<std::string, std::string>>& files) {
  const auto dir = std::filesystem::temp_directory_path() / ("flurry_wordpiece_" + name + "_" +
                                                             std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const auto& [file, content] : files) std::ofstream(dir / file, std::ios::binary) << content;
  return dir.string();
}

TEST(WordPieceTiny, LoadsVocabTxtAndTokenizerJson) {
  std::string vocab;
  for (const std::string& t : kTinyVocab) vocab += t + "\n";
  const std::string vdir = write_dir("vocab", {{"vocab.txt", vocab},
                                               {"tokenizer_config.json", R"({"do_lower_case": false})"}});
  const WordPieceTokenizer v = WordPieceTokenizer::from_dir(vdir);
  EXPECT_EQ(v.vocab_size(), static_cast<int>(kTinyVocab.size()));
  EXPECT_EQ(joined(v.tokenize("Want WANT")), "Want [UNK]");

  Json j;
  j["model"] = {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"},
                {"max_input_chars_per_word", 100}, {"vocab", Json::object()}};
  for (size_t i = 0; i < kTinyVocab.size(); ++i) j["model"]["vocab"][kTinyVocab[i]] = i;
  j["normalizer"] = {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
                     {"strip_accents", nullptr}, {"lowercase", true}};
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  j["post_processor"] = {{"type", "BertProcessing"}, {"sep", {"[SEP]", 3}}, {"cls", {"[CLS]", 2}}};
  j["added_tokens"] = Json::array();
  for (int id : {0, 1, 2, 3, 4}) {
    j["added_tokens"].push_back({{"id", id}, {"content", kTinyVocab[static_cast<size_t>(id)]},
                                 {"special", true}, {"normalized", false}, {"lstrip", false},
                                 {"rstrip", false}, {"single_word", false}});
  }
  const std::string jdir = write_dir("json", {{"tokenizer.json", j.dump()}});
  const WordPieceTokenizer f = WordPieceTokenizer::from_dir(jdir);
  const WordPieceTokenizer ref = tiny();
  for (const char* text : {"unwanted running", "WANT [MASK] Wänted", "abcd, \xE6\x83\xB3\xE8\xA6\x81", ""}) {
    EXPECT_EQ(show(f.encode(text, 64)), show(ref.encode(text, 64))) << text;
  }
  // Files that are not what this tokenizer reads are refused with a message, not misread.
  j["model"]["type"] = "BPE";
  const std::string bad = write_dir("bad", {{"tokenizer.json", j.dump()}});
  EXPECT_THROW(WordPieceTokenizer::from_dir(bad), Error);
  EXPECT_THROW(WordPieceTokenizer::from_tokens({"a", "b"}, WordPieceConfig{}), Error);  // no [UNK]
  EXPECT_THROW(WordPieceTokenizer::from_dir(vdir + "/missing"), Error);
  for (const std::string& d : {vdir, jdir, bad}) std::filesystem::remove_all(d);
}

// ---- against Hugging Face -----------------------------------------------------------------------

const Json& goldens() {
  static const Json g = read_json_file(test::fixture_path("wordpiece/goldens.json"));
  return g;
}

// The normalizer and pre-tokenizer do not depend on the vocabulary, so every code point is checked
// with the tiny one under all-MiniLM-L6-v2's configuration (uncased, the default).
TEST(WordPieceUnicode, EveryCodePointSplitsAsTheReference) {
  const WordPieceTokenizer t = tiny();
  size_t checked = 0, wrong = 0;
  for (const Json& r : goldens().at("codepoint_classes")) {
    const uint32_t lo = r[0].get<uint32_t>(), hi = r[1].get<uint32_t>();
    const std::string want = r[2].get<std::string>();
    for (uint32_t cp = lo; cp <= hi; ++cp, ++checked) {
      std::string c;
      append_utf8(c, cp);
      const std::string n = t.normalize("a" + c + "b");
      const std::vector<std::string> w = t.pre_tokenize(n);
      const std::string got = n == "ab" ? "D"
                              : w.size() == 2 && w[0] == "a" && w[1] == "b" ? "S"
                              : w.size() == 3 && w[0] == "a" && w[2] == "b"
                                  ? (t.normalize(c).front() == ' ' ? "C" : "P")
                              : w.size() == 1 ? "W"
                                              : "?";
      if (got != want && ++wrong <= 20) {
        ADD_FAILURE() << "U+" << std::hex << cp << std::dec << ": we say " << got << ", tokenizers says "
                      << want << " (utf8proc " << unicode::unicode_version() << ")";
      }
    }
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(checked, 0x110000u - 0x800u);  // every code point but the surrogates
}

uint64_t fnv1a64(const std::string& s, uint64_t h) {
  for (unsigned char b : s) h = (h ^ b) * 0x100000001B3ull;
  return h;
}

TEST(WordPieceUnicode, EveryCodePointNormalizesAsTheReference) {
  const WordPieceTokenizer t = tiny();
  const Json& want = goldens().at("normalized_fnv");
  ASSERT_EQ(want.size(), 0x110000u / 4096u);
  int wrong = 0;
  for (uint32_t block = 0; block < 0x110000u / 4096u; ++block) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (uint32_t cp = block * 4096; cp < (block + 1) * 4096; ++cp) {
      if (cp >= 0xD800 && cp < 0xE000) continue;
      std::string c;
      append_utf8(c, cp);
      h = fnv1a64(t.normalize(c) + std::string(1, '\0'), h);
    }
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
    if (want[block].get<std::string>() != hex) {
      ++wrong;
      ADD_FAILURE() << "code points U+" << std::hex << block * 4096 << "..U+" << (block + 1) * 4096 - 1
                    << std::dec << " normalize differently from tokenizers (lower-casing or accents)";
    }
  }
  EXPECT_EQ(wrong, 0);
}

std::string case_text(const Json& c) {
  if (c.contains("text")) return c.at("text").get<std::string>();
  std::string s;
  const std::string unit = c.at("repeat").get<std::string>();
  for (int i = c.at("times").get<int>(); i > 0; --i) s += unit;
  return s;
}

void check_goldens(const WordPieceTokenizer& tok, const std::string& name) {
  const Json& g = goldens();
  EXPECT_EQ(tok.vocab_size(), g.at("vocab_size").get<int>()) << name;
  const Json& sp = g.at("special_ids");
  EXPECT_EQ(tok.cls_id(), sp.at("[CLS]").get<int>()) << name;
  EXPECT_EQ(tok.sep_id(), sp.at("[SEP]").get<int>()) << name;
  EXPECT_EQ(tok.pad_id(), sp.at("[PAD]").get<int>()) << name;
  EXPECT_EQ(tok.unk_id(), sp.at("[UNK]").get<int>()) << name;
  EXPECT_EQ(tok.mask_id(), sp.at("[MASK]").get<int>()) << name;
  size_t cases = 0, ids = 0;
  for (const Json& c : g.at("cases")) {
    const std::string text = case_text(c);
    const int max_len = c.value("max_length", g.at("max_length").get<int>());
    const std::vector<int32_t> want = c.at("ids").get<std::vector<int32_t>>();
    const std::vector<int32_t> got = tok.encode(text, max_len);
    ++cases;
    ids += want.size();
    if (got == want) continue;
    size_t at = 0;
    while (at < got.size() && at < want.size() && got[at] == want[at]) ++at;
    ADD_FAILURE() << name << ": case " << cases - 1 << " (" << text.size() << " bytes: "
                  << text.substr(0, 80) << ") differs at position " << at << "\n  want " << show(want)
                  << "\n  got  " << show(got) << "\n  reference tokens: " << c.value("tokens", "");
  }
  EXPECT_GE(cases, 150u);
  EXPECT_GT(ids, 2 * cases);
}

std::string minilm_dir() { return std::string(FLURRY_SOURCE_DIR) + "/models-cache/all-MiniLM-L6-v2"; }

TEST(WordPieceMiniLM, TokenizerJsonMatchesBertTokenizerFast) {
  const std::string dir = minilm_dir();
  FLURRY_REQUIRE_MODEL_DATA(std::filesystem::exists(dir + "/tokenizer.json"),
                            dir << " is absent (run tools/fetch_minilm.sh)");
  check_goldens(WordPieceTokenizer::from_dir(dir), "tokenizer.json");
}

TEST(WordPieceMiniLM, VocabTxtMatchesBertTokenizerFast) {
  const std::string dir = minilm_dir();
  FLURRY_REQUIRE_MODEL_DATA(std::filesystem::exists(dir + "/vocab.txt"),
                            dir << " is absent (run tools/fetch_minilm.sh)");
  check_goldens(WordPieceTokenizer::from_vocab_dir(dir), "vocab.txt");
}

}  // namespace
}  // namespace flurry
