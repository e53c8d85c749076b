// The CPU reference GEMM (runtime/gemm.h) against a naive triple loop in double: random shapes
// (odd and realistic), every transpose combination, batches with shared and strided operands,
// alpha/beta, padded leading dimensions and every epilogue. Also the activations at known values
// and the argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/gemm.h"
#include "tests/common/gemm_case.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

double gelu_erf_d(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double gelu_tanh_d(double x) {
  const double kPi = 3.14159265358979323846;
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / kPi) * (x + 0.044715 * x * x * x)));
}

double epilogue_d(double x, Epilogue e) {
  switch (e) {
    case Epilogue::None:
    case Epilogue::Bias: return x;
    case Epilogue::BiasGeluErf: return gelu_erf_d(x);
    case Epilogue::BiasGeluTanh: return gelu_tanh_d(x);
    case Epilogue::BiasRelu: return x > 0.0 ? x : 0.0;
  }
  return x;
}

// Naive double-precision GEMM with the semantics of runtime/gemm.h. `c` holds the beta input.
void gemm_naive(const GemmArgs& g, const std::vector<float>& a, const std::vector<float>& b,
                const std::vector<float>& bias, std::vector<float>& c) {
  for (int64_t t = 0; t < g.batch; ++t) {
    const float* at = a.data() + t * g.stride_a;
    const float* bt = b.data() + t * g.stride_b;
    float* ct = c.data() + t * g.stride_c;
    for (int64_t i = 0; i < g.m; ++i) {
      for (int64_t j = 0; j < g.n; ++j) {
        double s = 0.0;
        for (int64_t p = 0; p < g.k; ++p) {
          const double av = g.trans_a ? at[p * g.lda + i] : at[i * g.lda + p];
          const double bv = g.trans_b ? bt[j * g.ldb + p] : bt[p * g.ldb + j];
          s += av * bv;
        }
        double v = g.alpha * s + (g.beta == 0.0f ? 0.0 : g.beta * static_cast<double>(ct[i * g.ldc + j]));
        if (epilogue_has_bias(g.epilogue)) v += bias[j];
        ct[i * g.ldc + j] = static_cast<float>(epilogue_d(v, g.epilogue));
      }
    }
  }
}

struct Case {
  int64_t m, n, k;
  bool ta, tb;
  int64_t batch;
  Epilogue e;
  float alpha, beta;
  int64_t pad;        // extra columns in every leading dimension
  bool shared_b;      // batch entries share one B (stride_b = 0), as a weight matrix is shared
};

std::string case_name(const Case& c) {
  return "m" + std::to_string(c.m) + "_n" + std::to_string(c.n) + "_k" + std::to_string(c.k) +
         (c.ta ? "_T" : "_N") + (c.tb ? "T" : "N") + "_b" + std::to_string(c.batch) + "_" +
         epilogue_name(c.e) + "_pad" + std::to_string(c.pad) + (c.shared_b ? "_sharedB" : "");
}

// Runs gemm_cpu and the naive loop on the same random inputs and compares the written C entries.
void check_case(const Case& cs, std::mt19937_64& rng) {
  GemmArgs g = test::padded_gemm_args(cs.m, cs.n, cs.k, cs.ta, cs.tb, DType::F32, DType::F32, cs.batch, cs.pad,
                                      cs.shared_b);
  g.alpha = cs.alpha;
  g.beta = cs.beta;
  g.epilogue = cs.e;
  const int64_t nb = cs.shared_b ? 1 : cs.batch;
  std::vector<float> a = test::random_vector(static_cast<size_t>(g.stride_a * cs.batch), rng);
  std::vector<float> b = test::random_vector(static_cast<size_t>((cs.tb ? cs.n : cs.k) * g.ldb * nb), rng);
  std::vector<float> bias = test::random_vector(static_cast<size_t>(cs.n), rng);
  std::vector<float> c0 = test::random_vector(static_cast<size_t>(g.stride_c * cs.batch), rng);
  if (cs.beta == 0.0f) test::poison(c0.data(), c0.size() * sizeof(float));  // must not be read

  std::vector<float> out = c0, ref = c0;
  g.a = a.data();
  g.b = b.data();
  g.c = out.data();
  g.bias = epilogue_has_bias(cs.e) ? bias.data() : nullptr;
  gemm_cpu(g);
  gemm_naive(g, a, b, bias, ref);

  // Compare only the m x n entries of each batch; padding columns must be left untouched.
  std::vector<float> o, r;
  for (int64_t t = 0; t < cs.batch; ++t) {
    for (int64_t i = 0; i < cs.m; ++i) {
      for (int64_t j = 0; j < g.ldc; ++j) {
        const size_t idx = static_cast<size_t>(t * g.stride_c + i * g.ldc + j);
        if (j < cs.n) {
          o.push_back(out[idx]);
          r.push_back(ref[idx]);
        } else if (cs.beta != 0.0f) {
          ASSERT_EQ(out[idx], c0[idx]) << case_name(cs) << ": padding column written";
        }
      }
    }
  }
  EXPECT_TRUE(test::close_in_norm(case_name(cs), o, r, test::rel_norm_bound(DType::F32)));
}

