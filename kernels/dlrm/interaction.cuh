// Feature interactions of recommendation models, on the per-sample feature row
// [v_0 | v_1 | ... | v_{m-1}] (the bottom MLP's output then the pooled bags, written in place by
// the bottom GEMM and embedding_bags):
//
//   dot    the dot products <v_i, v_j> of the m vectors over a triangle of (i, j) pairs, optionally
//          preceded by a copy of v_0 (facebookresearch/dlrm's and TorchRec's interaction). The
//          m x m Gram matrix is computed per sample from shared memory.
//   outer  the products z_p z_q of the scalars of the whole row z (width w) over a triangle of
//          (p, q), preceded by a copy of z's first `prefix` values (a quadratic feature cross; the
//          food-truck seed's 256 * 257 / 2 products). Written directly in the output dtype with
//          16-byte coalesced stores: the output is what the next GEMM reads.
//   cat    the row itself: a strided 2-D copy, nothing when the output is the row.
//   cross  DCNv2's low-rank cross layer x' = x0 * (W (V x) + b) + x (Wang et al. 2021, TorchRec's
//          LowRankCrossNet): two GEMMs through gemm_gpu and one elementwise kernel.
//
// Pairs are enumerated row by row: strict_lower (j < i), lower_with_diag (j <= i), strict_upper
// (j > i) and upper_with_diag (j >= i), j ascending within a row i. Arithmetic is fp32 (products
// and sums of the stored values), rounded once to the output dtype.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "runtime/cuda/gemm_lt.h"
#include "runtime/dtype.h"

namespace flurry {

enum class PairOrder : uint8_t { StrictLower, LowerWithDiag, StrictUpper, UpperWithDiag };

// Number of (i, j) pairs of an m x m triangle.
int64_t pair_order_count(PairOrder p, int64_t m);

// out[s, :] = [v_0 (when include_first), <v_i, v_j> over the pairs] for each of n samples; feats
// [n, ld_feats] holds the m vectors of dim `dim` contiguously from column 0. feats and out share
// `type` (F32, F16 or BF16). m <= 64 and m * (dim + 1) * 4 bytes must fit in shared memory.
struct DotInteractionArgs {
  const void* feats = nullptr;
  int64_t ld_feats = 0;
  int64_t n = 0, m = 0, dim = 0;
  PairOrder pairs = PairOrder::StrictLower;
  bool include_first = true;
  void* out = nullptr;
  int64_t ld_out = 0;
  DType type = DType::F32;
};
void dot_interaction(const DotInteractionArgs& args, cudaStream_t stream);

// out[s, :] = [z[0 .. prefix), z_p z_q over the pairs of the width x width triangle], z = feats[s,
// 0 .. width). width <= 8192 (z is held in shared memory as fp32).
struct OuterInteractionArgs {
  const void* feats = nullptr;
  int64_t ld_feats = 0;
  int64_t n = 0, width = 0, prefix = 0;
  PairOrder pairs = PairOrder::UpperWithDiag;
  void* out = nullptr;
  int64_t ld_out = 0;
  DType type = DType::F32;
};
void outer_interaction(const OuterInteractionArgs& args, cudaStream_t stream);

// out[s, 0 .. width) = feats[s, 0 .. width); nothing is enqueued when out == feats and the strides
// agree.
void cat_interaction(const void* feats, int64_t ld_feats, int64_t n, int64_t width, void* out, int64_t ld_out,
                     DType type, cudaStream_t stream);

// One DCNv2 low-rank cross layer over n rows of width N:
//   t = x_in V^T          [n, rank]  (type, scratch)
//   u = t W^T + b         [n, N]     (fp32, scratch; b is fp32)
//   x_out = x0 * u + x_in            (type; x_out may alias x_in, x0 may not alias x_out)
// V [rank, N] and W [N, rank] are row-major in `type`; x0, x_in, x_out have row strides ld_x0,
// ld_x, ld_x (x_in and x_out share one stride).
struct CrossLayerArgs {
  const void* x0 = nullptr;
  int64_t ld_x0 = 0;
  const void* x_in = nullptr;
  void* x_out = nullptr;
  int64_t ld_x = 0;
  int64_t n = 0, width = 0, rank = 0;
  const void* v = nullptr;
  const void* w = nullptr;
  const float* bias = nullptr;
  void* t = nullptr;  // [n, rank] scratch, `type`
  float* u = nullptr; // [n, width] scratch, fp32
  DType type = DType::F32;
};
void cross_layer(GemmLt& lt, const CrossLayerArgs& args, void* workspace, size_t workspace_bytes,
                 cudaStream_t stream);

// The elementwise part alone: x_out = x0 * u + x_in (u fp32 [n, width] dense).
void cross_combine(const CrossLayerArgs& args, cudaStream_t stream);

}  // namespace flurry
