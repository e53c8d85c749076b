#include "runtime/tensor.h"

#include <sstream>

#include "runtime/check.h"

namespace flurry {

Tensor Tensor::contiguous(void* p, DType t, const int64_t* dims, int n, Where w) {
  FLURRY_CHECK(n >= 0 && n <= kMaxDims, "tensor rank " << n << " outside 0.." << kMaxDims);
  Tensor out;
  out.data = p;
  out.dtype = t;
  out.where = w;
  out.ndim = n;
  int64_t s = 1;
  for (int i = n - 1; i >= 0; --i) {
    FLURRY_CHECK(dims[i] >= 0, "negative dimension " << dims[i]);
    out.shape[i] = dims[i];
    out.stride[i] = s;
    s *= dims[i];
  }
  return out;
}

Tensor::Tensor(void* p, DType t, std::initializer_list<int64_t> dims, Where w) {
  *this = contiguous(p, t, dims.begin(), static_cast<int>(dims.size()), w);
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

int64_t Tensor::dim(int i) const {
  const int k = i < 0 ? ndim + i : i;
  FLURRY_CHECK(k >= 0 && k < ndim, "dimension " << i << " out of range for " << shape_str());
  return shape[k];
}

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] != 1 && stride[i] != s) return false;
    s *= shape[i];
  }
  return true;
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  FLURRY_CHECK(ndim >= 1, "slice0 of a scalar");
  FLURRY_CHECK(0 <= begin && begin <= end && end <= shape[0],
               "slice [" << begin << ", " << end << ") out of range for " << shape_str());
  Tensor out = *this;
  out.shape[0] = end - begin;
  out.data = static_cast<char*>(data) + begin * stride[0] * static_cast<int64_t>(dtype_size(dtype));
  return out;
}

Tensor Tensor::reshape(std::initializer_list<int64_t> dims) const {
  FLURRY_CHECK(is_contiguous(), "reshape of a non-contiguous tensor " << shape_str());
  Tensor out = contiguous(data, dtype, dims.begin(), static_cast<int>(dims.size()), where);
  FLURRY_CHECK(out.numel() == numel(),
               "reshape changes element count: " << shape_str() << " -> " << out.shape_str());
  return out;
}

std::string Tensor::shape_str() const {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << shape[i];
  os << "] " << dtype_name(dtype) << (where == Where::Device ? " device" : " host");
  return os.str();
}

}  // namespace flurry
