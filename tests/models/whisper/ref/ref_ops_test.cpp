// The CPU reference ops (runtime/ref/ops.h) against direct double-precision loops written from the
// definitions, over realistic and odd shapes (1, 7, 33 ...), with poisoned outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "runtime/check.h"
#include "runtime/gemm.h"
#include "runtime/ref/ops.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

using test::close_in_norm;

constexpr double kF32Bound = 1e-5;

std::vector<float> poisoned(size_t n) {
  std::vector<float> v(n);
  test::poison(v.data(), n * sizeof(float));
  return v;
}

std::vector<float> layernorm_naive(const std::vector<float>& x, const std::vector<float>& g,
                                   const std::vector<float>& b, int64_t rows, int64_t dim, double eps) {
  std::vector<float> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < dim; ++i) mean += x[r * dim + i];
    mean /= dim;
    for (int64_t i = 0; i < dim; ++i) var += (x[r * dim + i] - mean) * (x[r * dim + i] - mean);
    var /= dim;
    for (int64_t i = 0; i < dim; ++i) {
      y[r * dim + i] = static_cast<float>((x[r * dim + i] - mean) / std::sqrt(var + eps) * g[i] + b[i]);
    }
  }
  return y;
}

TEST(RefOps, LayerNormMatchesDefinition) {
  auto rng = test::test_rng("layernorm");
  for (int64_t dim : {1, 7, 33, 384, 1280}) {
    const int64_t rows = 5;
    auto x = test::random_vector(rows * dim, rng, -3.0f, 5.0f);  // offset mean: tests centring
    auto g = test::random_vector(dim, rng);
    auto b = test::random_vector(dim, rng);
    auto y = poisoned(x.size());
    layernorm_cpu(x.data(), nullptr, nullptr, g.data(), b.data(), y.data(), rows, dim, 1e-5f);
    auto ref = layernorm_naive(x, g, b, rows, dim, 1e-5);
    if (dim == 1) {  // a single feature normalises to 0, so y == beta exactly
      for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(y[r], b[0]);
    } else {
      EXPECT_TRUE(close_in_norm("layernorm_d" + std::to_string(dim), y, ref, kF32Bound));
    }
  }
}

TEST(RefOps, LayerNormFusedResidualInPlace) {
  auto rng = test::test_rng("layernorm_residual");
  const int64_t rows = 7, dim = 33;
  auto h = test::random_vector(rows * dim, rng);
  auto add = test::random_vector(rows * dim, rng);
  auto g = test::random_vector(dim, rng);
  auto b = test::random_vector(dim, rng);
  std::vector<float> sum(h.size());
  for (size_t i = 0; i < h.size(); ++i) sum[i] = h[i] + add[i];
  auto ref = layernorm_naive(sum, g, b, rows, dim, 1e-5);
  auto y = poisoned(h.size());
  // sum_out aliases x: the residual stream is updated in place, as the model uses it.
  layernorm_cpu(h.data(), add.data(), h.data(), g.data(), b.data(), y.data(), rows, dim, 1e-5f);
  EXPECT_EQ(h, sum);
  EXPECT_TRUE(close_in_norm("layernorm_residual", y, ref, kF32Bound));
}

TEST(RefOps, SoftmaxRowsAndFullyMaskedRow) {
  const float ninf = -std::numeric_limits<float>::infinity();
  // Two rows of 3 inside a stride of 4; the 4th column must stay untouched.
  std::vector<float> x = {1.0f, 2.0f, 3.0f, 99.0f, ninf, ninf, ninf, 99.0f};
  softmax_rows_cpu(x.data(), 2, 3, 4);
  const double e = std::exp(1.0), e2 = std::exp(2.0), s = 1 + e + e2;
  EXPECT_NEAR(x[0], 1 / s, 1e-7);
  EXPECT_NEAR(x[1], e / s, 1e-7);
  EXPECT_NEAR(x[2], e2 / s, 1e-7);
  EXPECT_EQ(x[3], 99.0f);
  EXPECT_EQ(x[4], 0.0f);
  EXPECT_EQ(x[6], 0.0f);
  EXPECT_EQ(x[7], 99.0f);
  // Large values do not overflow (max subtracted first).
  std::vector<float> big = {1000.0f, 1000.0f};
  softmax_rows_cpu(big.data(), 1, 2, 2);
  EXPECT_FLOAT_EQ(big[0], 0.5f);
}

