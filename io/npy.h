// NumPy's .npy format (version 1.0) for 2-D row-major float matrices: the header flurry writes in
// front of a streamed embeddings matrix, and a reader for tests and `flurry-embed search`.
//
//   "\x93NUMPY" 1 0 <uint16 header_len> "{'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }"
//   padded with spaces and a final '\n' so that the data starts at a multiple of 64 bytes, as
//   numpy writes it; numpy.load(path, mmap_mode="r") maps the data in place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flurry {

enum class NpyDtype { kFloat32, kFloat16 };

// The header bytes for a C-order [rows, cols] matrix of `dtype`.
std::string npy_header(NpyDtype dtype, int64_t rows, int64_t cols);

struct NpyMatrix {
  NpyDtype dtype = NpyDtype::kFloat32;
  int64_t rows = 0, cols = 0;
  std::vector<float> data;  // converted to fp32, row-major
};

// Reads a 2-D (or 1-D, as [1, n]) little-endian float32/float16 C-order .npy; throws flurry::Error
// naming the file and what is wrong with it.
NpyMatrix read_npy(const std::string& path);

}  // namespace flurry
