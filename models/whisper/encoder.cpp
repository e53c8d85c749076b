// Whisper's encoder on the CPU reference path, and the cross-attention K/V it feeds the decoder.
//
// Order of operations follows HF WhisperEncoder: gelu(conv1(mel)), gelu(conv2(.)) with stride 2,
// + sinusoidal positions, pre-LN layers (LN -> self-attention -> residual, LN -> fc1 -> gelu -> fc2
// -> residual), final LayerNorm.
#include <algorithm>
#include <chrono>

#include "models/whisper/layers.h"
#include "models/whisper/model.h"
#include "runtime/check.h"
#include "runtime/ref/ops.h"

namespace flurry::whisper {

namespace {

// Cross-attention keys and values of every decoder layer, from the final encoder output.
void compute_cross_kv(const WhisperModel& m, WhisperState& st) {
  for (size_t i = 0; i < m.dec_layers.size(); ++i) {
    models::linear(m.dec_layers[i].cross_kv, st.enc->encoder_out.data(), st.enc->cross_kv[i].data(), st.n_ctx);
  }
}

}  // namespace

const float* encode(const WhisperModel& m, WhisperState& st, const float* mel) {
  const WhisperConfig& c = m.config();
  FLURRY_CHECK(mel != nullptr, "whisper encode: null mel");
  FLURRY_CHECK(st.d_model == c.d_model && st.n_ctx == c.max_source_positions &&
                   st.enc->cross_kv.size() == m.dec_layers.size(),
               "whisper encode: state was sized for a different model");
  const int64_t d = c.d_model, n = st.n_ctx;
  const auto t0 = std::chrono::steady_clock::now();
  if (st.enc.use_count() > 1) {
    // Forks of this state still decode the previous window: leave it to them, take a new one.
    auto fresh = std::make_shared<WhisperEncoding>();
    fresh->encoder_out.resize(st.enc->encoder_out.size());
    fresh->cross_kv.assign(st.enc->cross_kv.size(), std::vector<float>(st.enc->cross_kv.front().size()));
    st.enc = std::move(fresh);
  }

  // Front end: [n_mels, n_frames] -> gelu(conv1) [n_frames, d] -> gelu(conv2, stride 2) [n_ctx, d].
  WhisperScratch& s = *st.scratch;
  float* h = s.hidden.data();
  conv1d_k3_cpu(mel, /*input_time_major=*/false, m.conv1.w.data(), m.conv1.b.data(), s.conv_in.data(),
                c.num_mel_bins, st.n_frames, d, 1, s.conv_scratch.data());
  gelu_erf_inplace(s.conv_in.data(), st.n_frames * d);
  FLURRY_CHECK(conv1d_out_len(st.n_frames, 2) == n, "whisper encode: conv2 output length != n_ctx");
  conv1d_k3_cpu(s.conv_in.data(), /*input_time_major=*/true, m.conv2.w.data(), m.conv2.b.data(), h, d,
                st.n_frames, d, 2, s.conv_scratch.data());
  gelu_erf_inplace(h, n * d);
  add_cpu(h, m.enc_positions.data(), h, n * d);

  // Pre-LN layers; self-attention over all n_ctx frames (no mask: every window is full).
  const models::CpuContext ctx = cpu_context(st, c.layer_norm_eps);
  const models::AttentionOptions attn = attention_options(c.encoder_attention_heads, c.encoder_head_dim(), false);
  for (const EncoderLayerW& l : m.enc_layers) {
    models::attention_block({&l.attn_ln, &l.qkv, &l.attn_out}, attn, h, n, d, models::self_attention_kv(d, n), ctx);
    models::ffn_block(l.ffn_ln, l.fc1, l.fc2, models::NormPlacement::Pre, h, n, d, ctx);
  }
  models::layernorm(m.enc_ln, h, st.enc->encoder_out.data(), n, d, c.layer_norm_eps);

  compute_cross_kv(m, st);
  st.encoded = true;
  decoder_reset(st);
  st.encode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st.enc->encoder_out.data();
}

}  // namespace flurry::whisper
