// cuBLASLt behind flurry's row-major GEMM description (runtime/gemm.h).
//
// Row-major to column-major. cuBLASLt is column-major; a row-major [r, c] matrix with row stride ld
// is, read column-major, its transpose [c, r] with the same ld. So the row-major product
// C = op(A) op(B) is run as the column-major product C^T = op(B)^T op(A)^T: cuBLASLt's "A" is our
// B, its "B" is our A, its (m, n) is our (n, m), and every trans flag keeps its meaning (our
// trans_b becomes cuBLASLt's transa). Our per-column bias (bias[n]) is cuBLASLt's per-row bias.
//
// Precision. fp16 and bf16 operands accumulate in fp32 (CUBLAS_COMPUTE_32F); C is the operand type
// or fp32. fp32 operands also use CUBLAS_COMPUTE_32F, true fp32, unless the GemmLt was made with
// Options::allow_tf32, which trades ~1e-3 relative error for tensor-core speed.
//
// Epilogues fused into the cuBLASLt kernel: None, Bias, BiasRelu and BiasGeluTanh
// (CUBLASLT_EPILOGUE_GELU_BIAS is the tanh approximation: the cuBLASLt headers and docs only say
// "GELU", but PyTorch's fallback for the same epilogue is gelu(approximate="tanh"), and
// tests/kernels/gemm_test.cpp checks in fp32 that it is nearer gelu_tanh than the exact GELU).
// BiasGeluErf, the exact GELU BERT and Whisper use, is not something cuBLASLt offers; GemmLt
// refuses it and gemm_gpu() in runtime/cuda/gemm_gpu.h runs it as the Bias epilogue followed by an
// exact erf-GELU kernel. Model code calls gemm_gpu(), which takes every epilogue.
//
// Plans. The matmul descriptor, the four layouts, the preference and the algorithm the heuristic
// chose are built once per shape key (sizes, transposes, leading dimensions, batch strides, dtypes,
// epilogue, operand alignment, workspace size) and cached; a later call with the same key only sets
// the bias pointer and launches. Every cuBLASLt status is checked, including the heuristic's count.
//
// Workspace. Supplied by the caller for each call (reserve it once from the device arena):
// kWorkspaceBytes (32 MiB, what NVIDIA recommends for Hopper) lets the heuristic pick any
// algorithm; less restricts the choice, 0 allows only workspace-free algorithms. The workspace must
// not be shared by two streams running at the same time.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>

#include "runtime/gemm.h"

namespace flurry {

class GemmLt {
 public:
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

  struct Options {
    bool allow_tf32 = false;  // fp32 operands through TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32)
  };

  GemmLt();  // creates the cuBLASLt handle for the current device; one per process and device
  explicit GemmLt(Options options);
  ~GemmLt();
  GemmLt(const GemmLt&) = delete;
  GemmLt& operator=(const GemmLt&) = delete;

  // Enqueues the GEMM on `stream`. A, B, C and bias are device pointers. Throws flurry::Error on
  // invalid arguments, on Epilogue::BiasGeluErf (see above), or when cuBLASLt has no algorithm.
  void run(const GemmArgs& g, void* workspace, size_t workspace_bytes, cudaStream_t stream);

  // As run(), but returns false (and enqueues nothing) when cuBLASLt has no algorithm for this
  // problem, e.g. an epilogue it cannot fuse at this layout; the caller can then fall back to an
  // unfused epilogue. Every other failure still throws.
  bool try_run(const GemmArgs& g, void* workspace, size_t workspace_bytes, cudaStream_t stream);

  // True when the epilogue can be fused into cuBLASLt (everything but BiasGeluErf).
  static bool fuses(Epilogue e) { return e != Epilogue::BiasGeluErf; }

  size_t cached_plans() const;
  const Options& options() const { return options_; }

 private:
  struct Impl;
  Options options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flurry
