// Byte-level BPE against goldens written by Hugging Face `tokenizers`
// (tests/fixtures/tokenizer/make_goldens.py): pre-tokenizer pieces, ids with and without special
// tokens, decoding with and without them, random id sequences (including ones that cut UTF-8
// characters), and the class of every Unicode code point as the reference's pre-tokenizer sees it.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "io/bpe_tokenizer.h"
#include "io/json_file.h"
#include "io/unicode.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

std::string show(const std::vector<int>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

// Checks every golden case of `goldens` against `tok`; reports each failing text once per kind.
void check_goldens(const BpeTokenizer& tok, const Json& g, const std::string& name) {
  ASSERT_GT(g.at("cases").size(), 0u);
  EXPECT_EQ(tok.vocab_size(), g.at("vocab_size").get<int>()) << name;
  int failures = 0;
  for (const Json& c : g.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    const auto want_special = c.at("ids_special").get<std::vector<int>>();
    const auto want_plain = c.at("ids_plain").get<std::vector<int>>();
    const auto got_special = tok.encode(text, /*allow_special=*/true);
    const auto got_plain = tok.encode(text, /*allow_special=*/false);
    const auto pieces = tok.pre_tokenize(text);
    bool ok = true;
    ok &= got_special == want_special;
    EXPECT_EQ(show(got_special), show(want_special)) << name << " encode(allow_special) of '" << text << "'";
    ok &= got_plain == want_plain;
    EXPECT_EQ(show(got_plain), show(want_plain)) << name << " encode(plain) of '" << text << "'";
    ok &= pieces == c.at("pieces").get<std::vector<std::string>>();
    EXPECT_EQ(pieces, c.at("pieces").get<std::vector<std::string>>()) << name << " pieces of '" << text << "'";
    EXPECT_EQ(tok.decode(want_special, false), c.at("decoded").get<std::string>()) << name << " '" << text << "'";
    EXPECT_EQ(tok.decode(want_special, true), c.at("decoded_skip").get<std::string>()) << name << " '" << text << "'";
    if (!ok && ++failures > 20) FAIL() << "too many failures";
  }
  for (const Json& d : g.at("decodes")) {
    const auto ids = d.at("ids").get<std::vector<int>>();
    EXPECT_EQ(tok.decode(ids, false), d.at("text").get<std::string>()) << name << " decode " << show(ids);
    EXPECT_EQ(tok.decode(ids, true), d.at("text_skip").get<std::string>()) << name << " decode(skip) " << show(ids);
  }
}

TEST(BpeTokenizer, TokenizerJsonMatchesReference) {
  const auto tok = BpeTokenizer::from_dir(test::fixture_path("tokenizer/tiny"));
  check_goldens(tok, read_json_file(test::fixture_path("tokenizer/tiny_goldens.json")), "tiny");
}

TEST(BpeTokenizer, VocabMergesWithTokenizerConfigMatchesReference) {
  const auto tok = BpeTokenizer::from_dir(test::fixture_path("tokenizer/tiny_slow"));
  check_goldens(tok, read_json_file(test::fixture_path("tokenizer/tiny_goldens.json")), "tiny_slow");
}

TEST(BpeTokenizer, VocabMergesWithAddedTokensJsonMatchesReference) {
  const auto tok = BpeTokenizer::from_dir(test::fixture_path("tokenizer/tiny_legacy"));
  check_goldens(tok, read_json_file(test::fixture_path("tokenizer/tiny_goldens.json")), "tiny_legacy");
}

TEST(BpeTokenizer, LstripRstripAddedTokenMatchesReference) {
  const auto tok = BpeTokenizer::from_dir(test::fixture_path("tokenizer/tiny_lstrip"));
  check_goldens(tok, read_json_file(test::fixture_path("tokenizer/tiny_lstrip_goldens.json")), "tiny_lstrip");
}

TEST(BpeTokenizer, LookupsAndFlags) {
  const auto tok = BpeTokenizer::from_dir(test::fixture_path("tokenizer/tiny"));
  const auto eot = tok.token_to_id("<|endoftext|>");
  ASSERT_TRUE(eot.has_value());
  EXPECT_TRUE(tok.is_special(*eot));
  EXPECT_EQ(tok.id_to_token(*eot), "<|endoftext|>");
  const auto ts = tok.token_to_id("<|0.00|>");
  ASSERT_TRUE(ts.has_value());
  EXPECT_TRUE(tok.is_added(*ts));
  EXPECT_FALSE(tok.is_special(*ts));
  EXPECT_FALSE(tok.token_to_id("<|startoftranscript").has_value());
  EXPECT_FALSE(tok.add_prefix_space());
  EXPECT_THROW(tok.decode({tok.vocab_size()}, false), Error);
  EXPECT_THROW(tok.decode({-1}, false), Error);
  EXPECT_THROW(tok.id_to_token(tok.vocab_size()), Error);
}

TEST(BpeTokenizer, InvalidUtf8InputIsReadAsReplacementCharacter) {
  const auto tok = BpeTokenizer::from_dir(test::fixture_path("tokenizer/tiny"));
  EXPECT_EQ(tok.encode("a\xff" "b", true), tok.encode("a\xEF\xBF\xBD" "b", true));
  EXPECT_EQ(tok.decode(tok.encode("a\xC3" "b", true), false), "a\xEF\xBF\xBD" "b");
}

TEST(BpeTokenizer, DecodeBytesKeepsPartialCharacters) {
  const auto tok = BpeTokenizer::from_dir(test::fixture_path("tokenizer/tiny"));
  const std::string text = "你好 café 🙂";
  const auto ids = tok.encode(text, true);
  std::string joined;
  for (int id : ids) joined += tok.decode_bytes({id}, false);
  EXPECT_EQ(joined, text);
}

// Long pieces (one 200 KB word, a 100 KB blank run) must stay fast and round-trip exactly: the
// merge loop is a heap over a linked list, not a rescan of the whole piece per merge.
TEST(BpeTokenizer, LongPiecesRoundTrip) {
  const auto tok = BpeTokenizer::from_dir(test::fixture_path("tokenizer/tiny"));
  std::string word;
  for (int i = 0; i < 20000; ++i) word += "speechcafé";
  const std::string blanks(100000, ' ');
  for (const std::string& text : {word, blanks + "x", "x" + blanks}) {
    const auto ids = tok.encode(text, true);
    EXPECT_EQ(tok.decode(ids, false), text);
  }
  EXPECT_LT(tok.encode(word, true).size(), word.size() / 2);  // merges did happen
}

TEST(BpeTokenizer, MissingFilesAndUnsupportedFormatsThrow) {
  EXPECT_THROW(BpeTokenizer::from_dir(test::fixture_path("tokenizer/does_not_exist")), Error);
  const std::string path = testing::TempDir() + "flurry_bpe_normalizer.json";
  {
    std::ofstream f(path);
    f << R"({"normalizer": {"type": "NFC"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
             "pre_tokenizer": {"type": "ByteLevel"}})";
  }
  EXPECT_THROW(BpeTokenizer::from_tokenizer_json(path), Error);
  {
    std::ofstream f(path);
    f << R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]},
             "pre_tokenizer": {"type": "ByteLevel"}})";
  }
  EXPECT_THROW(BpeTokenizer::from_tokenizer_json(path), Error);  // merge result not in vocabulary
  std::remove(path.c_str());
}

