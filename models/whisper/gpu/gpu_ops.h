// The pieces of a pre-LN transformer layer on the GPU shared by the encoder and the decoder
// (internal to flurry_whisper_gpu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "models/whisper/gpu/whisper_gpu.h"
#include "runtime/gemm.h"

namespace flurry::whisper::gpu_detail {

// y[rows, l.out] = x[rows, l.in] W^T (+ b, then the epilogue's activation), through gemm_gpu.
void linear(WhisperGpu& g, const GpuLinear& l, const void* x, void* y, int64_t rows,
            Epilogue e = Epilogue::Bias);

// y = LN(x (+ add)); with `add`, x += add is written back first (the residual stream updated in
// place, the pre-LN block's "h += sublayer(h); y = LN(h)" in one pass).
void residual_layernorm(WhisperGpu& g, void* x, const void* add, const GpuLayerNorm& ln, void* y, int64_t rows);

// Element offset of row `row` in a buffer of the model dtype with `width` columns.
inline void* row_ptr(void* base, int64_t row, int64_t width, size_t elt) {
  return static_cast<char*>(base) + static_cast<size_t>(row * width) * elt;
}
inline const void* row_ptr(const void* base, int64_t row, int64_t width, size_t elt) {
  return static_cast<const char*>(base) + static_cast<size_t>(row * width) * elt;
}
// `n` elements past `base` (a column offset inside a row: k at +d, v at +2d of a fused QKV row).
inline const void* elem_ptr(const void* base, int64_t n, size_t elt) {
  return static_cast<const char*>(base) + static_cast<size_t>(n) * elt;
}

}  // namespace flurry::whisper::gpu_detail
