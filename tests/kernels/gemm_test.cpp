// GPU GEMM (gemm_gpu over cuBLASLt, runtime/cuda/gemm_lt.h) against the CPU reference gemm_cpu.
//
// Inputs are drawn at random, rounded to the kernel's dtype, and the reference is computed in fp32
// from the rounded values; outputs are poisoned (0xFF = NaN) before each run, so an unwritten
// element fails, and padding columns must still hold the poison afterwards. Bounds are the
// per-dtype relative-norm bounds of tests/common/test_util.h. Shapes: odd (1, 7, 33, k = 1,
// n = 1), realistic (Whisper large-v3 and MiniLM layers), every transpose combination, batches
// with strided and shared operands, misaligned operands, every epilogue.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/cuda/gemm_gpu.h"
#include "runtime/check.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/cuda/stream.h"
#include "runtime/gemm.h"
#include "tests/common/gemm_case.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry {
namespace {

using test::DeviceBuffer;
using test::shared_gemm_lt;
using test::shared_gemm_workspace;

struct GpuCase {
  int64_t m, n, k;
  bool ta = false, tb = false;
  DType ab = DType::F32, c = DType::F32;
  Epilogue e = Epilogue::None;
  int64_t batch = 1;
  float alpha = 1.0f, beta = 0.0f;
  int64_t pad = 0;          // extra columns in every leading dimension
  bool shared_b = false;    // every batch entry uses one B (stride_b = 0)
  int64_t a_offset = 0;     // A starts this many elements into its buffer (misaligned operand)
};

std::string name_of(const GpuCase& c) {
  return std::string(dtype_name(c.ab)) + "->" + dtype_name(c.c) + "_m" + std::to_string(c.m) + "_n" +
         std::to_string(c.n) + "_k" + std::to_string(c.k) + (c.ta ? "_T" : "_N") + (c.tb ? "T" : "N") +
         "_b" + std::to_string(c.batch) + "_" + epilogue_name(c.e) + "_pad" + std::to_string(c.pad) +
         (c.shared_b ? "_sharedB" : "") + (c.a_offset ? "_offsetA" : "");
}

// A scale that keeps the pre-activation near unit size whatever k, so the GELU's curved region
// (|x| < 3), not only its linear tails, is what the comparison sees.
float unit_alpha(int64_t k) { return 2.0f / std::sqrt(static_cast<float>(k)); }

// Runs one case on the GPU and checks it against gemm_cpu. Returns the relative-norm error.
double check_gpu_case(const GpuCase& cs, std::mt19937_64& rng, double bound) {
  GemmArgs g = test::padded_gemm_args(cs.m, cs.n, cs.k, cs.ta, cs.tb, cs.ab, cs.c, cs.batch, cs.pad, cs.shared_b);
  g.alpha = cs.alpha;
  g.beta = cs.beta;
  g.epilogue = cs.e;
  const size_t a_n = static_cast<size_t>(g.stride_a * cs.batch);
  const size_t b_n = static_cast<size_t>((cs.tb ? cs.n : cs.k) * g.ldb * (cs.shared_b ? 1 : cs.batch));
  const size_t c_n = static_cast<size_t>(g.stride_c * cs.batch);

  std::vector<float> a = test::random_vector(a_n, rng), b = test::random_vector(b_n, rng);
  std::vector<float> bias = test::random_vector(static_cast<size_t>(cs.n), rng);
  std::vector<float> c0 = test::random_vector(c_n, rng);
  test::round_inplace(a, cs.ab);
  test::round_inplace(b, cs.ab);
  test::round_inplace(bias, cs.c);
  test::round_inplace(c0, cs.c);

  // Reference in fp32 from the rounded inputs.
  std::vector<float> ref = c0;
  GemmArgs r = g;
  r.ab_type = r.c_type = DType::F32;
  r.a = a.data();
  r.b = b.data();
  r.c = ref.data();
  r.bias = epilogue_has_bias(cs.e) ? bias.data() : nullptr;
  gemm_cpu(r);

  const size_t ab_sz = dtype_size(cs.ab), c_sz = dtype_size(cs.c);
  DeviceBuffer da((a_n + static_cast<size_t>(cs.a_offset)) * ab_sz), db(b_n * ab_sz),
      dbias(bias.size() * c_sz), dc(c_n * c_sz);
  char* a_ptr = da.bytes_ptr() + cs.a_offset * ab_sz;
  test::upload(a_ptr, a, cs.ab);
  test::upload(db.get(), b, cs.ab);
  test::upload(dbias.get(), bias, cs.c);
  if (cs.beta == 0.0f) {
    dc.poison();  // beta = 0 must not read C
  } else {
    test::upload(dc.get(), c0, cs.c);
  }
  g.a = a_ptr;
  g.b = db.get();
  g.c = dc.get();
  g.bias = epilogue_has_bias(cs.e) ? dbias.get() : nullptr;

  Stream stream;
  gemm_gpu(shared_gemm_lt(), g, shared_gemm_workspace().get(), shared_gemm_workspace().size(), stream);
  stream.synchronize();
  const std::vector<float> out_all = test::download(dc.get(), c_n, cs.c);

  // Compare the m x n entries; padding keeps its poison (beta = 0) or its input value.
  std::vector<float> out, want;
  out.reserve(static_cast<size_t>(cs.m * cs.n * cs.batch));
  want.reserve(out.capacity());
  for (int64_t t = 0; t < cs.batch; ++t) {
    for (int64_t i = 0; i < cs.m; ++i) {
      for (int64_t j = 0; j < g.ldc; ++j) {
        const size_t idx = static_cast<size_t>(t * g.stride_c + i * g.ldc + j);
        if (j < cs.n) {
          out.push_back(out_all[idx]);
          want.push_back(ref[idx]);
        } else if (cs.beta == 0.0f) {
          EXPECT_TRUE(std::isnan(out_all[idx])) << name_of(cs) << ": padding written at " << idx;
        } else {
          EXPECT_EQ(out_all[idx], c0[idx]) << name_of(cs) << ": padding written at " << idx;
        }
      }
    }
  }
  EXPECT_TRUE(test::close_in_norm(name_of(cs), out, want, bound));
  return test::rel_norm_error(out.data(), want.data(), out.size());
}

// cuBLASLt's fused GELU may evaluate tanh with the hardware approximation (tanh.approx.f32,
// relative error about 2^-11), so in fp32 its bound is that of the tanh, not of fp32 arithmetic.
constexpr double kLtGeluBound = 1e-3;

double bound_for(const GpuCase& cs) {
  const double b = test::rel_norm_bound(cs.ab);
  return cs.e == Epilogue::BiasGeluTanh ? std::max(b, kLtGeluBound) : b;
}

double check_gpu_case(const GpuCase& cs, std::mt19937_64& rng) {
  return check_gpu_case(cs, rng, bound_for(cs));
}

const DType kTypes[] = {DType::F32, DType::F16, DType::BF16};
const Epilogue kEpilogues[] = {Epilogue::None, Epilogue::Bias, Epilogue::BiasGeluErf,
                               Epilogue::BiasGeluTanh, Epilogue::BiasRelu};

TEST(GemmGpu, OddShapesAllTransposes) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("GemmGpu.odd");
  const int64_t dims[][3] = {{1, 1, 1}, {1, 7, 33}, {7, 33, 1}, {33, 1, 7}, {33, 7, 33}, {7, 33, 33}};
  for (DType t : kTypes) {
    for (const auto& d : dims) {
      for (int tr = 0; tr < 4; ++tr) {
        check_gpu_case({d[0], d[1], d[2], (tr & 1) != 0, (tr & 2) != 0, t, t}, rng);
      }
    }
  }
}