TEST(GemmRef, MatchesNaiveDoubleOnOddShapesAllTransposes) {
  auto rng = test::test_rng("GemmRef.odd");
  const int64_t dims[][3] = {{1, 1, 1}, {1, 7, 33}, {7, 1, 33}, {33, 7, 1}, {7, 33, 7}, {33, 33, 33}};
  for (const auto& d : dims) {
    for (int t = 0; t < 4; ++t) {
      check_case({d[0], d[1], d[2], (t & 1) != 0, (t & 2) != 0, 1, Epilogue::None, 1.0f, 0.0f, 0, false},
                 rng);
    }
  }
}

TEST(GemmRef, EveryEpilogueAlphaBetaAndPadding) {
  auto rng = test::test_rng("GemmRef.epilogue");
  const Epilogue eps[] = {Epilogue::None, Epilogue::Bias, Epilogue::BiasGeluErf,
                          Epilogue::BiasGeluTanh, Epilogue::BiasRelu};
  for (Epilogue e : eps) {
    for (int t = 0; t < 4; ++t) {
      check_case({19, 45, 23, (t & 1) != 0, (t & 2) != 0, 1, e, 0.75f, 0.5f, 3, false}, rng);
      check_case({5, 64, 40, (t & 1) != 0, (t & 2) != 0, 1, e, -1.25f, 0.0f, 0, false}, rng);
    }
  }
}

TEST(GemmRef, BatchedStridedAndSharedWeights) {
  auto rng = test::test_rng("GemmRef.batched");
  for (int t = 0; t < 4; ++t) {
    const bool ta = (t & 1) != 0, tb = (t & 2) != 0;
    check_case({13, 17, 29, ta, tb, 3, Epilogue::BiasGeluErf, 1.0f, 0.0f, 0, false}, rng);
    check_case({13, 17, 29, ta, tb, 4, Epilogue::BiasRelu, 2.0f, -1.0f, 2, true}, rng);
  }
}

TEST(GemmRef, RandomShapes) {
  auto rng = test::test_rng("GemmRef.random");
  std::uniform_int_distribution<int64_t> dim(1, 70);
  std::uniform_int_distribution<int> coin(0, 1), epi(0, 4), batch(1, 3);
  for (int it = 0; it < 40; ++it) {
    Case cs{dim(rng), dim(rng), dim(rng), coin(rng) != 0, coin(rng) != 0, batch(rng),
            static_cast<Epilogue>(epi(rng)), coin(rng) ? 1.0f : 0.5f, coin(rng) ? 0.0f : 1.5f,
            coin(rng) ? 0 : 5, coin(rng) != 0};
    check_case(cs, rng);
  }
}

TEST(GemmRef, RealisticLinearShape) {
  // A BERT-MiniLM FFN up-projection on a short batch: 96 tokens x 384 -> 1536, exact GELU.
  auto rng = test::test_rng("GemmRef.realistic");
  check_case({96, 1536, 384, false, true, 1, Epilogue::BiasGeluErf, 1.0f, 0.0f, 0, false}, rng);
}

TEST(GemmRef, LinearCpuIsXWTransposedPlusBias) {
  auto rng = test::test_rng("GemmRef.linear");
  const int64_t rows = 9, in = 21, out = 14;
  std::vector<float> x = test::random_vector(rows * in, rng), w = test::random_vector(out * in, rng),
                     b = test::random_vector(out, rng), y(rows * out), ref(rows * out);
  for (Epilogue e : {Epilogue::None, Epilogue::BiasRelu}) {
    // With a bias and Epilogue::None the bias is still added (see linear_cpu).
    linear_cpu(x.data(), w.data(), b.data(), y.data(), rows, in, out, e);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t o = 0; o < out; ++o) {
        double s = b[o];
        for (int64_t p = 0; p < in; ++p) s += static_cast<double>(x[i * in + p]) * w[o * in + p];
        ref[i * out + o] = static_cast<float>(e == Epilogue::BiasRelu ? std::max(0.0, s) : s);
      }
    }
    EXPECT_TRUE(test::close_in_norm(std::string("linear_") + epilogue_name(e), y, ref, 1e-5));
  }
}

