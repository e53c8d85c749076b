// Whisper's decoder on the CPU reference path: token + position embedding, pre-LN layers with
// causal self-attention over a KV cache and cross-attention over the encoder output, final
// LayerNorm, logits through the (tied) output projection.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "models/whisper/layers.h"
#include "models/whisper/model.h"
#include "runtime/check.h"
#include "runtime/ref/ops.h"

namespace flurry::whisper {
namespace {

// hidden[n_new] += out_proj(causal attention of LN(hidden) over cache positions [0, n_past+n_new)).
// The new keys/values are appended to the layer's cache first.
void decoder_self_attention(const DecoderLayerW& l, size_t layer, const WhisperConfig& c,
                            WhisperState& st, int64_t n_new) {
  const int64_t d = st.d_model;
  float* h = st.scratch->hidden.data();
  layernorm_cpu(h, nullptr, nullptr, l.self_ln.gamma.data(), l.self_ln.beta.data(), st.scratch->normed.data(),
                n_new, d, c.layer_norm_eps);
  apply_linear(l.self_qkv, st.scratch->normed.data(), st.scratch->qkv.data(), n_new);
  float* kc = st.self_k[layer].data();
  float* vc = st.self_v[layer].data();
  for (int64_t i = 0; i < n_new; ++i) {
    const float* row = st.scratch->qkv.data() + i * 3 * d;
    std::memcpy(kc + (st.n_past + i) * d, row + d, sizeof(float) * static_cast<size_t>(d));
    std::memcpy(vc + (st.n_past + i) * d, row + 2 * d, sizeof(float) * static_cast<size_t>(d));
  }
  AttentionArgs a;
  a.q = st.scratch->qkv.data();
  a.q_ld = 3 * d;
  a.k = kc;
  a.v = vc;
  a.k_ld = a.v_ld = d;
  a.out = st.scratch->attn.data();
  a.out_ld = d;
  a.heads = c.decoder_attention_heads;
  a.head_dim = c.decoder_head_dim();
  a.q_len = n_new;
  a.kv_len = st.n_past + n_new;
  a.causal = true;
  a.scale = 1.0f;  // folded into q at load time
  attention_cpu(a, st.scratch->scores.data());
  apply_linear(l.self_out, st.scratch->attn.data(), st.scratch->proj.data(), n_new);
  add_cpu(h, st.scratch->proj.data(), h, n_new * d);
}

// hidden[n_new] += out_proj(attention of LN(hidden) over the window's cross K/V).
void decoder_cross_attention(const DecoderLayerW& l, size_t layer, const WhisperConfig& c,
                             WhisperState& st, int64_t n_new) {
  const int64_t d = st.d_model;
  float* h = st.scratch->hidden.data();
  layernorm_cpu(h, nullptr, nullptr, l.cross_ln.gamma.data(), l.cross_ln.beta.data(), st.scratch->normed.data(),
                n_new, d, c.layer_norm_eps);
  apply_linear(l.cross_q, st.scratch->normed.data(), st.scratch->qkv.data(), n_new);
  AttentionArgs a;
  a.q = st.scratch->qkv.data();
  a.q_ld = d;
  a.k = st.enc->cross_kv[layer].data();
  a.v = st.enc->cross_kv[layer].data() + d;
  a.k_ld = a.v_ld = 2 * d;
  a.out = st.scratch->attn.data();
  a.out_ld = d;
  a.heads = c.decoder_attention_heads;
  a.head_dim = c.decoder_head_dim();
  a.q_len = n_new;
  a.kv_len = st.n_ctx;
  a.scale = 1.0f;
  attention_cpu(a, st.scratch->scores.data());
  apply_linear(l.cross_out, st.scratch->attn.data(), st.scratch->proj.data(), n_new);
  add_cpu(h, st.scratch->proj.data(), h, n_new * d);
}

// Runs n_new tokens through the decoder layers; leaves the pre-final-LN rows in st.scratch->hidden and
// advances n_past.
void run_layers(const WhisperModel& m, WhisperState& st, const int32_t* tokens, int64_t n_new) {
  const WhisperConfig& c = m.config();
  const auto t0 = std::chrono::steady_clock::now();
  FLURRY_CHECK(st.encoded, "whisper decoder: encode() has not run on this state");
  FLURRY_CHECK(st.d_model == c.d_model && st.self_k.size() == m.dec_layers.size(),
               "whisper decoder: state was sized for a different model");
  FLURRY_CHECK(tokens != nullptr && n_new > 0, "whisper decoder: no tokens given (n_new=" << n_new << ")");
  FLURRY_CHECK(st.n_past + n_new <= st.max_tokens,
               "whisper decoder: " << st.n_past << " cached + " << n_new << " new tokens exceed the context of "
                                   << st.max_tokens);
  const int64_t d = st.d_model;
  float* h = st.scratch->hidden.data();
  embedding_cpu(m.embed_tokens.data(), c.vocab_size, d, tokens, n_new, h);
  add_cpu(h, m.dec_positions.data() + st.n_past * d, h, n_new * d);
  for (size_t i = 0; i < m.dec_layers.size(); ++i) {
    const DecoderLayerW& l = m.dec_layers[i];
    decoder_self_attention(l, i, c, st, n_new);
    decoder_cross_attention(l, i, c, st, n_new);
    ffn_sublayer(l.ffn_ln, l.fc1, l.fc2, c.layer_norm_eps, h, n_new, d, st);
  }
  st.n_past += n_new;
  st.decode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.decode_calls += 1;
}

// logits[rows, vocab] = LN(hidden[first .. first+rows)) E^T.
void project_logits(const WhisperModel& m, WhisperState& st, int64_t first, int64_t rows, float* logits) {
  const WhisperConfig& c = m.config();
  const int64_t d = st.d_model;
  layernorm_cpu(st.scratch->hidden.data() + first * d, nullptr, nullptr, m.dec_ln.gamma.data(), m.dec_ln.beta.data(),
                st.scratch->normed.data(), rows, d, c.layer_norm_eps);
  linear_cpu(st.scratch->normed.data(), m.output_projection(), nullptr, logits, rows, d, c.vocab_size);
}

}  // namespace

void decoder_reset(WhisperState& st) { st.n_past = 0; }

const float* decoder_step(const WhisperModel& m, WhisperState& st, const int32_t* tokens, int64_t n_new) {
  run_layers(m, st, tokens, n_new);
  project_logits(m, st, n_new - 1, 1, st.logits.data());
  return st.logits.data();
}

std::vector<float> decoder_logits_all(const WhisperModel& m, WhisperState& st, const int32_t* tokens,
                                      int64_t n) {
  decoder_reset(st);
  run_layers(m, st, tokens, n);
  std::vector<float> out(static_cast<size_t>(n * st.vocab));
  project_logits(m, st, 0, n, out.data());
  return out;
}

std::vector<int32_t> greedy_decode(const WhisperModel& m, WhisperState& st, const std::vector<int32_t>& prefix,
                                   int32_t eot, int64_t max_new_tokens) {
  FLURRY_CHECK(!prefix.empty(), "whisper greedy: empty prefix");
  decoder_reset(st);
  std::vector<int32_t> out;
  const float* logits = decoder_step(m, st, prefix.data(), static_cast<int64_t>(prefix.size()));
  while (static_cast<int64_t>(out.size()) < max_new_tokens) {
    // First maximum wins on ties, as torch.argmax does.
    const int32_t next = static_cast<int32_t>(std::max_element(logits, logits + st.vocab) - logits);
    out.push_back(next);
    if (next == eot || st.n_past >= st.max_tokens) break;
    logits = decoder_step(m, st, &next, 1);
  }
  return out;
}

}  // namespace flurry::whisper
