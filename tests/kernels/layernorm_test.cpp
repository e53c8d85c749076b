// GPU LayerNorm (kernels/layernorm.cuh) against layernorm_cpu (runtime/ref/ops.h).
//
// Inputs are random with a non-zero mean (so a one-pass E[x^2] - mean^2 variance would show),
// rounded to the kernel's dtype before the fp32 reference; outputs are poisoned (0xFF = NaN) with a
// guard tail that must stay poisoned. Every dtype (f16, bf16, f32), the register path at the widths
// the models use (384, 1280, 1536, 4096) and each register-count instantiation, the scalar path
// (odd widths, a misaligned pointer, widths beyond the register path), the fused residual with and
// without writing the sum, and the sum written in place over x.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/layernorm.cuh"
#include "runtime/check.h"
#include "runtime/ref/ops.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry {
namespace {

using test::DeviceBuffer;

enum class Mode { Plain, Add, AddSum, AddSumInPlace, Misaligned };

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::Plain: return "plain";
    case Mode::Add: return "add";
    case Mode::AddSum: return "add_sum";
    case Mode::AddSumInPlace: return "add_sum_inplace";
    case Mode::Misaligned: return "misaligned";
  }
  return "?";
}

constexpr int64_t kGuard = 8;  // poisoned elements after each output that must stay unwritten

// Element-wise tolerance: a few units in the last place of the output dtype.
double ulp_tol(DType t) { return t == DType::F32 ? 2e-5 : t == DType::F16 ? 2e-3 : 1.6e-2; }

void check_case(DType t, int64_t rows, int64_t dim, Mode mode, std::mt19937_64& rng) {
  const std::string name = std::string("layernorm_") + dtype_name(t) + "_r" + std::to_string(rows) +
                           "_d" + std::to_string(dim) + "_" + mode_name(mode);
  SCOPED_TRACE(name);
  const size_t n = static_cast<size_t>(rows * dim);
  const bool with_add = mode != Mode::Plain && mode != Mode::Misaligned;
  const bool with_sum = mode == Mode::AddSum || mode == Mode::AddSumInPlace;
  std::vector<float> x = test::random_vector(n, rng, 2.0f, 4.0f);  // mean 3: catches E[x^2]-m^2
  std::vector<float> add = test::random_vector(n, rng, -1.0f, 1.0f);
  std::vector<float> gamma = test::random_vector(static_cast<size_t>(dim), rng, 0.5f, 1.5f);
  std::vector<float> beta = test::random_vector(static_cast<size_t>(dim), rng, -0.5f, 0.5f);
  for (auto* v : {&x, &add, &gamma, &beta}) test::round_inplace(*v, t);
  const float eps = 1e-5f;

  std::vector<float> ref_y(n), ref_sum(n);
  layernorm_cpu(x.data(), with_add ? add.data() : nullptr, with_sum ? ref_sum.data() : nullptr,
                gamma.data(), beta.data(), ref_y.data(), rows, dim, eps);
  test::round_inplace(ref_sum, t);  // the kernel rounds the fp32 sum once, as this does

  const size_t es = dtype_size(t);
  const int64_t off = mode == Mode::Misaligned ? 1 : 0;  // one element in: not 16-byte aligned
  DeviceBuffer dx((n + kGuard + 1) * es), dadd((n + 1) * es), dsum((n + kGuard) * es),
      dgamma((dim + 1) * es), dbeta((dim + 1) * es), dy((n + kGuard + 1) * es);
  char* px = dx.bytes_ptr() + off * es;
  char* py = dy.bytes_ptr() + off * es;
  dx.poison();
  dy.poison();
  dsum.poison();
  test::upload(px, x, t);
  test::upload(dadd.get(), add, t);
  test::upload(dgamma.bytes_ptr() + off * es, gamma, t);
  test::upload(dbeta.get(), beta, t);

  LayerNormArgs a;
  a.x = px;
  a.add = with_add ? dadd.get() : nullptr;
  a.sum_out = mode == Mode::AddSum ? dsum.get() : mode == Mode::AddSumInPlace ? px : nullptr;
  a.gamma = dgamma.bytes_ptr() + off * es;
  a.beta = dbeta.get();
  a.y = py;
  a.type = t;
  a.rows = rows;
  a.dim = dim;
  a.eps = eps;
  layernorm(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());

  const std::vector<float> y_all = test::download(py, n + kGuard, t);
  const std::vector<float> y(y_all.begin(), y_all.begin() + static_cast<std::ptrdiff_t>(n));
  EXPECT_TRUE(test::close_in_norm(name + "_y", y, ref_y, test::rel_norm_bound(t)));
  EXPECT_TRUE(test::close_elementwise(name + "_y_elem", y.data(), ref_y.data(), n, ulp_tol(t), ulp_tol(t)));
  for (int64_t i = 0; i < kGuard; ++i) {
    EXPECT_TRUE(std::isnan(y_all[n + static_cast<size_t>(i)])) << "y written past the end at +" << i;
  }
  if (with_sum) {
    const void* sum_ptr = mode == Mode::AddSum ? dsum.get() : static_cast<const void*>(px);
    const std::vector<float> s_all = test::download(sum_ptr, n + kGuard, t);
    // The same fp32 addition rounded once: bit-identical.
    EXPECT_TRUE(test::close_elementwise(name + "_sum", s_all.data(), ref_sum.data(), n, 0.0, 0.0));
    for (int64_t i = 0; i < kGuard; ++i) {
      EXPECT_TRUE(std::isnan(s_all[n + static_cast<size_t>(i)])) << "sum written past the end";
    }
  }
}

const DType kTypes[] = {DType::F16, DType::BF16, DType::F32};

TEST(LayerNormGpu, ModelWidths) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LayerNormGpu.model");
  for (DType t : kTypes) {
    check_case(t, 1500, 1280, Mode::AddSumInPlace, rng);  // Whisper large-v3 encoder, one window
    for (int64_t dim : {384, 768, 1024, 1280, 1536, 4096}) {
      for (Mode m : {Mode::Plain, Mode::Add, Mode::AddSum, Mode::AddSumInPlace}) {
        check_case(t, 37, dim, m, rng);
      }
    }
  }
}

TEST(LayerNormGpu, OddShapesAndScalarPath) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LayerNormGpu.odd");
  for (DType t : kTypes) {
    for (int64_t rows : {1, 7, 33}) {
      // 8/16/32/64 elements per lane exercise each register instantiation; 1, 7, 33, 1283 are not
      // multiples of the vector width; 8192 is past the register path.
      for (int64_t dim : {1, 7, 8, 33, 256, 512, 2048, 1283, 8192}) {
        check_case(t, rows, dim, Mode::Plain, rng);
        check_case(t, rows, dim, Mode::AddSumInPlace, rng);
      }
      check_case(t, rows, 1280, Mode::Misaligned, rng);
    }
  }
}

TEST(LayerNormGpu, ZeroRowsIsANoOp) {
  FLURRY_REQUIRE_GPU();
  DeviceBuffer buf(256);
  LayerNormArgs a;
  a.x = a.gamma = a.beta = buf.get();
  a.y = buf.get();
  a.rows = 0;
  a.dim = 64;
  EXPECT_NO_THROW(layernorm(a, nullptr));
  a.rows = 1;
  a.type = DType::I32;
  EXPECT_THROW(layernorm(a, nullptr), Error);
}

}  // namespace
}  // namespace flurry
