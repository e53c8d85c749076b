// CPU reference GEMM (runtime/gemm.h): argument validation, OpenBLAS sgemm when the build has it,
// a portable blocked loop otherwise, and the epilogues applied in fp32.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "runtime/check.h"
#include "runtime/gemm.h"

#if FLURRY_HAVE_BLAS
#include <cblas.h>
#endif

namespace flurry {

const char* epilogue_name(Epilogue e) {
  switch (e) {
    case Epilogue::None: return "none";
    case Epilogue::Bias: return "bias";
    case Epilogue::BiasGeluErf: return "bias+gelu_erf";
    case Epilogue::BiasGeluTanh: return "bias+gelu_tanh";
    case Epilogue::BiasRelu: return "bias+relu";
  }
  return "unknown";
}

bool epilogue_has_bias(Epilogue e) { return e != Epilogue::None; }

GemmArgs gemm_dense(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, DType ab, DType c,
                    int64_t batch) {
  GemmArgs g;
  g.m = m;
  g.n = n;
  g.k = k;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.ab_type = ab;
  g.c_type = c;
  g.batch = batch;
  // Stored shapes: A is [m, k] or, transposed, [k, m]; B is [k, n] or [n, k]; C is [m, n].
  g.lda = trans_a ? m : k;
  g.ldb = trans_b ? k : n;
  g.ldc = n;
  g.stride_a = m * k;
  g.stride_b = k * n;
  g.stride_c = m * n;
  return g;
}

void validate_gemm(const GemmArgs& g) {
  FLURRY_CHECK(g.m > 0 && g.n > 0 && g.k > 0,
               "GEMM sizes must be positive, got m=" << g.m << " n=" << g.n << " k=" << g.k);
  FLURRY_CHECK(g.batch > 0, "GEMM batch must be positive, got " << g.batch);
  FLURRY_CHECK(g.a != nullptr && g.b != nullptr && g.c != nullptr, "GEMM operand pointer is null");
  FLURRY_CHECK(g.ab_type == DType::F32 || g.ab_type == DType::F16 || g.ab_type == DType::BF16,
               "GEMM A/B dtype must be f32, f16 or bf16, got " << dtype_name(g.ab_type));
  FLURRY_CHECK(g.c_type == g.ab_type || g.c_type == DType::F32,
               "GEMM C dtype must equal the A/B dtype or be f32, got C " << dtype_name(g.c_type)
                                                                         << " with A/B "
                                                                         << dtype_name(g.ab_type));
  if (epilogue_has_bias(g.epilogue)) {
    FLURRY_CHECK(g.bias != nullptr, "epilogue " << epilogue_name(g.epilogue) << " needs a bias");
  } else {
    // A bias with no epilogue to add it is almost certainly a caller mistake: refuse it.
    FLURRY_CHECK(g.bias == nullptr, "a bias was given but the epilogue is 'none'");
  }
  // Rows of the stored operands are contiguous; the leading dimension is the row stride.
  const int64_t a_cols = g.trans_a ? g.m : g.k;
  const int64_t b_cols = g.trans_b ? g.k : g.n;
  FLURRY_CHECK(g.lda >= a_cols, "lda " << g.lda << " < " << a_cols << " (columns of stored A)");
  FLURRY_CHECK(g.ldb >= b_cols, "ldb " << g.ldb << " < " << b_cols << " (columns of stored B)");
  FLURRY_CHECK(g.ldc >= g.n, "ldc " << g.ldc << " < n = " << g.n);
  if (g.batch > 1) {
    // A or B may be shared by every batch entry (stride 0); C entries must not overlap.
    FLURRY_CHECK(g.stride_a >= 0 && g.stride_b >= 0, "GEMM batch strides must not be negative");
    const int64_t c_extent = (g.m - 1) * g.ldc + g.n;
    FLURRY_CHECK(g.stride_c >= c_extent, "stride_c " << g.stride_c << " < " << c_extent
                                                     << ": batched outputs would overlap");
  }
}

float gelu_erf(float x) {
  const float inv_sqrt2 = 0.70710678118654752f;
  return 0.5f * x * (1.0f + std::erf(x * inv_sqrt2));
}

float gelu_tanh(float x) {
  const float sqrt_2_over_pi = 0.79788456080286536f;
  return 0.5f * x * (1.0f + std::tanh(sqrt_2_over_pi * (x + 0.044715f * x * x * x)));
}

namespace {

// Applies the epilogue to one row of C (n elements) in place.
void apply_epilogue_row(float* row, const float* bias, int64_t n, Epilogue e) {
  switch (e) {
    case Epilogue::None: return;
    case Epilogue::Bias:
      for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
      return;
    case Epilogue::BiasGeluErf:
      for (int64_t j = 0; j < n; ++j) row[j] = gelu_erf(row[j] + bias[j]);
      return;
    case Epilogue::BiasGeluTanh:
      for (int64_t j = 0; j < n; ++j) row[j] = gelu_tanh(row[j] + bias[j]);
      return;
    case Epilogue::BiasRelu:
      for (int64_t j = 0; j < n; ++j) row[j] = std::max(0.0f, row[j] + bias[j]);
      return;
  }
}

#if !FLURRY_HAVE_BLAS
// Portable fallback. op(B) is first copied to a dense [k, n] buffer so the inner loop is a
// contiguous axpy whatever the transposes; tiles of kRowTile rows x kColTile columns x kDepthTile
// depth keep a B tile in L2 while several rows of C reuse it.
constexpr int64_t kRowTile = 8, kColTile = 512, kDepthTile = 128;

void gemm_rows_blocked(const GemmArgs& g, const float* a, const float* bt, float* c, int64_t r0,
                       int64_t r1) {
  const int64_t n = g.n, k = g.k;
  std::vector<float> acc(static_cast<size_t>(kRowTile * kColTile));
  std::vector<float> arow(static_cast<size_t>(kRowTile * k));
  for (int64_t i0 = r0; i0 < r1; i0 += kRowTile) {
    const int64_t rows = std::min(kRowTile, r1 - i0);
    for (int64_t r = 0; r < rows; ++r) {  // gather op(A) rows, contiguous in depth
      for (int64_t p = 0; p < k; ++p) {
        arow[r * k + p] = g.trans_a ? a[p * g.lda + (i0 + r)] : a[(i0 + r) * g.lda + p];
      }
    }
    for (int64_t j0 = 0; j0 < n; j0 += kColTile) {
      const int64_t cols = std::min(kColTile, n - j0);
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t p0 = 0; p0 < k; p0 += kDepthTile) {
        const int64_t p1 = std::min(k, p0 + kDepthTile);
        for (int64_t r = 0; r < rows; ++r) {
          float* acc_r = acc.data() + r * kColTile;
          for (int64_t p = p0; p < p1; ++p) {
            const float av = arow[r * k + p];
            const float* brow = bt + p * n + j0;
            for (int64_t j = 0; j < cols; ++j) acc_r[j] += av * brow[j];
          }
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        float* crow = c + (i0 + r) * g.ldc + j0;
        const float* acc_r = acc.data() + r * kColTile;
        for (int64_t j = 0; j < cols; ++j) {
          // beta == 0 overwrites without reading C, as BLAS does (C may hold garbage or NaN).
          crow[j] = g.alpha * acc_r[j] + (g.beta == 0.0f ? 0.0f : g.beta * crow[j]);
        }
      }
    }
  }
}

void gemm_one_portable(const GemmArgs& g, const float* a, const float* b, float* c) {
  std::vector<float> bt(static_cast<size_t>(g.k * g.n));
  for (int64_t p = 0; p < g.k; ++p) {
    for (int64_t j = 0; j < g.n; ++j) {
      bt[p * g.n + j] = g.trans_b ? b[j * g.ldb + p] : b[p * g.ldb + j];
    }
  }
  // Split rows over threads once the product is large enough to pay for them.
  const double flops = 2.0 * static_cast<double>(g.m) * g.n * g.k;
  const int64_t hw = std::max(1u, std::thread::hardware_concurrency());
  const int64_t threads = flops < 5e7 ? 1 : std::min<int64_t>(hw, (g.m + kRowTile - 1) / kRowTile);
  if (threads <= 1) {
    gemm_rows_blocked(g, a, bt.data(), c, 0, g.m);
    return;
  }
  const int64_t per = (g.m + threads - 1) / threads;
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < threads; ++t) {
    const int64_t r0 = t * per, r1 = std::min(g.m, r0 + per);
    if (r0 >= r1) break;
    pool.emplace_back(gemm_rows_blocked, std::cref(g), a, bt.data(), c, r0, r1);
  }
  for (auto& th : pool) th.join();
}
#endif

void gemm_one(const GemmArgs& g, const float* a, const float* b, float* c) {
#if FLURRY_HAVE_BLAS
  const int64_t int_max = std::numeric_limits<int>::max();
  FLURRY_CHECK(g.m <= int_max && g.n <= int_max && g.k <= int_max && g.lda <= int_max &&
                   g.ldb <= int_max && g.ldc <= int_max,
               "GEMM dimension exceeds the 32-bit range of CBLAS");
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
              g.trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(g.m), static_cast<int>(g.n),
              static_cast<int>(g.k), g.alpha, a, static_cast<int>(g.lda), b, static_cast<int>(g.ldb),
              g.beta, c, static_cast<int>(g.ldc));
#else
  gemm_one_portable(g, a, b, c);
#endif
}

}  // namespace

