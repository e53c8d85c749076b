// Elementwise GEMM epilogues that cuBLASLt cannot do exactly, and gemm_gpu(): the GEMM entry for
// model code, which takes every Epilogue of runtime/gemm.h.
//
// cuBLASLt fuses bias, bias+ReLU and bias+tanh-GELU. It has no exact (erf) GELU, which BERT and
// Whisper use, so gemm_gpu runs BiasGeluErf as cuBLASLt's Bias epilogue followed by bias_act's
// in-place erf GELU: one extra read and write of C, and the exact function. The same kernel is the
// fallback for any epilogue cuBLASLt reports it cannot fuse at a given layout.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "runtime/cuda/gemm_lt.h"
#include "runtime/dtype.h"
#include "runtime/gemm.h"

namespace flurry {

// In place on row-major C [rows, cols] with row stride ldc, `batch` matrices stride_c apart:
//   x = act(x + bias[col]), act from `epilogue` (None: identity, Bias: identity, BiasRelu: ReLU,
//   BiasGeluErf: exact GELU, BiasGeluTanh: tanh GELU). bias may be null: the activation alone
//   (used after cuBLASLt has already added the bias). Arithmetic in fp32; C and bias share `type`
//   (F32, F16 or BF16).
struct BiasActArgs {
  void* c = nullptr;
  const void* bias = nullptr;
  DType type = DType::F32;
  int64_t rows = 0, cols = 0, ldc = 0;
  int64_t batch = 1, stride_c = 0;
  Epilogue epilogue = Epilogue::None;
};
void bias_act(const BiasActArgs& args, cudaStream_t stream);

// C = epilogue(alpha op(A) op(B) + beta C) on the GPU for every Epilogue (see runtime/gemm.h for
// the convention and runtime/cuda/gemm_lt.h for dtypes and the workspace).
void gemm_gpu(GemmLt& lt, const GemmArgs& g, void* workspace, size_t workspace_bytes,
              cudaStream_t stream);

}  // namespace flurry
