// The outer interaction fused into the first top-MLP layer: y = act(A W^T + b) where A is the
// outer interaction's row (interaction.cuh: [z[0 .. prefix), z_p z_q over the pairs of the
// width x width triangle]) generated tile by tile in shared memory from z and never written to
// device memory.
//
// Why (the food-truck seed: z 256 wide, A 33,024 wide, first top layer 128 outputs; H100 SXM,
// ~3.0 TB/s achieved HBM, ~990 TFLOP/s dense fp16). Per 1,000 samples:
//   materialised  outer_interaction writes A (33,024 x 2 B = 66 KB per sample, 66 MB) and the
//                 GEMM reads it back (66 MB): 132 MB of HBM traffic ~ 44 us, while the GEMM's
//                 2 x 33,024 x 128 = 8.45 GFLOP need ~9-14 us of tensor cores: memory bound.
//   T-tensor      y = W_b bottom + sum_i z_i (T[:, i, :] z) with T [128, 256, 256] dense (8.4 M
//                 weights, zeros below the diagonal) as ONE cuBLASLt GEMM: U = z T^T is [batch,
//                 128 x 256] = 32,768 values per sample (64 KB at fp16: the same traffic as A),
//                 and 2 x 128 x 256 x 256 = 16.8 GFLOP (twice the materialised GEMM: the zero
//                 half of T is multiplied too), plus a contraction pass over U. Never cheaper.
//   fused (this)  A's tile is built in shared memory from z (512 B per sample) and multiplied
//                 on tensor cores: HBM traffic is z plus W (8.4 MB, L2 resident across tiles),
//                 i.e. ~0.5 MB per 1,000 samples, and the FLOPs are the materialised GEMM's
//                 8.45 GFLOP: compute bound, ~9-25 us at 35-90 % of the tensor-core peak.
// So the fused kernel is the cheapest by ~2-4x on that estimate, and it also drops the [batch,
// 33,024] buffer from the arena (270 MB at 4,096 samples in fp16). For fp32 (no tensor cores at
// fp32 precision) both paths are bound by CUDA-core FMAs (8.45 GFLOP at ~50 TFLOP/s ~ 170 us);
// the fused fp32 kernel exists for parity and for outer_fusion "on", "auto" keeps fp32
// materialised.
//
// Arithmetic matches the materialised path: each product z_p z_q is formed in fp32 from the
// stored z and rounded once to the operand dtype before the fp32-accumulated GEMM (fp16/bf16
// through WMMA 16x16x16), fp32 operands stay fp32 (no TF32). The epilogue adds an fp32 bias,
// applies ReLU when asked and rounds once to the output dtype.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "kernels/dlrm/interaction.cuh"
#include "runtime/dtype.h"

namespace flurry {

// The column table of A: entry c is (i << 16) | j for the pair (i, j) at column c, or
// (i << 16) | 0xFFFF for a prefix column c = i (a copy of z_i). prefix + pair count entries.
std::vector<uint32_t> outer_linear_columns(PairOrder pairs, int64_t width, int64_t prefix);

// The widest z the fused kernel holds (z of a 64-sample tile lives in shared memory).
int64_t outer_linear_max_width(DType type);

struct OuterLinearArgs {
  const void* feats = nullptr;  // z: device [n, ld_feats], `type`, z = feats[s, 0 .. width)
  int64_t ld_feats = 0;
  int64_t n = 0, width = 0;
  const uint32_t* columns = nullptr;  // device, outer_linear_columns(...) of `in` entries
  int64_t in = 0;                     // columns of A = columns of W
  const void* w = nullptr;            // device [out, ldw] row-major, `type` (nn.Linear's weight)
  int64_t ldw = 0;
  const float* bias = nullptr;        // device [out] fp32; null: none
  int64_t out = 0;
  bool relu = false;
  void* y = nullptr;                  // device [n, ld_y], y_type (F32 or `type`)
  int64_t ld_y = 0;
  DType y_type = DType::F32;
  DType type = DType::F32;            // z, W: F32, F16 or BF16
};

// Throws flurry::Error on inconsistent arguments or a width beyond outer_linear_max_width.
void outer_linear(const OuterLinearArgs& args, cudaStream_t stream);

}  // namespace flurry