void gemm_cpu(const GemmArgs& g) {
  validate_gemm(g);
  FLURRY_CHECK(g.ab_type == DType::F32 && g.c_type == DType::F32,
               "gemm_cpu computes in fp32 only, got A/B " << dtype_name(g.ab_type) << " and C "
                                                          << dtype_name(g.c_type));
  const float* a = static_cast<const float*>(g.a);
  const float* b = static_cast<const float*>(g.b);
  float* c = static_cast<float*>(g.c);
  const float* bias = static_cast<const float*>(g.bias);
  for (int64_t i = 0; i < g.batch; ++i) {
    float* ci = c + i * g.stride_c;
    gemm_one(g, a + i * g.stride_a, b + i * g.stride_b, ci);
    if (g.epilogue != Epilogue::None) {
      for (int64_t r = 0; r < g.m; ++r) apply_epilogue_row(ci + r * g.ldc, bias, g.n, g.epilogue);
    }
  }
}

void linear_cpu(const float* x, const float* w, const float* bias, float* y, int64_t rows,
                int64_t in, int64_t out, Epilogue e) {
  GemmArgs g = gemm_dense(rows, out, in, /*trans_a=*/false, /*trans_b=*/true, DType::F32, DType::F32);
  g.a = x;
  g.b = w;
  g.c = y;
  g.bias = bias;
  // A bias with no epilogue named means "add it": the common nn.Linear call.
  g.epilogue = (bias != nullptr && e == Epilogue::None) ? Epilogue::Bias : e;
  gemm_cpu(g);
}

}  // namespace flurry
