// Check macros for CUDA runtime, cuBLAS/cuBLASLt, cuDNN and NCCL calls, and the launch check that
// follows every kernel launch. Each names the expression, file, line and rank, and throws
// flurry::Error. Never put a call with side effects inside assert(); use these.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "runtime/check.h"

namespace flurry {

// Set by FLURRY_SYNC_LAUNCHES=1 (or set_sync_launches(true)): every launch check also synchronises
// the stream, so an asynchronous fault is blamed on the kernel that caused it.
bool sync_launches();
void set_sync_launches(bool on);

// Called after every kernel launch through FLURRY_LAUNCH_CHECK.
void check_launch(const char* kernel, cudaStream_t stream, const char* file, int line);

const char* cublas_status_string(int status);

}  // namespace flurry

#define CUDA_CHECK(expr)                                                                     \
  do {                                                                                       \
    const cudaError_t flurry_cuda_err_ = (expr);                                             \
    if (flurry_cuda_err_ != cudaSuccess) {                                                   \
      ::flurry::throw_check_failure("CUDA", #expr, __FILE__, __LINE__,                       \
                                    std::string(cudaGetErrorName(flurry_cuda_err_)) + ": " + \
                                        cudaGetErrorString(flurry_cuda_err_));               \
    }                                                                                        \
  } while (0)

// cublasStatus_t and cublasLtStatus share one enum; take it as int so this header needs no cuBLAS.
#define CUBLAS_CHECK(expr)                                                                   \
  do {                                                                                       \
    const int flurry_cublas_st_ = static_cast<int>(expr);                                    \
    if (flurry_cublas_st_ != 0) {                                                            \
      ::flurry::throw_check_failure("cuBLAS", #expr, __FILE__, __LINE__,                     \
                                    ::flurry::cublas_status_string(flurry_cublas_st_));      \
    }                                                                                        \
  } while (0)

// Needs <cudnn.h> included before use.
#define CUDNN_CHECK(expr)                                                                    \
  do {                                                                                       \
    const cudnnStatus_t flurry_cudnn_st_ = (expr);                                           \
    if (flurry_cudnn_st_ != CUDNN_STATUS_SUCCESS) {                                          \
      ::flurry::throw_check_failure("cuDNN", #expr, __FILE__, __LINE__,                      \
                                    cudnnGetErrorString(flurry_cudnn_st_));                  \
    }                                                                                        \
  } while (0)

// Needs <nccl.h> included before use.
#define NCCL_CHECK(expr)                                                                     \
  do {                                                                                       \
    const ncclResult_t flurry_nccl_res_ = (expr);                                            \
    if (flurry_nccl_res_ != ncclSuccess) {                                                   \
      ::flurry::throw_check_failure("NCCL", #expr, __FILE__, __LINE__,                       \
                                    ncclGetErrorString(flurry_nccl_res_));                   \
    }                                                                                        \
  } while (0)

#define FLURRY_LAUNCH_CHECK(kernel_name, stream) \
  ::flurry::check_launch(kernel_name, stream, __FILE__, __LINE__)
