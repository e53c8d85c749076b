// What this build and this machine can run: CUDA compiled in or not, GPUs present or not.
// Compiled in every build; without CUDA the queries answer "no GPU" with the reason.
#pragma once

#include <cstddef>
#include <string>

namespace flurry {

// True when this binary was built with the CUDA backend.
bool cuda_built();

// Number of usable CUDA devices. Any error (no driver, no device, built without CUDA) counts as
// zero; `why`, when given, receives a one-line reason for the zero.
int cuda_device_count(std::string* why = nullptr);

// Raw device memory for the arena; throws flurry::Error with the requested size and the free memory
// on failure. Not for use on hot paths: one allocation per process.
void* device_malloc(size_t bytes);
void device_free(void* p) noexcept;
// Free and total memory of the current device, in bytes (0, 0 without CUDA).
void device_memory_info(size_t* free_bytes, size_t* total_bytes);
void set_device(int index);

}  // namespace flurry
