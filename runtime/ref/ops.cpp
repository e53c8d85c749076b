// CPU reference ops: see ops.h for the contracts.
#include "runtime/ref/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "runtime/check.h"
#include "runtime/gemm.h"

namespace flurry {

void layernorm_cpu(const float* x, const float* add, float* sum_out, const float* gamma,
                   const float* beta, float* y, int64_t rows, int64_t dim, float eps) {
  FLURRY_CHECK(rows >= 0 && dim > 0, "layernorm: bad shape rows=" << rows << " dim=" << dim);
  FLURRY_CHECK(x && gamma && beta && y, "layernorm: null pointer");
  std::vector<float> h(static_cast<size_t>(dim));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    // Form the (possibly summed) row first, so sum_out and y may alias x.
    for (int64_t i = 0; i < dim; ++i) h[i] = add ? xr[i] + add[r * dim + i] : xr[i];
    if (sum_out) std::copy(h.begin(), h.end(), sum_out + r * dim);
    double mean = 0.0;
    for (int64_t i = 0; i < dim; ++i) mean += h[i];
    mean /= static_cast<double>(dim);
    double var = 0.0;
    for (int64_t i = 0; i < dim; ++i) {
      const double d = h[i] - mean;
      var += d * d;
    }
    var /= static_cast<double>(dim);
    const double inv = 1.0 / std::sqrt(var + static_cast<double>(eps));
    float* yr = y + r * dim;
    for (int64_t i = 0; i < dim; ++i) {
      yr[i] = static_cast<float>((h[i] - mean) * inv) * gamma[i] + beta[i];
    }
  }
}

void softmax_rows_cpu(float* x, int64_t rows, int64_t cols, int64_t ld) {
  FLURRY_CHECK(ld >= cols && cols >= 0, "softmax: ld " << ld << " < cols " << cols);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * ld;
    float mx = neg_inf;
    for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, row[j]);
    if (mx == neg_inf) {  // nothing visible: zero weights instead of 0/0
      std::fill(row, row + cols, 0.0f);
      continue;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < cols; ++j) {
      row[j] = std::exp(row[j] - mx);
      sum += row[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < cols; ++j) row[j] *= inv;
  }
}

int64_t attention_scratch_floats(int64_t q_len, int64_t kv_len) { return q_len * kv_len; }

void attention_cpu(const AttentionArgs& a, float* scratch) {
  FLURRY_CHECK(a.q && a.k && a.v && a.out, "attention: null pointer");
  FLURRY_CHECK(a.heads > 0 && a.head_dim > 0 && a.q_len >= 0 && a.kv_len >= 0,
               "attention: bad shape heads=" << a.heads << " head_dim=" << a.head_dim
                                             << " q_len=" << a.q_len << " kv_len=" << a.kv_len);
  const int64_t width = a.heads * a.head_dim;
  FLURRY_CHECK(a.q_ld >= width && a.k_ld >= width && a.v_ld >= width && a.out_ld >= width,
               "attention: a row stride is below heads*head_dim=" << width);
  FLURRY_CHECK(!a.causal || a.kv_len >= a.q_len,
               "attention: causal needs kv_len >= q_len, got " << a.kv_len << " < " << a.q_len);
  if (a.q_len == 0) return;
  if (a.kv_len == 0) {  // no keys at all: every query sees nothing
    for (int64_t i = 0; i < a.q_len; ++i) std::fill(a.out + i * a.out_ld, a.out + i * a.out_ld + width, 0.0f);
    return;
  }
  std::vector<float> own;
  if (!scratch) {
    own.resize(static_cast<size_t>(attention_scratch_floats(a.q_len, a.kv_len)));
    scratch = own.data();
  }
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int64_t past = a.kv_len - a.q_len;
  for (int64_t h = 0; h < a.heads; ++h) {
    const int64_t col = h * a.head_dim;
    // scores[q_len, kv_len] = scale * Q_h K_h^T
    GemmArgs s;
    s.m = a.q_len; s.n = a.kv_len; s.k = a.head_dim;
    s.trans_b = true;
    s.a = a.q + col; s.lda = a.q_ld;
    s.b = a.k + col; s.ldb = a.k_ld;
    s.c = scratch; s.ldc = a.kv_len;
    s.alpha = a.scale;
    gemm_cpu(s);
    for (int64_t i = 0; i < a.q_len; ++i) {
      float* row = scratch + i * a.kv_len;
      if (a.causal) std::fill(row + past + i + 1, row + a.kv_len, neg_inf);
      if (a.key_valid) {
        for (int64_t j = 0; j < a.kv_len; ++j) {
          if (!a.key_valid[j]) row[j] = neg_inf;
        }
      }
    }
    softmax_rows_cpu(scratch, a.q_len, a.kv_len, a.kv_len);
    // out_h[q_len, head_dim] = P V_h
    GemmArgs o;
    o.m = a.q_len; o.n = a.head_dim; o.k = a.kv_len;
    o.a = scratch; o.lda = a.kv_len;
    o.b = a.v + col; o.ldb = a.v_ld;
    o.c = a.out + col; o.ldc = a.out_ld;
    gemm_cpu(o);
  }
}

