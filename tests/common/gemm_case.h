// Shared by the CPU and GPU GEMM tests: dense GEMM arguments whose leading dimensions are padded
// (so kernels that ignore lda/ldb/ldc fail) with the batch strides that follow from them.
#pragma once

#include <cstdint>

#include "runtime/gemm.h"

namespace flurry::test {

// `pad` extra elements per row of A, B and C; `shared_b` makes every product of the batch read one
// B (stride 0). alpha, beta, epilogue and pointers are left for the caller.
inline GemmArgs padded_gemm_args(int64_t m, int64_t n, int64_t k, bool ta, bool tb, DType ab, DType c,
                                 int64_t batch, int64_t pad, bool shared_b) {
  GemmArgs g = gemm_dense(m, n, k, ta, tb, ab, c, batch);
  g.lda += pad;
  g.ldb += pad;
  g.ldc += pad;
  g.stride_a = (ta ? k : m) * g.lda;
  g.stride_b = shared_b ? 0 : (tb ? n : k) * g.ldb;
  g.stride_c = m * g.ldc;
  return g;
}

}  // namespace flurry::test