TEST(GemmGpu, EveryEpilogueEveryDtype) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("GemmGpu.epilogues");
  for (DType t : kTypes) {
    for (Epilogue e : kEpilogues) {
      // nn.Linear layout (W stored [out, in]) and the plain layout, with and without beta.
      check_gpu_case({96, 200, 64, false, true, t, t, e, 1, unit_alpha(64)}, rng);
      check_gpu_case({37, 72, 40, true, false, t, t, e, 1, unit_alpha(40), 0.5f, 3}, rng);
      // Odd widths: the epilogue kernel's scalar path.
      check_gpu_case({7, 33, 33, false, true, t, t, e, 1, unit_alpha(33)}, rng);
    }
  }
}

TEST(GemmGpu, WideOutputFromHalfInputs) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("GemmGpu.f32out");
  for (DType t : {DType::F16, DType::BF16}) {
    check_gpu_case({64, 96, 128, false, true, t, DType::F32, Epilogue::BiasGeluErf, 1, unit_alpha(128)},
                   rng);
    check_gpu_case({33, 7, 65, true, true, t, DType::F32, Epilogue::None, 1, 1.0f, -1.0f}, rng);
  }
}

TEST(GemmGpu, BatchedStridedSharedAndPadded) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("GemmGpu.batched");
  for (DType t : kTypes) {
    for (int tr = 0; tr < 4; ++tr) {
      const bool ta = (tr & 1) != 0, tb = (tr & 2) != 0;
      check_gpu_case({65, 47, 33, ta, tb, t, t, Epilogue::None, 3}, rng);
      check_gpu_case({20, 64, 48, ta, tb, t, t, Epilogue::BiasGeluErf, 4, unit_alpha(48), 0.0f, 8, true},
                     rng);
    }
    // Attention-style batch: 8 heads of [75, 64] x [64, 75] scores.
    check_gpu_case({75, 75, 64, false, true, t, t, Epilogue::None, 8, 0.125f}, rng);
  }
}

