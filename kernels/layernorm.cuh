// LayerNorm over the last dimension with an optional fused residual add: the pre-LN transformer
// block's "h += sublayer(x); y = LN(h)" in one pass over the row.
//
// Semantics are those of layernorm_cpu (runtime/ref/ops.h): h = x (+ add), optionally written to
// sum_out (which may alias x: the residual stream updated in place), then
//   y = (h - mean(h)) / sqrt(var(h) + eps) * gamma + beta
// with the biased (population) variance. h, the mean and the variance are fp32 (two passes over
// the row held in registers, so the variance is the centred sum, not E[h^2] - mean^2); sum_out and
// y are rounded once to `type`. y may alias x as well.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/dtype.h"

namespace flurry {

// Contiguous rows: x, add, sum_out and y are [rows, dim] with row stride dim; gamma and beta are
// [dim]. Every tensor has dtype `type` (F16, BF16, or F32). 16-byte vector accesses are used when
// dim is a multiple of 16 / sizeof(type) and every pointer is 16-byte aligned; otherwise a scalar
// path with the same results.
struct LayerNormArgs {
  const void* x = nullptr;
  const void* add = nullptr;  // optional residual branch added to x first
  void* sum_out = nullptr;    // optional: receives x + add (only with add); may alias x
  const void* gamma = nullptr;
  const void* beta = nullptr;
  void* y = nullptr;
  DType type = DType::F16;
  int64_t rows = 0, dim = 0;
  float eps = 1e-5f;
};
void layernorm(const LayerNormArgs& args, cudaStream_t stream);

}  // namespace flurry
