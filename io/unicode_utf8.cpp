// UTF-8 decoding and the code point class lookup behind io/unicode_tables.h.
#include <algorithm>

#include "io/unicode_tables.h"

namespace flurry {

CharClass char_class(uint32_t cp) {
  if (cp < 0x80) {
    // ASCII dominates real text; answer it without the binary search.
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::kSpace;
    return CharClass::kOther;
  }
  const CodePointRange* end = kCodePointRanges + kCodePointRangeCount;
  const CodePointRange* it = std::upper_bound(
      kCodePointRanges, end, cp, [](uint32_t c, const CodePointRange& r) { return c < r.first; });
  if (it == kCodePointRanges) return CharClass::kOther;
  --it;
  return cp <= it->last ? it->cls : CharClass::kOther;
}

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
size_t decode_one(const std::string& s, size_t i, uint32_t* cp, bool* valid) {
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

}  // namespace

size_t utf8_next(const std::string& s, size_t i, uint32_t* cp) {
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

std::string utf8_replace_invalid(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    uint32_t cp = 0;
    bool valid = false;
    const size_t n = decode_one(bytes, i, &cp, &valid);
    if (valid) {
      out.append(bytes, i, n);
    } else {
      append_utf8(out, 0xFFFD);
    }
    i += n;
  }
  return out;
}

}  // namespace flurry