TEST(GemmGpu, MisalignedOperand) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("GemmGpu.misaligned");
  // A starts one element into its buffer: the plan must not assume 256-byte alignment.
  for (DType t : kTypes) {
    GpuCase cs{64, 64, 31, false, true, t, t, Epilogue::Bias, 1, unit_alpha(31)};
    cs.a_offset = 1;
    check_gpu_case(cs, rng);
  }
}

TEST(GemmGpu, RealisticModelShapes) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("GemmGpu.realistic");
  // Whisper large-v3 encoder attention output projection: 1500 frames x 1280 -> 1280, fp16.
  check_gpu_case({1500, 1280, 1280, false, true, DType::F16, DType::F16, Epilogue::Bias}, rng);
  // all-MiniLM-L6-v2 FFN up-projection, 200 tokens: 384 -> 1536 with exact GELU, bf16.
  check_gpu_case({200, 1536, 384, false, true, DType::BF16, DType::BF16, Epilogue::BiasGeluErf, 1,
                  unit_alpha(384)},
                 rng);
  // Whisper MLP up-projection rows in true fp32 (a CPU-fallback-sized slice): 128 x 1280 -> 1280.
  check_gpu_case({128, 1280, 1280, false, true, DType::F32, DType::F32, Epilogue::BiasGeluErf, 1,
                  unit_alpha(1280)},
                 rng);
  // DLRM bottom MLP layer: 512 samples x 256 -> 128 with ReLU, fp16.
  check_gpu_case({512, 128, 256, false, true, DType::F16, DType::F16, Epilogue::BiasRelu, 1,
                  unit_alpha(256)},
                 rng);
}

