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

// The header of a .npy file: element type, shape ([1, n] for 1-D) and where the data starts.
struct NpyInfo {
  NpyDtype dtype = NpyDtype::kFloat32;
  int64_t rows = 0, cols = 0;
  int64_t data_offset = 0;  // bytes from the start of the file
};
NpyInfo read_npy_info(const std::string& path);

// Rows [row_begin, row_end) of the matrix `info` describes, converted to fp32 into
// out[(row_end - row_begin) * cols]; reads only those bytes, so a rank can hold one shard of a
// matrix larger than its memory.
void read_npy_rows(const std::string& path, const NpyInfo& info, int64_t row_begin, int64_t row_end, float* out);

// Reads a 2-D (or 1-D, as [1, n]) little-endian float32/float16 C-order .npy; throws flurry::Error
// naming the file and what is wrong with it.
NpyMatrix read_npy(const std::string& path);

}  // namespace flurry
