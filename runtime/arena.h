// One arena per process and place: a single allocation made at start-up, split by pointer.
//
// Sized from the batch plan before the run starts; nothing on the hot path allocates. Sub-
// allocations are aligned (256 bytes by default: what cuBLASLt and vector loads want), can be
// released in stack order with mark()/release() for per-step scratch, and the high-water mark says
// how much the plan really needed. Running out names the request and what was left.
#pragma once

#include <cstddef>
#include <string>

#include "runtime/tensor.h"

namespace flurry {

class Arena {
 public:
  static constexpr size_t kDefaultAlign = 256;

  // Allocates `capacity` bytes on the host (aligned heap) or the current CUDA device.
  Arena(size_t capacity, Where where, std::string name = "arena");
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Aligned sub-allocation; throws flurry::Error naming `what`, the size and the free space when
  // the arena is full, and `hint` (the flag that lowers the need) when one is given.
  void* alloc(size_t bytes, const char* what, size_t align = kDefaultAlign);
  Tensor alloc_tensor(DType t, std::initializer_list<int64_t> dims, const char* what);

  size_t mark() const { return used_; }
  void release(size_t mark);  // frees everything allocated after `mark`
  void reset() { release(0); }

  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }
  size_t high_water() const { return high_water_; }
  Where where() const { return where_; }
  void set_oom_hint(std::string hint) { oom_hint_ = std::move(hint); }

 private:
  char* base_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  size_t high_water_ = 0;
  Where where_;
  std::string name_;
  std::string oom_hint_;
};

// Human-readable byte counts for messages: "1.50 GiB".
std::string format_bytes(size_t bytes);

}  // namespace flurry
