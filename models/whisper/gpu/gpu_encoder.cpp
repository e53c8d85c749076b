// Whisper's encoder on the GPU for a batch of windows: conv front end, pre-LN layers with flash
// attention over the fused QKV, final LayerNorm, and every decoder layer's cross-attention K/V.
// Order of operations is the CPU reference's (models/whisper/encoder.cpp); the residual adds are
// fused into the following LayerNorm.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "kernels/attention.cuh"
#include "runtime/cuda/gemm_gpu.h"
#include "models/whisper/gpu/conv_frontend.cuh"
#include "kernels/layernorm.cuh"
#include "kernels/audio/logmel.cuh"
#include "models/whisper/gpu/gpu_ops.h"
#include "runtime/audio_constants.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry::whisper {

namespace gpu_detail {

models::GpuContext gpu_context(WhisperGpu& g) {
  models::GpuContext ctx;
  ctx.lt = g.lt.get();
  ctx.stream = *g.stream;
  ctx.gemm_ws = g.state->gemm_ws;
  ctx.gemm_ws_bytes = g.state->gemm_ws_bytes;
  ctx.attn_ws = g.state->attn_ws;
  ctx.attn_ws_bytes = g.state->attn_ws_bytes;
  ctx.dtype = g.model->dtype();
  ctx.d = g.model->config().d_model;
  ctx.eps = g.model->config().layer_norm_eps;
  return ctx;
}

}  // namespace gpu_detail

using gpu_detail::linear;
using gpu_detail::residual_layernorm;

void upload_mels(WhisperGpu& g, int n, const float* const* mels) {
  WhisperGpuState& s = *g.state;
  FLURRY_CHECK(n >= 1 && n <= s.plan.enc_batch, "whisper gpu: " << n << " windows for an encoder batch of "
                                                                 << s.plan.enc_batch);
  g.stream->synchronize();  // the pinned staging may still feed the previous copy
  const size_t per = static_cast<size_t>(s.n_mels * s.n_frames);
  for (int i = 0; i < n; ++i) {
    FLURRY_CHECK(mels[i] != nullptr, "whisper gpu: null mel for window " << i);
    convert_from_f32(mels[i], s.host_mel.as<char>() + i * per * s.elt, per, g.model->dtype());
  }
  CUDA_CHECK(cudaMemcpyAsync(s.mel, s.host_mel.data(), n * per * s.elt, cudaMemcpyHostToDevice, *g.stream));
}

