// CPU reference ops shared by the models (Whisper, BERT): plain fp32, row-major, readable.
//
// These are the oracle for the CUDA kernels and the path `--device cpu` takes. Matrix products go
// through gemm_cpu (OpenBLAS when present); everything else is a straightforward loop. Buffers are
// caller-owned: an op never allocates except where a scratch pointer is documented as optional.
//
// Layout convention: activations are token-major [rows, features] with a row stride in elements, the
// natural output of a linear layer, so a fused QKV buffer [T, 3d] can be read in place by attention.
#pragma once

#include <cstdint>

namespace flurry {

// y[r] = LayerNorm(x[r] (+ add[r])) * gamma + beta over `dim` features, for `rows` rows.
// Fused residual: when `add` is non-null the sum x + add is formed first and, when `sum_out` is
// non-null, written there (sum_out may alias x: the pre-LN residual stream h += sublayer output).
// Mean and centred (biased) variance are accumulated in double: this is the oracle, so it should be
// the most accurate of the implementations it judges.
void layernorm_cpu(const float* x, const float* add, float* sum_out, const float* gamma,
                   const float* beta, float* y, int64_t rows, int64_t dim, float eps);

// In-place softmax over each of `rows` rows of `cols` values (row stride `ld`, >= cols).
// Entries equal to -inf take no weight; a row that is entirely -inf becomes all zeros rather than NaN.
void softmax_rows_cpu(float* x, int64_t rows, int64_t cols, int64_t ld);

// Scaled-dot-product attention for one sequence, all heads, fp32.
//   q:   [q_len, heads * head_dim] rows of stride q_ld (head h at column h * head_dim)
//   k,v: [kv_len, heads * head_dim] rows of stride k_ld / v_ld
//   out: [q_len, heads * head_dim] rows of stride out_ld
// scores[h, i, j] = scale * q_i . k_j, masked, softmax over j, then out_i = sum_j p_ij v_j.
// causal: query i sits at absolute position (kv_len - q_len + i) and sees keys j <= that position,
//   which is what a decoder with a KV cache needs (the new rows are the last q_len positions).
// key_valid: optional [kv_len] flags (non-zero = attend), the key-padding mask of a padded batch.
//   A query with no visible key gets a zero output.
struct AttentionArgs {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  float* out = nullptr;
  int64_t q_ld = 0, k_ld = 0, v_ld = 0, out_ld = 0;
  int64_t heads = 0, head_dim = 0, q_len = 0, kv_len = 0;
  float scale = 1.0f;
  bool causal = false;
  const uint8_t* key_valid = nullptr;
};
// Scratch the op needs for one head's score matrix, in floats.
int64_t attention_scratch_floats(int64_t q_len, int64_t kv_len);
// `scratch` holds attention_scratch_floats(q_len, kv_len) floats; null allocates one internally.
void attention_cpu(const AttentionArgs& a, float* scratch = nullptr);

// 1-D convolution with kernel 3 and padding 1 (Whisper's front end), stride 1 or 2, via im2col and
// one GEMM.  weight: [c_out, c_in, 3] (PyTorch Conv1d), bias: [c_out] or null.
// Input is channel-major [c_in, t_in] (a mel spectrogram) unless `input_time_major`, in which case
// it is [t_in, c_in] (the output of a previous conv1d_cpu). Output is time-major [t_out, c_out] with
// t_out = (t_in - 1) / stride + 1.
int64_t conv1d_out_len(int64_t t_in, int stride);
int64_t conv1d_scratch_floats(int64_t c_in, int64_t t_in, int stride);
void conv1d_k3_cpu(const float* x, bool input_time_major, const float* weight, const float* bias,
                   float* y, int64_t c_in, int64_t t_in, int64_t c_out, int stride,
                   float* scratch = nullptr);

// x = gelu(x) with the exact erf form, in place.
void gelu_erf_inplace(float* x, int64_t n);

// out[i, :] = table[ids[i], :] for a [vocab, dim] table; throws naming the bad id when one is out of
// range.
void embedding_cpu(const float* table, int64_t vocab, int64_t dim, const int32_t* ids, int64_t n,
                   float* out);

// out = a + b elementwise (out may alias a or b).
void add_cpu(const float* a, const float* b, float* out, int64_t n);

}  // namespace flurry
