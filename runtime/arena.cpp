#include "runtime/arena.h"

#include <cstdio>
#include <cstdlib>

#include "runtime/check.h"
#include "runtime/device.h"

namespace flurry {

std::string format_bytes(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

Arena::Arena(size_t capacity, Where where, std::string name)
    : capacity_(capacity), where_(where), name_(std::move(name)) {
  if (capacity_ == 0) return;
  if (where_ == Where::Device) {
    base_ = static_cast<char*>(device_malloc(capacity_));
  } else {
    const size_t rounded = (capacity_ + kDefaultAlign - 1) / kDefaultAlign * kDefaultAlign;
    base_ = static_cast<char*>(std::aligned_alloc(kDefaultAlign, rounded));
    FLURRY_CHECK(base_ != nullptr, "host arena '" << name_ << "': cannot allocate "
                                                  << format_bytes(capacity_));
  }
}

Arena::~Arena() {
  if (where_ == Where::Device) {
    device_free(base_);
  } else {
    std::free(base_);
  }
}

void* Arena::alloc(size_t bytes, const char* what, size_t align) {
  FLURRY_CHECK(align > 0 && (align & (align - 1)) == 0, "alignment " << align << " is not a power of 2");
  const size_t start = (used_ + align - 1) / align * align;
  if (start > capacity_ || bytes > capacity_ - start) {
    std::string msg = "out of memory in " + name_ + ": '" + what + "' needs " + format_bytes(bytes) +
                      " but only " + format_bytes(capacity_ > used_ ? capacity_ - used_ : 0) +
                      " of " + format_bytes(capacity_) + " is free";
    if (!oom_hint_.empty()) msg += " (" + oom_hint_ + ")";
    throw Error(msg);
  }
  used_ = start + bytes;
  if (used_ > high_water_) high_water_ = used_;
  return base_ + start;
}

Tensor Arena::alloc_tensor(DType t, std::initializer_list<int64_t> dims, const char* what) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  void* p = alloc(static_cast<size_t>(n) * dtype_size(t), what);
  return Tensor::contiguous(p, t, dims.begin(), static_cast<int>(dims.size()), where_);
}

void Arena::release(size_t m) {
  FLURRY_CHECK(m <= used_, "arena release to " << m << " past the used size " << used_);
  used_ = m;
}

}  // namespace flurry
