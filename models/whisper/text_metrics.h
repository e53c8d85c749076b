// Text measures the decoding loop judges results by.
#pragma once

#include <string>
#include <vector>

namespace flurry::whisper {

// openai-whisper's compression_ratio: len(utf8) / len(zlib.compress(utf8)) at zlib's default
// level (Python's zlib.compress default, Z_DEFAULT_COMPRESSION = 6). Repetitive text compresses
// well, so a ratio above ~2.4 flags a decoding stuck in a loop. 0 for empty text.
double compression_ratio(const std::string& utf8);

// Python's str.strip() for the whitespace Whisper text contains: ASCII space, \t \n \v \f \r and
// \x1c-\x1f. (Python also strips Unicode spaces such as U+00A0; the tokenizer's text decoder does
// not produce them at the ends of a Whisper segment in practice.)
std::string strip_whitespace(const std::string& s);

// The fields of a comma-separated option ("-1,220", "5, 25.5"), each stripped as strip_whitespace
// does, as std::getline splits them (empty fields kept except a trailing one; "" gives none).
std::vector<std::string> split_fields(const std::string& csv);

}  // namespace flurry::whisper
