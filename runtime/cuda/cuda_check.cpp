#include "runtime/cuda/cuda_check.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace flurry {

namespace {
bool env_sync_default() {
  const char* v = std::getenv("FLURRY_SYNC_LAUNCHES");
  return v && *v && std::strcmp(v, "0") != 0;
}
std::atomic<bool> g_sync{env_sync_default()};
}  // namespace

bool sync_launches() { return g_sync.load(std::memory_order_relaxed); }
void set_sync_launches(bool on) { g_sync.store(on); }

void check_launch(const char* kernel, cudaStream_t stream, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && sync_launches()) {
    // Synchronising a stream that is being captured into a graph would invalidate the capture.
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    err = cudaStreamIsCapturing(stream, &capture);
    if (err == cudaSuccess && capture == cudaStreamCaptureStatusNone) err = cudaStreamSynchronize(stream);
  }
  if (err != cudaSuccess) {
    throw_check_failure("CUDA launch", kernel, file, line,
                        std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err));
  }
}

const char* cublas_status_string(int status) {
  // Values of cublasStatus_t (cublas_api.h); cublasLt returns the same codes.
  switch (status) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

}  // namespace flurry
