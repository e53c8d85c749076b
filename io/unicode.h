// Unicode for the tokenizers and the text normaliser: UTF-8 decoding, general categories, the
// White_Space property, normalisation forms and lower-casing, all answered by utf8proc.
//
// The character database is utf8proc's (unicode_version() says which); the references we match
// (Python's unicodedata, Hugging Face tokenizers' Rust tables, Oniguruma) each carry their own, so
// code points assigned in one version and not another can differ between us and them. The tests
// that compare against those references name any such code point.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace flurry {

// ---- UTF-8 --------------------------------------------------------------------------------------

// Decodes one code point at s[i] and returns its length in bytes. Invalid UTF-8 decodes as the
// maximal invalid subpart (Unicode Table 3-7) with cp = 0xFFFD, so callers that take unchecked
// std::string stay total instead of undefined.
size_t utf8_next(std::string_view s, size_t i, uint32_t* cp);

void append_utf8(std::string& out, uint32_t cp);

// Converts bytes to valid UTF-8, replacing each maximal invalid subsequence with U+FFFD, which is
// what Python's bytes.decode('utf-8', errors='replace') and Rust's String::from_utf8_lossy do.
std::string utf8_replace_invalid(std::string_view bytes);

// Byte offset of the first ill-formed sequence, or std::string_view::npos when s is valid UTF-8.
size_t utf8_find_invalid(std::string_view s);

// ---- code point classes -------------------------------------------------------------------------

// What the GPT-2 split pattern distinguishes: \p{L}, \p{N}, \s (the White_Space property), rest.
enum class CharClass : uint8_t { kOther = 0, kLetter, kNumber, kSpace };
CharClass char_class(uint32_t cp);

namespace unicode {

// General categories in utf8proc's numbering (unicode.cpp checks that the two agree).
enum class Category : uint8_t {
  kCn, kLu, kLl, kLt, kLm, kLo, kMn, kMc, kMe, kNd, kNl, kNo, kPc, kPd, kPs, kPe, kPi, kPf, kPo,
  kSm, kSc, kSk, kSo, kZs, kZl, kZp, kCc, kCf, kCs, kCo
};
Category category(uint32_t cp);
// The category's major class as its letter: 'L', 'M', 'N', 'P', 'S', 'Z' or 'C' (Cn included).
char major_category(uint32_t cp);

// Unicode's White_Space property (PropList.txt): what Rust's char::is_whitespace, Python's
// re \s (for str) and Oniguruma's \s test. Stable since Unicode 6.3; utf8proc does not expose it.
bool is_white_space(uint32_t cp);

// The simple (one code point) lower-case mapping of UnicodeData.txt.
uint32_t to_lower_simple(uint32_t cp);
// The full lower-case mapping without context (Rust's char::to_lowercase): the simple mapping,
// except U+0130 which becomes "i" + U+0307 (SpecialCasing.txt's one unconditional lower-case rule).
void append_lower_full(std::string& out, uint32_t cp);
// Python's str.lower(): the full mapping plus the Final_Sigma rule (capital sigma at the end of a
// word becomes U+03C2). Invalid UTF-8 is replaced first.
std::string lower(std::string_view s);

// Normalisation forms of a string; invalid UTF-8 is replaced first (utf8_replace_invalid).
std::string nfd(std::string_view s);
std::string nfc(std::string_view s);
std::string nfkd(std::string_view s);
std::string nfkc(std::string_view s);

// The Unicode version of utf8proc's tables, e.g. "15.0.0".
const char* unicode_version();

}  // namespace unicode
}  // namespace flurry
