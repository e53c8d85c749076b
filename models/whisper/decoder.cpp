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

// Causal self-attention over the layer's cache: the new rows' keys and values (columns d and 2d of
// the fused projection) are appended at positions n_past .. n_past+n_new-1 first.
models::KeyValueSource cached_self_kv(WhisperState& st, size_t layer, int64_t n_new) {
  return [&st, layer, n_new](const float* qkv, int64_t ld) {
    const int64_t d = st.d_model;
    float* kc = st.self_k[layer].data();
    float* vc = st.self_v[layer].data();
    for (int64_t i = 0; i < n_new; ++i) {
      const float* row = qkv + i * ld;
      std::memcpy(kc + (st.n_past + i) * d, row + d, sizeof(float) * static_cast<size_t>(d));
      std::memcpy(vc + (st.n_past + i) * d, row + 2 * d, sizeof(float) * static_cast<size_t>(d));
    }
    return models::KeyValues{kc, vc, d, st.n_past + n_new};
  };
}

// Cross-attention over the window's K/V ([n_ctx, 2d]: k | v per row), computed once by encode().
models::KeyValueSource cross_kv(const WhisperState& st, size_t layer) {
  const float* kv = st.enc->cross_kv[layer].data();
  return [kv, &st](const float*, int64_t) {
    return models::KeyValues{kv, kv + st.d_model, 2 * st.d_model, st.n_ctx};
  };
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
  const models::CpuContext ctx = cpu_context(st, c.layer_norm_eps);
  const int64_t heads = c.decoder_attention_heads, hd = c.decoder_head_dim();
  for (size_t i = 0; i < m.dec_layers.size(); ++i) {
    const DecoderLayerW& l = m.dec_layers[i];
    models::attention_block({&l.self_ln, &l.self_qkv, &l.self_out}, attention_options(heads, hd, true), h, n_new, d,
                            cached_self_kv(st, i, n_new), ctx);
    models::attention_block({&l.cross_ln, &l.cross_q, &l.cross_out}, attention_options(heads, hd, false), h, n_new,
                            d, cross_kv(st, i), ctx);
    models::ffn_block(l.ffn_ln, l.fc1, l.fc2, models::NormPlacement::Pre, h, n_new, d, ctx);
  }
  st.n_past += n_new;
  st.decode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.decode_calls += 1;
}

// logits[rows, vocab] = LN(hidden[first .. first+rows)) E^T.
void project_logits(const WhisperModel& m, WhisperState& st, int64_t first, int64_t rows, float* logits) {
  const WhisperConfig& c = m.config();
  const int64_t d = st.d_model;
  models::layernorm(m.dec_ln, st.scratch->hidden.data() + first * d, st.scratch->blocks.normed.data(), rows, d,
                    c.layer_norm_eps);
  linear_cpu(st.scratch->blocks.normed.data(), m.output_projection(), nullptr, logits, rows, d, c.vocab_size);
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
