#include "runtime/device.h"

#include "runtime/check.h"

#if FLURRY_HAVE_CUDA
#include <cuda_runtime.h>

#include "runtime/cuda/cuda_check.h"
#endif

namespace flurry {

#if FLURRY_HAVE_CUDA

bool cuda_built() { return true; }

int cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    // Without a driver this is an error, not a count of 0: treat every error as "no GPU".
    if (why) *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
    (void)cudaGetLastError();  // clear the sticky error so later calls do not see it
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device";
  return n;
}

void* device_malloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    device_memory_info(&free_b, &total_b);
    FLURRY_FAIL("cudaMalloc of " << bytes << " bytes failed (" << cudaGetErrorString(err) << "); "
                                 << free_b << " of " << total_b << " bytes free on the device");
  }
  return p;
}

void device_free(void* p) noexcept {
  if (p) (void)cudaFree(p);
}

void device_memory_info(size_t* free_bytes, size_t* total_bytes) {
  if (cudaMemGetInfo(free_bytes, total_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    *free_bytes = 0;
    *total_bytes = 0;
  }
}

void set_device(int index) { CUDA_CHECK(cudaSetDevice(index)); }

#else  // built without CUDA

bool cuda_built() { return false; }

int cuda_device_count(std::string* why) {
  if (why) *why = "flurry was built without CUDA (FLURRY_CUDA=OFF)";
  return 0;
}

void* device_malloc(size_t bytes) {
  FLURRY_FAIL("device memory requested (" << bytes << " bytes) but flurry was built without CUDA");
}

void device_free(void*) noexcept {}

void device_memory_info(size_t* free_bytes, size_t* total_bytes) {
  *free_bytes = 0;
  *total_bytes = 0;
}

void set_device(int) { FLURRY_FAIL("set_device: flurry was built without CUDA"); }

#endif

}  // namespace flurry
