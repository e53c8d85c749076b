// Whisper's encoder front end on the GPU:
//   h1  = gelu(conv1d(mel, w1, b1, kernel 3, padding 1, stride 1))    [t_in, d]
//   h2  = gelu(conv1d(h1,  w2, b2, kernel 3, padding 1, stride 2))    [t_out, d]
//   out = h2 + pos[0:t_out]                                           token-major [batch, t_out, d]
// with the exact (erf) GELU. The CPU reference is conv1d_k3_cpu + gelu_erf_inplace + add_cpu
// (runtime/ref/ops.h); this computes the same function in fp16 or bf16 with fp32 accumulation.
//
// Each convolution is an im2col followed by one GEMM through gemm_gpu, batched over windows by
// stacking their rows (row b * t + i of the column matrix is window b's time step i, and its zero
// padding is per window). Column order c * 3 + kk matches the PyTorch weight [d, c_in, 3] read as
// [d, 3 c_in], so the checkpoint's tensors are used as they are.
//   conv1: im2col of the channel-major mel through a shared-memory tile (transposes it to
//          time-major rows), GEMM with the BiasGeluErf epilogue (h1 rounded once to the dtype);
//   conv2: im2col of the time-major h1 (each thread gathers one channel's three taps, reads and
//          writes coalesced), GEMM with the Bias epilogue straight into `out`, then one in-place
//          pass that applies the GELU and adds the positions (instead of a GELU pass and an add
//          pass).
// Large-v3 at one window: conv2's GEMM is 1500 x 1280 x 3840 (15 GFLOP); the column matrices are
// 2.3 MB and 11.5 MB of fp16.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "runtime/cuda/gemm_lt.h"
#include "runtime/dtype.h"

namespace flurry {

struct ConvFrontendArgs {
  const void* mel = nullptr;  // [batch, n_mels, t_in], channel-major as the log-mel produces it
  const void* w1 = nullptr;   // conv1.weight [d, n_mels, 3]
  const void* b1 = nullptr;   // conv1.bias [d]
  const void* w2 = nullptr;   // conv2.weight [d, d, 3]
  const void* b2 = nullptr;   // conv2.bias [d]
  const void* pos = nullptr;  // embed_positions [>= t_out, d]
  void* out = nullptr;        // [batch, t_out, d]
  DType type = DType::F16;    // every tensor above: F16 or BF16
  int64_t batch = 0, n_mels = 0, t_in = 0, d = 0;
};

// t_out = (t_in - 1) / 2 + 1: 1500 for Whisper's 3000 frames.
int64_t conv_frontend_out_len(int64_t t_in);

// Scratch for the column matrices and h1 (256-byte aligned pieces); about 19 MB per window for
// large-v3 in fp16. To bound it, call conv_frontend on chunks of windows.
size_t conv_frontend_workspace_bytes(const ConvFrontendArgs& a);

// Enqueues the front end on `stream`. `workspace` holds conv_frontend_workspace_bytes(a);
// gemm_workspace is the cuBLASLt workspace (see runtime/cuda/gemm_lt.h).
void conv_frontend(GemmLt& lt, const ConvFrontendArgs& a, void* workspace, size_t workspace_bytes,
                   void* gemm_workspace, size_t gemm_workspace_bytes, cudaStream_t stream);

}  // namespace flurry
