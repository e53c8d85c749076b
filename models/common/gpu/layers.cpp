// GPU linear and residual LayerNorm shared by every model (see layers.h).
#include "models/common/gpu/layers.h"

#include "runtime/cuda/gemm_gpu.h"
#include "kernels/attention.cuh"
#include "kernels/layernorm.cuh"
#include "runtime/check.h"

namespace flurry::models {

void gpu_linear(const GpuContext& ctx, const GpuLinear& l, const void* x, void* y, int64_t rows, Epilogue e) {
  if (rows == 0) return;
  GemmArgs a;
  a.m = rows;
  a.n = l.out;
  a.k = l.in;
  a.trans_b = true;
  a.a = x;
  a.lda = l.in;
  a.b = l.w;
  a.ldb = l.in;
  a.c = y;
  a.ldc = l.out;
  a.ab_type = a.c_type = ctx.dtype;
  a.bias = l.b;
  a.epilogue = l.b != nullptr ? e : Epilogue::None;
  FLURRY_CHECK(l.b != nullptr || e == Epilogue::Bias || e == Epilogue::None,
               "gpu linear: activation on a bias-free linear");
  gemm_gpu(*ctx.lt, a, ctx.gemm_ws, ctx.gemm_ws_bytes, ctx.stream);
}

void gpu_residual_layernorm(const GpuContext& ctx, void* x, const void* add, const GpuLayerNorm& ln, void* y,
                            int64_t rows) {
  if (rows == 0) return;
  LayerNormArgs a;
  a.x = x;
  a.add = add;
  a.sum_out = add != nullptr ? x : nullptr;
  a.gamma = ln.gamma;
  a.beta = ln.beta;
  a.y = y;
  a.type = ctx.dtype;
  a.rows = rows;
  a.dim = ctx.d;
  a.eps = ctx.eps;
  layernorm(a, ctx.stream);
}

void gpu_add_layernorm(const GpuContext& ctx, const void* x, const void* add, const GpuLayerNorm& ln, void* y,
                       int64_t rows) {
  if (rows == 0) return;
  LayerNormArgs a;
  a.x = x;
  a.add = add;
  a.gamma = ln.gamma;
  a.beta = ln.beta;
  a.y = y;
  a.type = ctx.dtype;
  a.rows = rows;
  a.dim = ctx.d;
  a.eps = ctx.eps;
  layernorm(a, ctx.stream);
}

void gpu_ffn(const GpuContext& ctx, const GpuLinear& fc1, const GpuLinear& fc2, const void* x, void* hidden, void* out,
             int64_t rows) {
  gpu_linear(ctx, fc1, x, hidden, rows, Epilogue::BiasGeluErf);
  gpu_linear(ctx, fc2, hidden, out, rows);
}

void gpu_self_attention(const GpuContext& ctx, const GpuLinear& qkv, const GpuLinear& out_proj,
                        const GpuAttentionShape& shape, const void* x, void* qkv_buf, void* attn_buf, void* out,
                        int64_t rows) {
  const int64_t d = ctx.d;
  FLURRY_CHECK(qkv.out == 3 * d && out_proj.in == d && out_proj.out == d,
               "gpu_self_attention: projections " << qkv.in << "->" << qkv.out << " and " << out_proj.in << "->"
                                                  << out_proj.out << " for width " << d);
  FLURRY_CHECK(int64_t{shape.heads} * shape.head_dim == d, "gpu_self_attention: " << shape.heads << " heads of "
                                                                                  << shape.head_dim << " for width " << d);
  FLURRY_CHECK(shape.cu_seqlens != nullptr || rows == int64_t{shape.batch} * shape.max_len,
               "gpu_self_attention: a padded batch of " << shape.batch << " x " << shape.max_len << " rows, got " << rows);
  gpu_linear(ctx, qkv, x, qkv_buf, rows);
  const size_t elt = dtype_size(ctx.dtype);
  FlashAttentionArgs a;
  a.q = qkv_buf;
  a.k = elem_ptr(qkv_buf, d, elt);
  a.v = elem_ptr(qkv_buf, 2 * d, elt);
  a.out = attn_buf;
  a.q_ld = a.k_ld = a.v_ld = 3 * d;
  a.out_ld = d;
  a.type = ctx.dtype;
  a.heads = shape.heads;
  a.head_dim = shape.head_dim;
  a.batch = shape.batch;
  a.cu_seqlens_q = a.cu_seqlens_k = shape.cu_seqlens;
  a.q_len = a.kv_len = shape.max_len;
  a.scale = shape.scale;
  a.causal = shape.causal;
  flash_attention(a, ctx.stream);
  gpu_linear(ctx, out_proj, attn_buf, out, rows);
}

}  // namespace flurry::models