TEST(GemmRef, ActivationsAtKnownValues) {
  // Values of the defining formulas in double; fp32 evaluation must agree to a few ulps.
  const double xs[] = {-6.0, -3.0, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 2.0, 3.0, 6.0};
  for (double x : xs) {
    const float xf = static_cast<float>(x);
    EXPECT_NEAR(gelu_erf(xf), gelu_erf_d(x), 1e-6 + 2e-6 * std::fabs(gelu_erf_d(x))) << "x=" << x;
    EXPECT_NEAR(gelu_tanh(xf), gelu_tanh_d(x), 1e-6 + 2e-6 * std::fabs(gelu_tanh_d(x))) << "x=" << x;
  }
  // Anchors that do not depend on a formula typed here: gelu(1) = Phi(1) = 0.8413447460685429.
  EXPECT_NEAR(gelu_erf(1.0f), 0.8413447460685429, 1e-6);
  EXPECT_EQ(gelu_erf(0.0f), 0.0f);
  EXPECT_EQ(gelu_tanh(0.0f), 0.0f);
  // The two GELUs differ (by up to ~5e-4 near |x| = 2): proof that they are not one function.
  double max_diff = 0.0;
  for (int i = -400; i <= 400; ++i) {
    const float x = static_cast<float>(i) / 100.0f;
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(gelu_erf(x) - gelu_tanh(x))));
  }
  EXPECT_GT(max_diff, 1e-4);
  EXPECT_LT(max_diff, 1e-3);
}

TEST(GemmRef, ValidateRejectsBadArguments) {
  float a[64] = {}, b[64] = {}, c[64] = {}, bias[8] = {};
  auto good = [&] {
    GemmArgs g = gemm_dense(4, 8, 2, false, false, DType::F32, DType::F32);
    g.a = a;
    g.b = b;
    g.c = c;
    return g;
  };
  EXPECT_NO_THROW(validate_gemm(good()));
  auto rejects = [&](GemmArgs g, const char* what) {
    EXPECT_THROW(validate_gemm(g), Error) << what;
  };
  GemmArgs g = good();
  g.m = 0;
  rejects(g, "m = 0");
  g = good();
  g.k = -1;
  rejects(g, "k < 0");
  g = good();
  g.batch = 0;
  rejects(g, "batch 0");
  g = good();
  g.a = nullptr;
  rejects(g, "null A");
  g = good();
  g.c = nullptr;
  rejects(g, "null C");
  g = good();
  g.lda = 1;
  rejects(g, "lda < k");
  g = good();
  g.trans_a = true;  // stored A is now [k, m] = [2, 4]: lda 2 < 4
  rejects(g, "lda < m when transposed");
  g = good();
  g.ldb = 7;
  rejects(g, "ldb < n");
  g = good();
  g.ldc = 7;
  rejects(g, "ldc < n");
  g = good();
  g.epilogue = Epilogue::Bias;
  rejects(g, "bias epilogue without bias");
  g = good();
  g.bias = bias;
  rejects(g, "bias without epilogue");
  g = good();
  g.ab_type = DType::I32;
  rejects(g, "integer A/B");
  g = good();
  g.ab_type = DType::F32;
  g.c_type = DType::F16;
  rejects(g, "f16 C from f32 A/B");
  g = gemm_dense(4, 8, 2, false, false, DType::F32, DType::F32, 2);
  g.a = a;
  g.b = b;
  g.c = c;
  g.stride_c = 8;
  rejects(g, "overlapping batched C");
  g.stride_c = 32;
  g.stride_b = 0;
  EXPECT_NO_THROW(validate_gemm(g)) << "a shared B (stride 0) is allowed";
  // gemm_cpu refuses 16-bit operands: it is the fp32 reference.
  g = good();
  g.ab_type = DType::F16;
  g.c_type = DType::F32;
  EXPECT_THROW(gemm_cpu(g), Error);
}

TEST(GemmRef, EpilogueNames) {
  EXPECT_STREQ(epilogue_name(Epilogue::BiasGeluErf), "bias+gelu_erf");
  EXPECT_FALSE(epilogue_has_bias(Epilogue::None));
  EXPECT_TRUE(epilogue_has_bias(Epilogue::BiasRelu));
}

}  // namespace
}  // namespace flurry
