// GEMM: one description of a (batched, strided) matrix product with an epilogue, run by the CPU
// reference (gemm_cpu, OpenBLAS when present) or by cuBLASLt (runtime/cuda/gemm_lt.h).
//
// Convention: everything is ROW-MAJOR, as PyTorch and Hugging Face checkpoints store it.
//   C[m, n] = alpha * sum_k op(A)[m, k] * op(B)[k, n] + beta * C[m, n], then the epilogue per column n.
//   op(A) = A ([m, k], row stride lda) or, with trans_a, A^T of a stored [k, m] matrix.
//   op(B) = B ([k, n], row stride ldb) or, with trans_b, B^T of a stored [n, k] matrix.
// A linear layer y = x W^T + b with W stored [out, in] (nn.Linear) is m = rows, n = out, k = in,
// trans_b = true, bias = b. Batched: `batch` products, operand i at base + i * stride_x elements.
#pragma once

#include <cstdint>

#include "runtime/dtype.h"

namespace flurry {

enum class Epilogue : uint8_t {
  None,          // C = alpha*AB + beta*C
  Bias,          // + bias[n]
  BiasGeluErf,   // gelu(x) = 0.5 x (1 + erf(x / sqrt 2)): what BERT and Whisper use
  BiasGeluTanh,  // the tanh approximation; an explicit, separate choice, never a silent swap
  BiasRelu,      // max(0, x + bias[n]): DLRM's MLPs
};
const char* epilogue_name(Epilogue e);
bool epilogue_has_bias(Epilogue e);

struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  const void* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  const void* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  void* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  const void* bias = nullptr;  // n elements, dtype = c_type (fp32 bias with fp16 C is not offered)
  DType ab_type = DType::F32;  // A and B share one dtype
  DType c_type = DType::F32;   // C (and bias)
  int64_t batch = 1;
  float alpha = 1.0f, beta = 0.0f;
  Epilogue epilogue = Epilogue::None;
};

// Fills leading dimensions and batch strides for dense operands when left at 0.
GemmArgs gemm_dense(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, DType ab, DType c,
                    int64_t batch = 1);

// Throws flurry::Error when shapes, leading dimensions, dtypes or pointers are inconsistent.
void validate_gemm(const GemmArgs& g);

// CPU reference: fp32 operands only, fp32 accumulation (OpenBLAS sgemm when built with it, the
// portable blocked loop otherwise), the epilogue applied in fp32.
void gemm_cpu(const GemmArgs& g);

// Convenience for model code on the CPU: y[rows, out] = x[rows, in] W[out, in]^T (+ bias, act).
void linear_cpu(const float* x, const float* w, const float* bias, float* y, int64_t rows,
                int64_t in, int64_t out, Epilogue e = Epilogue::None);

// The elementwise activations the epilogues apply, for reuse by reference ops.
float gelu_erf(float x);
float gelu_tanh(float x);

}  // namespace flurry