// cuBLASLt's GELU epilogue is the tanh approximation, and BiasGeluErf is the exact function. At
// unit-sized inputs the two differ by ~2e-4 in relative norm, twenty times the fp32 bound. Our erf
// kernel must meet the fp32 bound and be far from tanh; cuBLASLt's GELU (which may use a hardware
// tanh) must at least be closer to the tanh formula than to erf. Both errors are printed.
TEST(GemmGpu, GeluEpiloguesAreTheFunctionsTheyName) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("GemmGpu.gelu");
  const int64_t m = 128, n = 256, k = 64;
  const double bound = test::rel_norm_bound(DType::F32);
  for (Epilogue e : {Epilogue::BiasGeluErf, Epilogue::BiasGeluTanh}) {
    const Epilogue other = e == Epilogue::BiasGeluErf ? Epilogue::BiasGeluTanh : Epilogue::BiasGeluErf;
    GemmArgs g = gemm_dense(m, n, k, false, true, DType::F32, DType::F32);
    g.alpha = unit_alpha(k);
    std::vector<float> a = test::random_vector(m * k, rng), b = test::random_vector(n * k, rng),
                       bias = test::random_vector(n, rng), ref(m * n), ref_other(m * n);
    g.a = a.data();
    g.b = b.data();
    g.bias = bias.data();
    g.epilogue = e;
    g.c = ref.data();
    gemm_cpu(g);
    g.epilogue = other;
    g.c = ref_other.data();
    gemm_cpu(g);
    ASSERT_GT(test::rel_norm_error(ref_other.data(), ref.data(), ref.size()), 10 * bound)
        << "inputs too large: the two GELUs are indistinguishable here";

    DeviceBuffer da(a.size() * 4), db(b.size() * 4), dbias(bias.size() * 4), dc(ref.size() * 4);
    test::upload(da.get(), a, DType::F32);
    test::upload(db.get(), b, DType::F32);
    test::upload(dbias.get(), bias, DType::F32);
    dc.poison();
    g.a = da.get();
    g.b = db.get();
    g.bias = dbias.get();
    g.c = dc.get();
    g.epilogue = e;
    gemm_gpu(shared_gemm_lt(), g, shared_gemm_workspace().get(), shared_gemm_workspace().size(), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> out = test::download(dc.get(), ref.size(), DType::F32);
    const double err_own = test::rel_norm_error(out.data(), ref.data(), out.size());
    const double err_other = test::rel_norm_error(out.data(), ref_other.data(), out.size());
    std::printf("[gelu] %s: rel error %.3g vs its own formula, %.3g vs %s\n", epilogue_name(e),
                err_own, err_other, epilogue_name(other));
    if (e == Epilogue::BiasGeluErf) {
      EXPECT_TRUE(test::close_in_norm("gelu_erf_kernel", out, ref, bound));
      EXPECT_GT(err_other, 5 * bound) << "the erf GELU matches the tanh approximation instead";
    } else {
      EXPECT_TRUE(test::close_in_norm("gelu_tanh_cublaslt", out, ref, kLtGeluBound));
      EXPECT_LT(err_own, err_other) << "cuBLASLt's GELU is closer to erf than to tanh: "
                                       "BiasGeluTanh would then be mislabelled";
    }
  }
}

TEST(GemmGpu, PlansAreCachedPerShape) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("GemmGpu.cache");
  GpuCase cs{48, 80, 24, false, true, DType::F16, DType::F16, Epilogue::BiasRelu};
  check_gpu_case(cs, rng);
  const size_t after_first = shared_gemm_lt().cached_plans();
  check_gpu_case(cs, rng);
  EXPECT_EQ(shared_gemm_lt().cached_plans(), after_first) << "the same shape built a second plan";
  cs.m = 49;
  check_gpu_case(cs, rng);
  EXPECT_EQ(shared_gemm_lt().cached_plans(), after_first + 1);
}

