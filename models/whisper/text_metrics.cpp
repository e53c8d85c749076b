#include "models/whisper/text_metrics.h"

#include <zlib.h>

#include <sstream>
#include <vector>

#include "runtime/check.h"

namespace flurry::whisper {

double compression_ratio(const std::string& utf8) {
  uLongf out_len = compressBound(static_cast<uLong>(utf8.size()));
  std::vector<Bytef> out(out_len);
  const int rc = compress2(out.data(), &out_len, reinterpret_cast<const Bytef*>(utf8.data()),
                           static_cast<uLong>(utf8.size()), Z_DEFAULT_COMPRESSION);
  FLURRY_CHECK(rc == Z_OK, "zlib compress2 failed with " << rc);
  return static_cast<double>(utf8.size()) / static_cast<double>(out_len);
}

std::string strip_whitespace(const std::string& s) {
  auto is_space = [](unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); };
  size_t b = 0, e = s.size();
  while (b < e && is_space(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && is_space(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::vector<std::string> split_fields(const std::string& csv) {
  std::vector<std::string> out;
  std::stringstream ss(csv);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(strip_whitespace(item));
  return out;
}

}  // namespace flurry::whisper
