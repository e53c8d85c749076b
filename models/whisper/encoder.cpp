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

// hidden += out_proj(attention(LN(hidden))) over all n_ctx frames (no mask: every window is full).
void encoder_self_attention(const EncoderLayerW& l, const WhisperConfig& c, WhisperState& st) {
  const int64_t n = st.n_ctx, d = st.d_model;
  float* h = st.scratch->hidden.data();
  layernorm_cpu(h, nullptr, nullptr, l.attn_ln.gamma.data(), l.attn_ln.beta.data(), st.scratch->normed.data(), n,
                d, c.layer_norm_eps);
  apply_linear(l.qkv, st.scratch->normed.data(), st.scratch->qkv.data(), n);
  AttentionArgs a;
  a.q = st.scratch->qkv.data();
  a.k = st.scratch->qkv.data() + d;
  a.v = st.scratch->qkv.data() + 2 * d;
  a.q_ld = a.k_ld = a.v_ld = 3 * d;
  a.out = st.scratch->attn.data();
  a.out_ld = d;
  a.heads = c.encoder_attention_heads;
  a.head_dim = c.encoder_head_dim();
  a.q_len = a.kv_len = n;
  a.scale = 1.0f;  // folded into the q rows of the fused QKV at load time
  attention_cpu(a, st.scratch->scores.data());
  apply_linear(l.attn_out, st.scratch->attn.data(), st.scratch->proj.data(), n);
  add_cpu(h, st.scratch->proj.data(), h, n * d);
}

// Cross-attention keys and values of every decoder layer, from the final encoder output.
void compute_cross_kv(const WhisperModel& m, WhisperState& st) {
  for (size_t i = 0; i < m.dec_layers.size(); ++i) {
    apply_linear(m.dec_layers[i].cross_kv, st.enc->encoder_out.data(), st.enc->cross_kv[i].data(), st.n_ctx);
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

  for (const EncoderLayerW& l : m.enc_layers) {
    encoder_self_attention(l, c, st);
    ffn_sublayer(l.ffn_ln, l.fc1, l.fc2, c.layer_norm_eps, h, n, d, st);
  }
  layernorm_cpu(h, nullptr, nullptr, m.enc_ln.gamma.data(), m.enc_ln.beta.data(), st.enc->encoder_out.data(),
                n, d, c.layer_norm_eps);

  compute_cross_kv(m, st);
  st.encoded = true;
  decoder_reset(st);
  st.encode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st.enc->encoder_out.data();
}

}  // namespace flurry::whisper
