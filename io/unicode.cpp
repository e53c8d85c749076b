// io/unicode.h over utf8proc; the UTF-8 decoder is our own because it must replace invalid input
// exactly as Python and Rust do (one U+FFFD per maximal subpart), which utf8proc does not offer.
#include "io/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "runtime/check.h"

namespace flurry {

static_assert(static_cast<int>(unicode::Category::kCo) == UTF8PROC_CATEGORY_CO &&
                  static_cast<int>(unicode::Category::kMn) == UTF8PROC_CATEGORY_MN &&
                  static_cast<int>(unicode::Category::kPo) == UTF8PROC_CATEGORY_PO &&
                  static_cast<int>(unicode::Category::kZs) == UTF8PROC_CATEGORY_ZS,
              "unicode::Category must follow utf8proc_category_t");

namespace {

// Bounds of the second byte of a well-formed sequence by lead byte (Unicode Table 3-7); the
// narrower ranges after E0, ED, F0 and F4 exclude overlong forms, surrogates and > U+10FFFF.
bool second_byte_ok(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
  }
}

// Length of the sequence starting at s[i]; *valid says whether it is a whole code point. When it
// is not, the length is that of the maximal subpart to replace by one U+FFFD.
size_t decode_one(std::string_view s, size_t i, uint32_t* cp, bool* valid) {
  const auto lead = static_cast<unsigned char>(s[i]);
  size_t need = 0;
  uint32_t value = 0;
  if (lead < 0x80) {
    *cp = lead;
    *valid = true;
    return 1;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1;
    value = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 2;
    value = lead & 0x0F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 3;
    value = lead & 0x07;
  } else {
    *cp = 0xFFFD;
    *valid = false;
    return 1;
  }
  size_t n = 1;
  for (; n <= need; ++n) {
    if (i + n >= s.size()) break;
    const auto b = static_cast<unsigned char>(s[i + n]);
    const bool ok = n == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    value = (value << 6) | (b & 0x3F);
  }
  if (n <= need) {
    *cp = 0xFFFD;
    *valid = false;
    return n;
  }
  *cp = value;
  *valid = true;
  return need + 1;
}

// Runs utf8proc_map over valid UTF-8 (invalid input is replaced first: utf8proc would reject it).
std::string map_string(std::string_view s, int options) {
  std::string valid;
  if (utf8_find_invalid(s) != std::string_view::npos) {
    valid = utf8_replace_invalid(s);
    s = valid;
  }
  if (s.empty()) return {};
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                   static_cast<utf8proc_ssize_t>(s.size()), &out,
                   static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(out, &std::free);
  FLURRY_CHECK(n >= 0, "utf8proc_map failed: " << utf8proc_errmsg(n));
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

// Unicode's Cased property, approximated from what utf8proc has: the letter case categories plus
// code points with a case mapping (which covers Other_Lowercase/Other_Uppercase such as U+2170).
bool is_cased(uint32_t cp) {
  const auto c = static_cast<utf8proc_int32_t>(cp);
  const utf8proc_category_t cat = utf8proc_category(c);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL ||
         cat == UTF8PROC_CATEGORY_LT || utf8proc_islower(c) || utf8proc_isupper(c);
}

// Unicode's Case_Ignorable property: Mn, Me, Cf, Lm, Sk and the Word_Break classes MidLetter,
// MidNumLet and Single_Quote (listed, since utf8proc has no word-break property).
bool is_case_ignorable(uint32_t cp) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK:
      return true;
    default:
      break;
  }
  switch (cp) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4: case 0x2018:
    case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07:
    case 0xFF0E: case 0xFF1A:
      return true;
    default:
      return false;
  }
}

// Letters and numbers of Unicode 15.1 and 16.0, which the Oniguruma inside Hugging Face tokenizers
// knows and Debian 12's utf8proc 2.8 (Unicode 15.0) does not: without them the GPT-2 split would
// cut words of those scripts where the reference does not. Consulted only for code points utf8proc
// calls unassigned, so a utf8proc with Unicode >= 16 makes it a no-op. Rows are the ranges that
// tokenizer_bpe_test (tests/fixtures/tokenizer/unicode_classes.json) finds missing; delete this
// list once the oldest supported utf8proc has Unicode 16.
struct NewerRange {
  uint32_t first, last;  // inclusive
  CharClass cls;
};
constexpr CharClass L = CharClass::kLetter, N = CharClass::kNumber;
constexpr NewerRange kNewerThanUtf8proc[] = {
    {0x1C89, 0x1C8A, L}, {0xA7CB, 0xA7CD, L}, {0xA7DA, 0xA7DC, L}, {0x105C0, 0x105F3, L},
    {0x10D40, 0x10D49, N}, {0x10D4A, 0x10D65, L}, {0x10D6F, 0x10D85, L}, {0x10EC2, 0x10EC4, L},
    {0x11380, 0x11389, L}, {0x1138B, 0x1138B, L}, {0x1138E, 0x1138E, L}, {0x11390, 0x113B5, L},
    {0x113B7, 0x113B7, L}, {0x113D1, 0x113D1, L}, {0x113D3, 0x113D3, L}, {0x116D0, 0x116E3, N},
    {0x11BC0, 0x11BE0, L}, {0x11BF0, 0x11BF9, N}, {0x13460, 0x143FA, L}, {0x16100, 0x1611D, L},
    {0x16130, 0x16139, N}, {0x16D40, 0x16D6C, L}, {0x16D70, 0x16D79, N}, {0x18CFF, 0x18CFF, L},
    {0x1CCF0, 0x1CCF9, N}, {0x1E5D0, 0x1E5ED, L}, {0x1E5F0, 0x1E5F0, L}, {0x1E5F1, 0x1E5FA, N},
    {0x2EBF0, 0x2EE5D, L},
};