int64_t conv1d_out_len(int64_t t_in, int stride) {
  // (t_in + 2 * pad - kernel) / stride + 1 with kernel 3, pad 1.
  return (t_in - 1) / stride + 1;
}

int64_t conv1d_scratch_floats(int64_t c_in, int64_t t_in, int stride) {
  return conv1d_out_len(t_in, stride) * c_in * 3;
}

void conv1d_k3_cpu(const float* x, bool input_time_major, const float* weight, const float* bias,
                   float* y, int64_t c_in, int64_t t_in, int64_t c_out, int stride, float* scratch) {
  FLURRY_CHECK(x && weight && y, "conv1d: null pointer");
  FLURRY_CHECK(stride == 1 || stride == 2, "conv1d: stride must be 1 or 2, got " << stride);
  FLURRY_CHECK(c_in > 0 && t_in > 0 && c_out > 0,
               "conv1d: bad shape c_in=" << c_in << " t_in=" << t_in << " c_out=" << c_out);
  const int64_t t_out = conv1d_out_len(t_in, stride);
  const int64_t kdim = c_in * 3;
  std::vector<float> own;
  if (!scratch) {
    own.resize(static_cast<size_t>(conv1d_scratch_floats(c_in, t_in, stride)));
    scratch = own.data();
  }
  // im2col: col[t, c * 3 + kk] = x[c, t * stride + kk - 1], zero outside the input. The column order
  // matches PyTorch's weight [c_out, c_in, 3] flattened to [c_out, c_in * 3].
  for (int64_t t = 0; t < t_out; ++t) {
    float* col = scratch + t * kdim;
    for (int kk = 0; kk < 3; ++kk) {
      const int64_t src = t * stride + kk - 1;
      const bool inside = src >= 0 && src < t_in;
      for (int64_t c = 0; c < c_in; ++c) {
        float v = 0.0f;
        if (inside) v = input_time_major ? x[src * c_in + c] : x[c * t_in + src];
        col[c * 3 + kk] = v;
      }
    }
  }
  linear_cpu(scratch, weight, bias, y, t_out, kdim, c_out, bias ? Epilogue::Bias : Epilogue::None);
}

void gelu_erf_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = gelu_erf(x[i]);
}

void embedding_cpu(const float* table, int64_t vocab, int64_t dim, const int32_t* ids, int64_t n,
                   float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = ids[i];
    FLURRY_CHECK(id >= 0 && id < vocab,
                 "embedding: token id " << id << " at position " << i << " outside [0, " << vocab << ")");
    std::copy(table + id * dim, table + (id + 1) * dim, out + i * dim);
  }
}

void add_cpu(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

}  // namespace flurry
