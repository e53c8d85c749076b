#include "io/npy.h"

#include <cstring>
#include <fstream>

#include "runtime/check.h"
#include "runtime/dtype.h"

namespace flurry {

std::string npy_header(NpyDtype dtype, int64_t rows, int64_t cols) {
  FLURRY_CHECK(rows >= 0 && cols >= 0, "npy: negative shape (" << rows << ", " << cols << ")");
  std::string dict = std::string("{'descr': '") + (dtype == NpyDtype::kFloat32 ? "<f4" : "<f2") +
                     "', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " + std::to_string(cols) +
                     "), }";
  // magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of 64.
  const size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  FLURRY_CHECK(dict.size() <= 65535, "npy: header too long");
  std::string h = "\x93NUMPY";
  h += static_cast<char>(1);
  h += static_cast<char>(0);
  h += static_cast<char>(dict.size() & 0xff);
  h += static_cast<char>((dict.size() >> 8) & 0xff);
  return h + dict;
}

NpyInfo read_npy_info(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FLURRY_CHECK(in.good(), path << ": cannot open");
  char pre[10];
  in.read(pre, 10);
  FLURRY_CHECK(in.gcount() == 10 && std::memcmp(pre, "\x93NUMPY", 6) == 0, path << ": not a .npy file");
  FLURRY_CHECK(pre[6] == 1 || pre[6] == 2 || pre[6] == 3, path << ": unsupported .npy version " << int{pre[6]});
  size_t len = static_cast<unsigned char>(pre[8]) | (static_cast<size_t>(static_cast<unsigned char>(pre[9])) << 8);
  size_t prefix = 10;
  if (pre[6] >= 2) {  // 4-byte header length
    char more[2];
    in.read(more, 2);
    len |= (static_cast<size_t>(static_cast<unsigned char>(more[0])) << 16) |
           (static_cast<size_t>(static_cast<unsigned char>(more[1])) << 24);
    prefix = 12;
  }
  std::string dict(len, '\0');
  in.read(&dict[0], static_cast<std::streamsize>(len));
  FLURRY_CHECK(static_cast<size_t>(in.gcount()) == len, path << ": truncated .npy header");
  // The header is a Python dict literal; numpy writes it with these exact keys.
  auto value_of = [&](const std::string& key) {
    const size_t k = dict.find("'" + key + "'");
    FLURRY_CHECK(k != std::string::npos, path << ": .npy header has no '" << key << "': " << dict);
    size_t v = dict.find(':', k);
    FLURRY_CHECK(v != std::string::npos, path << ": malformed .npy header: " << dict);
    ++v;
    while (v < dict.size() && dict[v] == ' ') ++v;
    return v;
  };
  const size_t d = value_of("descr");
  const std::string descr = dict.substr(d, 5);
  FLURRY_CHECK(descr == "'<f4'" || descr == "'<f2'" || descr == "'|f2'",
               path << ": only little-endian float32/float16 .npy files are read, header: " << dict);
  NpyInfo out;
  out.dtype = descr[3] == '4' ? NpyDtype::kFloat32 : NpyDtype::kFloat16;
  FLURRY_CHECK(dict.compare(value_of("fortran_order"), 5, "False") == 0,
               path << ": Fortran-order .npy files are not read");
  size_t sh = value_of("shape");
  FLURRY_CHECK(sh < dict.size() && dict[sh] == '(', path << ": malformed shape in " << dict);
  const size_t close = dict.find(')', sh);
  FLURRY_CHECK(close != std::string::npos, path << ": malformed shape in " << dict);
  std::vector<int64_t> dims;
  std::string num;
  for (size_t i = sh + 1; i <= close; ++i) {
    const char c = dict[i];
    if (c >= '0' && c <= '9') {
      num += c;
    } else if (c == ',' || c == ')') {
      if (!num.empty()) dims.push_back(std::stoll(num));
      num.clear();
    } else {
      FLURRY_CHECK(c == ' ' || c == 'L', path << ": malformed shape in " << dict);
    }
  }
  FLURRY_CHECK(dims.size() == 1 || dims.size() == 2, path << ": only 1-D and 2-D .npy files are read: " << dict);
  out.rows = dims.size() == 1 ? 1 : dims[0];
  out.cols = dims.back();
  out.data_offset = static_cast<int64_t>(prefix + len);
  return out;
}

void read_npy_rows(const std::string& path, const NpyInfo& info, int64_t row_begin, int64_t row_end, float* out) {
  FLURRY_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= info.rows,
               path << ": rows [" << row_begin << ", " << row_end << ") outside the " << info.rows << " rows");
  const size_t n = static_cast<size_t>((row_end - row_begin) * info.cols);
  if (n == 0) return;  // nothing to read, and memcpy must not see a null pointer
  const size_t elt = info.dtype == NpyDtype::kFloat32 ? 4 : 2;
  std::ifstream in(path, std::ios::binary);
  FLURRY_CHECK(in.good(), path << ": cannot open");
  in.seekg(static_cast<std::streamoff>(info.data_offset + row_begin * info.cols * static_cast<int64_t>(elt)));
  std::vector<char> raw(n * elt);
  in.read(raw.data(), static_cast<std::streamsize>(raw.size()));
  FLURRY_CHECK(static_cast<size_t>(in.gcount()) == raw.size(),
               path << ": truncated: the header promises " << info.rows << " x " << info.cols << " values");
  if (info.dtype == NpyDtype::kFloat32) {
    std::memcpy(out, raw.data(), raw.size());
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, raw.data() + 2 * i, 2);
      out[i] = half_bits_to_float(h);
    }
  }
}

NpyMatrix read_npy(const std::string& path) {
  const NpyInfo info = read_npy_info(path);
  NpyMatrix out;
  out.dtype = info.dtype;
  out.rows = info.rows;
  out.cols = info.cols;
  out.data.resize(static_cast<size_t>(out.rows * out.cols));
  read_npy_rows(path, info, 0, info.rows, out.data.data());
  return out;
}

}  // namespace flurry
