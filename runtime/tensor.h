// A tensor is a non-owning view: pointer, dtype, where the memory is, shape and strides (in
// elements). Storage belongs to an arena, a mapped checkpoint or a std::vector owned elsewhere.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "runtime/dtype.h"

namespace flurry {

enum class Where : uint8_t { Host, Device };

constexpr int kMaxDims = 6;

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Where where = Where::Host;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  std::array<int64_t, kMaxDims> stride{};  // in elements, not bytes

  Tensor() = default;
  // Contiguous row-major view.
  Tensor(void* ptr, DType t, std::initializer_list<int64_t> dims, Where w = Where::Host);
  static Tensor contiguous(void* ptr, DType t, const int64_t* dims, int n, Where w = Where::Host);

  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const;  // negative i counts from the end
  bool is_contiguous() const;
  bool on_device() const { return where == Where::Device; }

  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }

  // View of rows [begin, end) along dimension 0.
  Tensor slice0(int64_t begin, int64_t end) const;
  // Same data, new contiguous shape with the same number of elements (requires contiguity).
  Tensor reshape(std::initializer_list<int64_t> dims) const;

  std::string shape_str() const;  // "[2, 1500, 1280] f16 device"
};

}  // namespace flurry
