// Unicode code point classes for the byte-level BPE pre-tokenizer, and UTF-8 helpers.
//
// The GPT-2 split pattern only distinguishes letters (\p{L}), numbers (\p{N}), white space (\s)
// and everything else, so one sorted range table answers every question it asks. The table in
// unicode_tables.cpp is generated from the reference pre-tokenizer itself
// (tests/fixtures/tokenizer/make_goldens.py, then gen_unicode_tables.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace flurry {

enum class CharClass : uint8_t { kOther = 0, kLetter, kNumber, kSpace };

struct CodePointRange {
  uint32_t first;
  uint32_t last;  // inclusive
  CharClass cls;
};

// Sorted, non-overlapping; code points not covered are CharClass::kOther.
extern const CodePointRange kCodePointRanges[];
extern const size_t kCodePointRangeCount;

CharClass char_class(uint32_t cp);

// Decodes one code point at s[i] and returns its length in bytes. Invalid UTF-8 decodes as one
// byte with cp = 0xFFFD (the pre-tokenizer sees only valid UTF-8, since it takes std::string from
// callers that may not have checked, this keeps it total instead of undefined).
size_t utf8_next(const std::string& s, size_t i, uint32_t* cp);

void append_utf8(std::string& out, uint32_t cp);

// Converts bytes to valid UTF-8, replacing each maximal invalid subsequence with U+FFFD, which is
// what Python's bytes.decode('utf-8', errors='replace') and Rust's String::from_utf8_lossy do.
std::string utf8_replace_invalid(const std::string& bytes);

}  // namespace flurry