TEST(GemmGpu, RejectsBadArguments) {
  FLURRY_REQUIRE_GPU();
  DeviceBuffer buf(4096);
  GemmArgs g = gemm_dense(8, 8, 8, false, false, DType::F16, DType::F16);
  g.a = g.b = buf.get();
  g.c = buf.get();
  g.lda = 4;  // < k
  EXPECT_THROW(
      gemm_gpu(shared_gemm_lt(), g, shared_gemm_workspace().get(), shared_gemm_workspace().size(), nullptr),
      Error);
  g.lda = 8;
  g.c_type = DType::BF16;  // f16 A/B with bf16 C is not offered
  EXPECT_THROW(
      gemm_gpu(shared_gemm_lt(), g, shared_gemm_workspace().get(), shared_gemm_workspace().size(), nullptr),
      Error);
  g.c_type = DType::F16;
  EXPECT_THROW(shared_gemm_lt().run(g, nullptr, 1024, nullptr), Error) << "null workspace with a size";
  g.epilogue = Epilogue::BiasGeluErf;
  g.bias = buf.get();
  EXPECT_THROW(
      shared_gemm_lt().run(g, shared_gemm_workspace().get(), shared_gemm_workspace().size(), nullptr), Error)
      << "GemmLt must refuse the erf GELU it cannot do exactly";
}

// bias_act alone: every dtype, epilogue, vector and scalar widths, batched with padding, and the
// activation-only mode (no bias) that follows cuBLASLt's Bias epilogue.
TEST(BiasAct, MatchesCpuFormulas) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("BiasAct");
  const int64_t shapes[][4] = {{1, 1, 1, 1}, {7, 33, 40, 1}, {33, 64, 64, 3}, {5, 1536, 1536, 2}};
  for (DType t : kTypes) {
    for (Epilogue e : kEpilogues) {
      for (const auto& s : shapes) {
        for (bool with_bias : {true, false}) {
          const int64_t rows = s[0], cols = s[1], ldc = s[2], batch = s[3];
          const int64_t stride = rows * ldc + 5;
          std::vector<float> c = test::random_vector(static_cast<size_t>(stride * batch), rng, -3, 3);
          std::vector<float> bias = test::random_vector(static_cast<size_t>(cols), rng);
          test::round_inplace(c, t);
          test::round_inplace(bias, t);
          std::vector<float> ref = c;
          for (int64_t bi = 0; bi < batch; ++bi) {
            for (int64_t r = 0; r < rows; ++r) {
              for (int64_t j = 0; j < cols; ++j) {
                float& x = ref[static_cast<size_t>(bi * stride + r * ldc + j)];
                const float v = x + (with_bias ? bias[j] : 0.0f);
                x = e == Epilogue::BiasGeluErf    ? gelu_erf(v)
                    : e == Epilogue::BiasGeluTanh ? gelu_tanh(v)
                    : e == Epilogue::BiasRelu     ? std::max(0.0f, v)
                                                  : v;
              }
            }
          }
          DeviceBuffer dc(c.size() * dtype_size(t)), dbias(bias.size() * dtype_size(t));
          test::upload(dc.get(), c, t);
          test::upload(dbias.get(), bias, t);
          BiasActArgs args;
          args.c = dc.get();
          args.bias = with_bias ? dbias.get() : nullptr;
          args.type = t;
          args.rows = rows;
          args.cols = cols;
          args.ldc = ldc;
          args.batch = batch;
          args.stride_c = stride;
          args.epilogue = e;
          bias_act(args, nullptr);
          CUDA_CHECK(cudaDeviceSynchronize());
          const std::vector<float> out = test::download(dc.get(), c.size(), t);
          // Every element is compared: those outside the rows x cols windows must be untouched.
          std::vector<float> want = ref;
          test::round_inplace(want, t);
          const std::string nm = std::string("bias_act_") + dtype_name(t) + "_" + epilogue_name(e) +
                                 "_r" + std::to_string(rows) + "_c" + std::to_string(cols) +
                                 (with_bias ? "_bias" : "_nobias");
          EXPECT_TRUE(test::close_elementwise(nm, out.data(), want.data(), out.size(),
                                              t == DType::F32 ? 1e-6 : 1e-2,
                                              t == DType::F32 ? 1e-5 : 1e-2));
        }
      }
    }
  }
}

}  // namespace
}  // namespace flurry