TEST(UnicodeTables, EveryCodePointClassMatchesReferencePreTokenizer) {
  const Json g = read_json_file(test::fixture_path("tokenizer/unicode_classes.json"));
  size_t checked = 0, wrong = 0;
  for (const Json& r : g.at("ranges")) {
    const uint32_t lo = r[0].get<uint32_t>(), hi = r[1].get<uint32_t>();
    const std::string cls = r[2].get<std::string>();
    const CharClass want = cls == "L" ? CharClass::kLetter
                           : cls == "N" ? CharClass::kNumber
                           : cls == "S" ? CharClass::kSpace
                                        : CharClass::kOther;
    for (uint32_t cp = lo; cp <= hi; ++cp, ++checked) {
      if (char_class(cp) != want && ++wrong <= 20) {
        ADD_FAILURE() << "U+" << std::hex << cp << std::dec << ": table says " << int(char_class(cp))
                      << ", reference pre-tokenizer says " << cls;
      }
    }
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(checked, 0x110000u - 0x800u);  // every code point but the surrogates
}

TEST(UnicodeTables, ReplaceInvalidFollowsMaximalSubparts) {
  // Python: b"...".decode("utf-8", "replace") gives one U+FFFD per maximal invalid subpart.
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_replace_invalid("a\xE2\x82" "b"), "a" + r + "b");       // truncated 3-byte: one
  EXPECT_EQ(utf8_replace_invalid("\xC0\xAF"), r + r);                      // overlong lead: two
  EXPECT_EQ(utf8_replace_invalid("\xED\xA0\x80"), r + r + r);              // surrogate: three
  EXPECT_EQ(utf8_replace_invalid("\xF4\x90\x80\x80"), r + r + r + r);      // > U+10FFFF
  EXPECT_EQ(utf8_replace_invalid("\xF0\x9F\x99"), r);                      // truncated emoji: one
  EXPECT_EQ(utf8_replace_invalid("ok \xF0\x9F\x99\x82"), "ok \xF0\x9F\x99\x82");
}

}  // namespace
}  // namespace flurry
