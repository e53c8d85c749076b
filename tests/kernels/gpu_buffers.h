// Small helpers for GPU tests: an owning device buffer, uploads and downloads through a dtype
// (inputs are converted from fp32, outputs back to fp32 for comparison with the CPU reference).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/dtype.h"

namespace flurry::test {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    CUDA_CHECK(cudaMalloc(&ptr_, std::max<size_t>(bytes, 1)));
  }
  ~DeviceBuffer() { (void)cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  char* bytes_ptr() const { return static_cast<char*>(ptr_); }
  size_t size() const { return bytes_; }
  // 0xFF in every byte: NaN in f32, f16 and bf16, so unwritten outputs fail the finite check.
  void poison() { CUDA_CHECK(cudaMemset(ptr_, 0xFF, bytes_)); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Converts `src` to dtype `t` and copies it to `dst` (a device pointer).
inline void upload(void* dst, const std::vector<float>& src, DType t) {
  std::vector<uint8_t> host(src.size() * dtype_size(t));
  convert_from_f32(src.data(), host.data(), src.size(), t);
  CUDA_CHECK(cudaMemcpy(dst, host.data(), host.size(), cudaMemcpyHostToDevice));
}

// Copies `n` elements of dtype `t` from `src` (device) and converts them to fp32.
inline std::vector<float> download(const void* src, size_t n, DType t) {
  std::vector<uint8_t> host(n * dtype_size(t));
  CUDA_CHECK(cudaMemcpy(host.data(), src, host.size(), cudaMemcpyDeviceToHost));
  std::vector<float> out(n);
  convert_to_f32(host.data(), out.data(), n, t);
  return out;
}

// One cuBLASLt handle and one workspace for the whole test binary, as a process would hold them.
inline GemmLt& shared_gemm_lt() {
  static GemmLt instance;
  return instance;
}
inline DeviceBuffer& shared_gemm_workspace() {
  static DeviceBuffer ws(GemmLt::kWorkspaceBytes);
  return ws;
}

}  // namespace flurry::test
