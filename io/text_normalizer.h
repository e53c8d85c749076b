// Whisper's English text normalisation for WER, and the plain "basic" one, in C++.
//
// These follow the rules of openai-whisper's EnglishTextNormalizer / BasicTextNormalizer (the
// normalisation every published Whisper WER uses): lower-casing, dropping bracketed and
// parenthesised text and fillers, expanding contractions and titles, folding symbols and
// diacritics, spelled-out numbers to digits with currency/percent/ordinal handling, and British to
// American spellings (a word list fetched at set-up time, see tools/fetch_openai_whisper.sh).
// Case and diacritic folding (NFKD/NFKC, categories, lower-casing) come from utf8proc through
// io/unicode.h, over every code point. Known difference, by design of a C++ port without a Unicode
// regex engine: word boundaries and \s in the rules' patterns are ASCII-only.
#pragma once

#include <map>
#include <string>

namespace flurry {

// Code-point helpers over UTF-8 (invalid bytes pass through as U+FFFD).
std::string utf8_lower(const std::string& s);
// Whisper's remove_symbols_and_diacritics: NFKD, drop Mn marks, M/S/P to a space; `keep` is a
// UTF-8 string of characters left untouched.
std::string remove_symbols_and_diacritics(const std::string& s, const std::string& keep = "");

// Spelled-out numbers to digits (Whisper's EnglishNumberNormalizer). Input: lower-case text.
std::string normalize_english_numbers(const std::string& s);

class EnglishTextNormalizer {
 public:
  // `spelling_json`: path to the British→American mapping (a JSON object word → word); empty for
  // none. Throws flurry::Error when the file is given but unreadable.
  explicit EnglishTextNormalizer(const std::string& spelling_json = "");
  std::string operator()(const std::string& text) const;
  bool has_spelling_map() const { return !spelling_.empty(); }

 private:
  std::map<std::string, std::string> spelling_;
};

// Whisper's BasicTextNormalizer (for non-English text): lower-case, drop bracketed text, symbols to
// spaces (optionally diacritics too), collapse whitespace.
std::string basic_normalize(const std::string& text, bool remove_diacritics = false);

}  // namespace flurry
