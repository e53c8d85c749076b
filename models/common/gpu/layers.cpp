// GPU linear and residual LayerNorm shared by every model (see layers.h).
#include "models/common/gpu/layers.h"

#include "runtime/cuda/gemm_gpu.h"
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

void gpu_ffn(const GpuContext& ctx, const GpuLinear& fc1, const GpuLinear& fc2, const void* x, void* hidden, void* out,
             int64_t rows) {
  gpu_linear(ctx, fc1, x, hidden, rows, Epilogue::BiasGeluErf);
  gpu_linear(ctx, fc2, hidden, out, rows);
}

}  // namespace flurry::models