void logmel_windows(WhisperGpu& g, int n, const float* const* samples, const int32_t* lengths) {
  WhisperGpuState& s = *g.state;
  FLURRY_CHECK(g.logmel != nullptr, "whisper gpu: log-mel on the device needs a plan with logmel = true");
  FLURRY_CHECK(n >= 1 && n <= s.plan.enc_batch, "whisper gpu: " << n << " windows for an encoder batch of "
                                                                 << s.plan.enc_batch);
  constexpr int64_t kWindow = kAudioWindowSamples;
  std::vector<int32_t> lens(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    lens[i] = std::max(0, std::min<int32_t>(lengths[i], static_cast<int32_t>(kWindow)));
    // Synchronous copies from pageable memory: the samples arrive once per window, and the GPU
    // log-mel path is for batched pipelines that stage through their own pinned ring.
    if (lens[i] > 0) {
      CUDA_CHECK(cudaMemcpy(s.samples + i * kWindow, samples[i], static_cast<size_t>(lens[i]) * sizeof(float),
                            cudaMemcpyHostToDevice));
    }
  }
  CUDA_CHECK(cudaMemcpy(s.sample_lengths, lens.data(), lens.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  LogMelArgs a;
  a.samples = s.samples;
  a.sample_stride = kWindow;
  a.lengths = s.sample_lengths;
  a.batch = n;
  a.out = s.mel;
  a.out_type = g.model->dtype();
  g.logmel->run(a, s.logmel_ws, s.logmel_ws_bytes, *g.stream);
}

namespace {

// h += out_proj(attention(normed)) is left as proj for the next fused LayerNorm.
void encoder_attention(WhisperGpu& g, const GpuEncoderLayer& l, int n) {
  WhisperGpuState& s = *g.state;
  const WhisperConfig& c = g.model->config();
  const int64_t rows = int64_t{n} * s.n_ctx;
  models::GpuAttentionShape shape;
  shape.heads = static_cast<int>(c.encoder_attention_heads);
  shape.head_dim = static_cast<int>(c.encoder_head_dim());
  shape.batch = n;  // padded batch: window b is rows [b T, (b+1) T); every window is full
  shape.max_len = static_cast<int>(s.n_ctx);
  shape.scale = 1.0f;  // folded into the q rows of the fused QKV at load time
  models::gpu_self_attention(gpu_detail::gpu_context(g), l.qkv, l.attn_out, shape, s.enc_normed, s.enc_qkv,
                             s.enc_attn, s.enc_proj, rows);
}

}  // namespace

void encode_windows(WhisperGpu& g, int first_audio, int n) {
  WhisperGpuState& s = *g.state;
  const WhisperGpuModel& m = *g.model;
  FLURRY_CHECK(n >= 1 && n <= s.plan.enc_batch, "whisper gpu: " << n << " windows for an encoder batch of "
                                                                 << s.plan.enc_batch);
  FLURRY_CHECK(first_audio >= 0 && first_audio + n <= s.plan.max_windows,
               "whisper gpu: audio indices " << first_audio << ".." << first_audio + n - 1 << " outside the "
                                             << s.plan.max_windows << " windows the plan holds");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t rows = int64_t{n} * s.n_ctx, d = s.d;

  ConvFrontendArgs ca;
  ca.mel = s.mel;
  ca.w1 = m.conv1_w;
  ca.b1 = m.conv1_b;
  ca.w2 = m.conv2_w;
  ca.b2 = m.conv2_b;
  ca.pos = m.enc_positions;
  ca.out = s.enc_h;
  ca.type = m.dtype();
  ca.batch = n;
  ca.n_mels = s.n_mels;
  ca.t_in = s.n_frames;
  ca.d = d;
  FLURRY_CHECK(conv_frontend_out_len(s.n_frames) == s.n_ctx, "whisper gpu: conv output length != n_ctx");
  FLURRY_CHECK(conv_frontend_workspace_bytes(ca) <= s.conv_ws_bytes, "whisper gpu: conv workspace too small");
  conv_frontend(*g.lt, ca, s.conv_ws, s.conv_ws_bytes, s.gemm_ws, s.gemm_ws_bytes, *g.stream);

  // Each sublayer leaves its output in enc_proj; the next LayerNorm adds it to the residual stream.
  const void* pending = nullptr;
  for (const GpuEncoderLayer& l : m.enc_layers) {
    residual_layernorm(g, s.enc_h, pending, l.attn_ln, s.enc_normed, rows);
    encoder_attention(g, l, n);
    residual_layernorm(g, s.enc_h, s.enc_proj, l.ffn_ln, s.enc_normed, rows);
    gpu_detail::ffn(g, l.fc1, l.fc2, s.enc_normed, s.enc_ffn, s.enc_proj, rows);
    pending = s.enc_proj;
  }
  residual_layernorm(g, s.enc_h, pending, m.enc_ln, s.enc_out, rows);

  // Cross K/V [T, 2d] of every decoder layer, straight into each window's slot.
  for (size_t i = 0; i < m.dec_layers.size(); ++i) {
    void* dst = gpu_detail::row_ptr(s.cross_kv[i], int64_t{first_audio} * s.n_ctx, 2 * d, s.elt);
    linear(g, m.dec_layers[i].cross_kv, s.enc_out, dst, rows);
  }
  for (int i = 0; i < n; ++i) s.encoded[static_cast<size_t>(first_audio + i)] = true;
  g.encode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace flurry::whisper