// out[i, h*hd + e] for the definition of AttentionArgs, in double.
std::vector<float> attention_naive(const AttentionArgs& a) {
  std::vector<float> out(static_cast<size_t>(a.q_len * a.out_ld), 0.0f);
  const int64_t past = a.kv_len - a.q_len;
  for (int64_t h = 0; h < a.heads; ++h) {
    for (int64_t i = 0; i < a.q_len; ++i) {
      std::vector<double> s(static_cast<size_t>(a.kv_len));
      double mx = -1e300;
      bool any = false;
      for (int64_t j = 0; j < a.kv_len; ++j) {
        const bool visible = (!a.causal || j <= past + i) && (!a.key_valid || a.key_valid[j]);
        if (!visible) {
          s[j] = -1e300;
          continue;
        }
        double dot = 0;
        for (int64_t e = 0; e < a.head_dim; ++e) {
          dot += static_cast<double>(a.q[i * a.q_ld + h * a.head_dim + e]) * a.k[j * a.k_ld + h * a.head_dim + e];
        }
        s[j] = dot * a.scale;
        mx = std::max(mx, s[j]);
        any = true;
      }
      if (!any) continue;
      double sum = 0;
      for (int64_t j = 0; j < a.kv_len; ++j) {
        s[j] = s[j] <= -1e299 ? 0.0 : std::exp(s[j] - mx);
        sum += s[j];
      }
      for (int64_t e = 0; e < a.head_dim; ++e) {
        double acc = 0;
        for (int64_t j = 0; j < a.kv_len; ++j) acc += s[j] / sum * a.v[j * a.v_ld + h * a.head_dim + e];
        out[i * a.out_ld + h * a.head_dim + e] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

struct AttnCase {
  int64_t heads, head_dim, q_len, kv_len;
  bool causal, masked;
};

TEST(RefOps, AttentionMatchesDefinition) {
  auto rng = test::test_rng("attention");
  const AttnCase cases[] = {
      {1, 8, 1, 1, false, false},  {4, 16, 7, 33, false, false}, {4, 16, 33, 33, true, false},
      {2, 64, 1, 17, true, false}, {3, 8, 5, 12, true, true},    {4, 16, 7, 33, false, true},
      {6, 64, 40, 40, false, false}};
  for (const AttnCase& t : cases) {
    const int64_t w = t.heads * t.head_dim;
    // q, k, v interleaved in one fused [rows, 3w] buffer, as a fused QKV projection writes them.
    const int64_t rows = std::max(t.q_len, t.kv_len);
    auto qkv = test::random_vector(rows * 3 * w, rng, -2.0f, 2.0f);
    std::vector<uint8_t> valid(static_cast<size_t>(t.kv_len), 1);
    if (t.masked) {
      for (int64_t j = 0; j < t.kv_len; j += 3) valid[j] = 0;
    }
    AttentionArgs a;
    a.q = qkv.data() + (rows - t.q_len) * 3 * w;  // queries are the last q_len rows
    a.k = qkv.data() + w;
    a.v = qkv.data() + 2 * w;
    a.q_ld = a.k_ld = a.v_ld = 3 * w;
    a.out_ld = w + 3;  // padded output rows
    a.heads = t.heads;
    a.head_dim = t.head_dim;
    a.q_len = t.q_len;
    a.kv_len = t.kv_len;
    a.scale = 1.0f / std::sqrt(static_cast<float>(t.head_dim));
    a.causal = t.causal;
    a.key_valid = t.masked ? valid.data() : nullptr;
    auto out = poisoned(static_cast<size_t>(t.q_len * a.out_ld));
    a.out = out.data();
    attention_cpu(a);
    auto ref = attention_naive(a);
    // Compare only the written columns; the padding stays poisoned.
    std::vector<float> got, want;
    for (int64_t i = 0; i < t.q_len; ++i) {
      for (int64_t c = 0; c < w; ++c) {
        got.push_back(out[i * a.out_ld + c]);
        want.push_back(ref[i * a.out_ld + c]);
      }
      EXPECT_TRUE(std::isnan(out[i * a.out_ld + w])) << "attention wrote past the row";
    }
    const std::string name = "attention_h" + std::to_string(t.heads) + "_q" + std::to_string(t.q_len) + "_k" +
                             std::to_string(t.kv_len) + (t.causal ? "_causal" : "") + (t.masked ? "_masked" : "");
    EXPECT_TRUE(close_in_norm(name, got, want, kF32Bound));
  }
}

TEST(RefOps, AttentionCausalFirstQueryCopiesFirstValue) {
  // A causal query at position 0 sees only key 0, so its output is exactly v[0].
  std::vector<float> q = {1, 2, 3, 4}, k = {5, 6, 7, 8}, v = {9, 10, 11, 12}, out(4);
  AttentionArgs a;
  a.q = q.data(); a.k = k.data(); a.v = v.data(); a.out = out.data();
  a.q_ld = a.k_ld = a.v_ld = a.out_ld = 2;
  a.heads = 1; a.head_dim = 2; a.q_len = 2; a.kv_len = 2; a.causal = true;
  attention_cpu(a);
  EXPECT_FLOAT_EQ(out[0], 9.0f);
  EXPECT_FLOAT_EQ(out[1], 10.0f);
}

TEST(RefOps, AttentionAllKeysMaskedGivesZeros) {
  std::vector<float> q(4, 1.0f), k(4, 1.0f), v(4, 1.0f), out = poisoned(4);
  std::vector<uint8_t> valid = {0, 0};
  AttentionArgs a;
  a.q = q.data(); a.k = k.data(); a.v = v.data(); a.out = out.data();
  a.q_ld = a.k_ld = a.v_ld = a.out_ld = 2;
  a.heads = 1; a.head_dim = 2; a.q_len = 2; a.kv_len = 2; a.key_valid = valid.data();
  attention_cpu(a);
  for (float f : out) EXPECT_EQ(f, 0.0f);
}

// Direct convolution: y[t, o] = b[o] + sum_{c, kk} w[o, c, kk] * x[c, t*stride + kk - 1].
std::vector<float> conv_naive(const std::vector<float>& x_cm, const std::vector<float>& w, const std::vector<float>& b,
                              int64_t c_in, int64_t t_in, int64_t c_out, int stride) {
  const int64_t t_out = (t_in - 1) / stride + 1;
  std::vector<float> y(static_cast<size_t>(t_out * c_out));
  for (int64_t t = 0; t < t_out; ++t) {
    for (int64_t o = 0; o < c_out; ++o) {
      double acc = b[o];
      for (int64_t c = 0; c < c_in; ++c) {
        for (int kk = 0; kk < 3; ++kk) {
          const int64_t s = t * stride + kk - 1;
          if (s >= 0 && s < t_in) acc += static_cast<double>(w[(o * c_in + c) * 3 + kk]) * x_cm[c * t_in + s];
        }
      }
      y[t * c_out + o] = static_cast<float>(acc);
    }
  }
  return y;
}

TEST(RefOps, Conv1dBothLayoutsBothStrides) {
  auto rng = test::test_rng("conv1d");
  for (int64_t t_in : {1, 2, 7, 33, 3000}) {
    for (int stride : {1, 2}) {
      const int64_t c_in = t_in == 3000 ? 16 : 5, c_out = 6;
      auto x = test::random_vector(c_in * t_in, rng);
      auto w = test::random_vector(c_out * c_in * 3, rng);
      auto b = test::random_vector(c_out, rng);
      const int64_t t_out = conv1d_out_len(t_in, stride);
      auto ref = conv_naive(x, w, b, c_in, t_in, c_out, stride);
      ASSERT_EQ(static_cast<int64_t>(ref.size()), t_out * c_out);
      const std::string tag = "_t" + std::to_string(t_in) + "_s" + std::to_string(stride);

      auto y = poisoned(ref.size());
      conv1d_k3_cpu(x.data(), false, w.data(), b.data(), y.data(), c_in, t_in, c_out, stride);
      EXPECT_TRUE(close_in_norm("conv1d_channel_major" + tag, y, ref, kF32Bound));

      std::vector<float> xt(x.size());  // the same input, time-major
      for (int64_t c = 0; c < c_in; ++c) {
        for (int64_t t = 0; t < t_in; ++t) xt[t * c_in + c] = x[c * t_in + t];
      }
      std::vector<float> scratch(static_cast<size_t>(conv1d_scratch_floats(c_in, t_in, stride)));
      y = poisoned(ref.size());
      conv1d_k3_cpu(xt.data(), true, w.data(), b.data(), y.data(), c_in, t_in, c_out, stride, scratch.data());
      EXPECT_TRUE(close_in_norm("conv1d_time_major" + tag, y, ref, kF32Bound));
    }
  }
  EXPECT_EQ(conv1d_out_len(3000, 2), 1500);
  std::vector<float> one(3, 0.0f);
  EXPECT_THROW(conv1d_k3_cpu(one.data(), false, one.data(), nullptr, one.data(), 1, 1, 1, 3), Error);
}

TEST(RefOps, GeluEmbeddingAdd) {
  std::vector<float> g = {-3.0f, -0.5f, 0.0f, 0.5f, 3.0f};
  std::vector<float> want(g.size());
  for (size_t i = 0; i < g.size(); ++i) want[i] = static_cast<float>(0.5 * g[i] * (1 + std::erf(g[i] / std::sqrt(2.0))));
  gelu_erf_inplace(g.data(), static_cast<int64_t>(g.size()));
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want[i], 1e-6);

  const std::vector<float> table = {0, 1, 10, 11, 20, 21};  // vocab 3, dim 2
  const std::vector<int32_t> ids = {2, 0, 2};
  std::vector<float> out = poisoned(6);
  embedding_cpu(table.data(), 3, 2, ids.data(), 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{20, 21, 0, 1, 20, 21}));
  const int32_t bad[] = {1, 3};
  try {
    embedding_cpu(table.data(), 3, 2, bad, 2, out.data());
    FAIL() << "out-of-range id accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 3"), std::string::npos) << e.what();
  }
  const int32_t neg = -1;
  EXPECT_THROW(embedding_cpu(table.data(), 3, 2, &neg, 1, out.data()), Error);

  std::vector<float> a = {1, 2}, b = {10, 20};
  add_cpu(a.data(), b.data(), a.data(), 2);
  EXPECT_EQ(a, (std::vector<float>{11, 22}));
}

}  // namespace
}  // namespace flurry
