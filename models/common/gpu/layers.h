// The GPU counterparts of models/common/layers.h that every model shares: a linear through
// cuBLASLt (bias and activation in the epilogue) and the fused residual LayerNorm, taking a small
// context (GEMM handle, stream, workspace, dtype, LayerNorm epsilon) instead of a model's state.
// The weights are views into the device arena filled by upload_weights (weight_upload.h).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "runtime/cuda/gemm_lt.h"
#include "runtime/dtype.h"
#include "runtime/gemm.h"

namespace flurry::models {

struct GpuLinear {
  const void* w = nullptr;  // [out, in] row-major (nn.Linear)
  const void* b = nullptr;  // [out] or null
  int64_t in = 0, out = 0;
};
struct GpuLayerNorm {
  const void* gamma = nullptr;  // [d], model dtype (the layernorm kernel takes one dtype)
  const void* beta = nullptr;
};

// What the blocks launch with; the model owns every piece of it.
struct GpuContext {
  GemmLt* lt = nullptr;
  cudaStream_t stream = nullptr;
  void* gemm_ws = nullptr;
  size_t gemm_ws_bytes = 0;
  void* attn_ws = nullptr;  // decode_attention's split-K partials (decoder_attention.h blocks only)
  size_t attn_ws_bytes = 0;
  DType dtype = DType::F16;  // activations and weights
  int64_t d = 0;             // LayerNorm width
  float eps = 1e-5f;
};

// y[rows, l.out] = x[rows, l.in] W^T (+ b, then the epilogue's activation), through gemm_gpu.
void gpu_linear(const GpuContext& ctx, const GpuLinear& l, const void* x, void* y, int64_t rows,
                Epilogue e = Epilogue::Bias);

// y = LN(x (+ add)); with `add`, x += add is written back first (the residual stream updated in
// place, the pre-LN block's "h += sublayer(h); y = LN(h)" in one pass).
void gpu_residual_layernorm(const GpuContext& ctx, void* x, const void* add, const GpuLayerNorm& ln, void* y,
                            int64_t rows);

// y = LN(x + add) without writing the sum back: the post-LN block's "h = LN(h + sublayer(h))"
// (BERT), with y == x for the update in place. One pass, one store per element.
void gpu_add_layernorm(const GpuContext& ctx, const void* x, const void* add, const GpuLayerNorm& ln, void* y,
                       int64_t rows);

// out[rows, d] = fc2(gelu(fc1(x))), erf GELU fused into fc1's epilogue; `hidden` holds
// [rows, fc1.out]. The residual add is left to the next gpu_residual_layernorm (pre-LN) so it costs
// no extra pass.
void gpu_ffn(const GpuContext& ctx, const GpuLinear& fc1, const GpuLinear& fc2, const void* x, void* hidden, void* out,
             int64_t rows);

// How the rows of a self-attention call form sequences.
struct GpuAttentionShape {
  int heads = 0, head_dim = 0;
  int batch = 0;    // sequences
  int max_len = 0;  // padded: every sequence's length (rows = batch * max_len); varlen: the longest
  const int32_t* cu_seqlens = nullptr;  // device [batch + 1]: unpadded (varlen) rows; null: padded
  float scale = 1.0f;  // 1 when head_dim^-0.5 is folded into q at load time (every model here)
  bool causal = false;
};

// out[rows, d] = out_proj(attention(qkv(x))): the fused q|k|v projection into qkv_buf [rows, 3d],
// flash attention within each sequence into attn_buf [rows, d], then the output projection. The
// residual and LayerNorm are the caller's: pre-LN models add `out` in the next
// gpu_residual_layernorm, post-LN models (BERT) call gpu_add_layernorm(h, out, ln, h) right after.
void gpu_self_attention(const GpuContext& ctx, const GpuLinear& qkv, const GpuLinear& out_proj,
                        const GpuAttentionShape& shape, const void* x, void* qkv_buf, void* attn_buf, void* out,
                        int64_t rows);

// Element offset of row `row` in a buffer of `elt`-byte elements with `width` columns.
inline void* row_ptr(void* base, int64_t row, int64_t width, size_t elt) {
  return static_cast<char*>(base) + static_cast<size_t>(row * width) * elt;
}
inline const void* row_ptr(const void* base, int64_t row, int64_t width, size_t elt) {
  return static_cast<const char*>(base) + static_cast<size_t>(row * width) * elt;
}
// `n` elements past `base` (a column offset inside a row: k at +d, v at +2d of a fused QKV row).
inline const void* elem_ptr(const void* base, int64_t n, size_t elt) {
  return static_cast<const char*>(base) + static_cast<size_t>(n) * elt;
}

}  // namespace flurry::models