// Lower-case mappings of Unicode 16's new case pairs, for the same reason (Rust's char, inside
// tokenizers, has them): {first, last, offset to the lower-case letter}. Also consulted only for
// code points utf8proc calls unassigned.
struct NewerLower {
  uint32_t first, last;
  int32_t delta;
};
constexpr NewerLower kNewerLower[] = {
    {0x1C89, 0x1C89, 1},    {0xA7CB, 0xA7CB, 0x264 - 0xA7CB}, {0xA7CC, 0xA7CC, 1},
    {0xA7CE, 0xA7CE, 1},    {0xA7D2, 0xA7D2, 1},              {0xA7D4, 0xA7D4, 1},
    {0xA7DA, 0xA7DA, 1},    {0xA7DC, 0xA7DC, 0x19B - 0xA7DC}, {0x10D50, 0x10D65, 0x20},
    {0x16EA0, 0x16EB8, 0x1B},
};

CharClass newer_class(uint32_t cp) {
  for (const NewerRange& r : kNewerThanUtf8proc) {
    if (cp >= r.first && cp <= r.last) return r.cls;
  }
  return CharClass::kOther;
}

}  // namespace

size_t utf8_next(std::string_view s, size_t i, uint32_t* cp) {
  bool valid = false;
  return decode_one(s, i, cp, &valid);
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_replace_invalid(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    uint32_t cp = 0;
    bool valid = false;
    const size_t n = decode_one(bytes, i, &cp, &valid);
    if (valid) {
      out.append(bytes.substr(i, n));
    } else {
      append_utf8(out, 0xFFFD);
    }
    i += n;
  }
  return out;
}

size_t utf8_find_invalid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {  // ASCII runs dominate; skip the decoder
      ++i;
      continue;
    }
    uint32_t cp = 0;
    bool valid = false;
    const size_t n = decode_one(s, i, &cp, &valid);
    if (!valid) return i;
    i += n;
  }
  return std::string_view::npos;
}

CharClass char_class(uint32_t cp) {
  if (cp < 0x80) {
    // ASCII dominates real text; answer it without the library.
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::kSpace;
    return CharClass::kOther;
  }
  if (unicode::is_white_space(cp)) return CharClass::kSpace;
  switch (unicode::major_category(cp)) {
    case 'L': return CharClass::kLetter;
    case 'N': return CharClass::kNumber;
    case 'C':
      return unicode::category(cp) == unicode::Category::kCn ? newer_class(cp) : CharClass::kOther;
    default: return CharClass::kOther;
  }
}

namespace unicode {

Category category(uint32_t cp) {
  // utf8proc answers Cn for anything past U+10FFFF rather than reading out of its tables.
  return static_cast<Category>(utf8proc_category(static_cast<utf8proc_int32_t>(cp)));
}

char major_category(uint32_t cp) {
  // Indexed by utf8proc_category_t.
  static const char kMajor[] = "CLLLLLMMMNNNPPPPPPPSSSSZZZCCCC";
  static_assert(sizeof(kMajor) == UTF8PROC_CATEGORY_CO + 2, "one letter per category");
  return kMajor[static_cast<int>(category(cp))];
}

bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

uint32_t to_lower_simple(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  const auto c = static_cast<utf8proc_int32_t>(cp);
  if (utf8proc_category(c) == UTF8PROC_CATEGORY_CN) {
    for (const NewerLower& r : kNewerLower) {
      if (cp >= r.first && cp <= r.last) return static_cast<uint32_t>(static_cast<int32_t>(cp) + r.delta);
    }
    return cp;
  }
  return static_cast<uint32_t>(utf8proc_tolower(c));
}

void append_lower_full(std::string& out, uint32_t cp) {
  if (cp == 0x130) {
    out += "i\xCC\x87";
    return;
  }
  append_utf8(out, to_lower_simple(cp));
}

std::string lower(std::string_view s) {
  std::string valid;
  if (utf8_find_invalid(s) != std::string_view::npos) {
    valid = utf8_replace_invalid(s);
    s = valid;
  }
  std::vector<uint32_t> cps;
  cps.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    i += utf8_next(s, i, &cp);
    cps.push_back(cp);
  }
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    const uint32_t cp = cps[i];
    if (cp != 0x3A3) {
      append_lower_full(out, cp);
      continue;
    }
    // Final_Sigma: a cased letter before (skipping case-ignorables), none after.
    size_t b = i;
    while (b > 0 && is_case_ignorable(cps[b - 1])) --b;
    size_t a = i + 1;
    while (a < cps.size() && is_case_ignorable(cps[a])) ++a;
    const bool final = b > 0 && is_cased(cps[b - 1]) && !(a < cps.size() && is_cased(cps[a]));
    append_utf8(out, final ? 0x3C2 : 0x3C3);
  }
  return out;
}

std::string nfd(std::string_view s) { return map_string(s, UTF8PROC_DECOMPOSE); }
std::string nfc(std::string_view s) { return map_string(s, UTF8PROC_COMPOSE); }
std::string nfkd(std::string_view s) { return map_string(s, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT); }
std::string nfkc(std::string_view s) { return map_string(s, UTF8PROC_COMPOSE | UTF8PROC_COMPAT); }

const char* unicode_version() { return utf8proc_unicode_version(); }

}  // namespace unicode
}  // namespace flurry
