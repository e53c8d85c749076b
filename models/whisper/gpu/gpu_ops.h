// Whisper's use of the shared GPU blocks (models/common/gpu/layers.h) in its encoder and decoder
// (internal to flurry_whisper_gpu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "models/common/gpu/layers.h"
#include "models/whisper/gpu/whisper_gpu.h"
#include "runtime/gemm.h"

namespace flurry::whisper::gpu_detail {

// The shared GPU blocks' context over this model's handle, stream, workspace, dtype and width.
models::GpuContext gpu_context(WhisperGpu& g);

// y[rows, l.out] = x[rows, l.in] W^T (+ b, then the epilogue's activation): models::gpu_linear.
inline void linear(WhisperGpu& g, const GpuLinear& l, const void* x, void* y, int64_t rows,
                   Epilogue e = Epilogue::Bias) {
  models::gpu_linear(gpu_context(g), l, x, y, rows, e);
}

// y = LN(x (+ add)); with `add`, x += add is written back first: models::gpu_residual_layernorm.
inline void residual_layernorm(WhisperGpu& g, void* x, const void* add, const GpuLayerNorm& ln, void* y,
                               int64_t rows) {
  models::gpu_residual_layernorm(gpu_context(g), x, add, ln, y, rows);
}

// out = fc2(gelu(fc1(x))): models::gpu_ffn.
inline void ffn(WhisperGpu& g, const GpuLinear& fc1, const GpuLinear& fc2, const void* x, void* hidden, void* out,
                int64_t rows) {
  models::gpu_ffn(gpu_context(g), fc1, fc2, x, hidden, out, rows);
}

using models::elem_ptr;
using models::row_ptr;

}  // namespace flurry::whisper::gpu_detail
