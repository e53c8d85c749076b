// Whisper's weight table (see weights.h).
#include "models/whisper/weights.h"

#include <cmath>

#include "runtime/check.h"

namespace flurry::whisper {
namespace {

using models::FusedPart;
using models::WeightInit;
using models::WeightTable;

// Builds the table's entries under a layer's key and the checkpoint's name for it.
struct TableBuilder {
  WeightTable& t;
  std::string prefix;  // checkpoint prefix, "model." or ""

  void layernorm(const std::string& key, int64_t d) {
    t.add(key + ".weight", prefix + key + ".weight", {d}, WeightInit::uniform(0.8f, 1.2f));
    t.add(key + ".bias", prefix + key + ".bias", {d}, WeightInit::uniform(-0.1f, 0.1f));
  }
  void linear(const std::string& key, int64_t in, int64_t out) {
    t.add(key + ".weight", prefix + key + ".weight", {out, in}, WeightInit::fan_in());
    t.add(key + ".bias", prefix + key + ".bias", {out}, WeightInit::uniform(-0.1f, 0.1f));
  }
  // Projections `names` (under `base`) of width d stacked into `key`, part i scaled by scale[i].
  // k_proj has no bias in Whisper: its bias entry is optional and reads as zeros.
  void fused(const std::string& key, const std::string& base, const std::vector<std::string>& names,
             const std::vector<float>& scale, int64_t d) {
    std::vector<FusedPart> w, b;
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string n = prefix + base + names[i];
      w.push_back(FusedPart{n + ".weight", {d, d}, WeightInit::fan_in(), scale[i], false});
      b.push_back(FusedPart{n + ".bias", {d}, WeightInit::uniform(-0.1f, 0.1f), scale[i], names[i] == "k_proj"});
    }
    t.add_fused(key + ".weight", w);
    t.add_fused(key + ".bias", b);
  }
};

float query_scale(int64_t head_dim) {
  // HF scales q by head_dim^-0.5 after the projection; folded into the q rows it is exact for
  // head_dim 64 (a power of two), which every released Whisper has.
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

void encoder_layer(TableBuilder& b, const WhisperConfig& c, int64_t i) {
  const std::string k = encoder_layer_key(i);
  const int64_t d = c.d_model;
  b.layernorm(k + "self_attn_layer_norm", d);
  b.fused(k + "self_attn.qkv", k + "self_attn.", {"q_proj", "k_proj", "v_proj"},
          {query_scale(c.encoder_head_dim()), 1.0f, 1.0f}, d);
  b.linear(k + "self_attn.out_proj", d, d);
  b.layernorm(k + "final_layer_norm", d);
  b.linear(k + "fc1", d, c.encoder_ffn_dim);
  b.linear(k + "fc2", c.encoder_ffn_dim, d);
}

void decoder_layer(TableBuilder& b, const WhisperConfig& c, int64_t i) {
  const std::string k = decoder_layer_key(i);
  const int64_t d = c.d_model;
  const float qs = query_scale(c.decoder_head_dim());
  b.layernorm(k + "self_attn_layer_norm", d);
  b.fused(k + "self_attn.qkv", k + "self_attn.", {"q_proj", "k_proj", "v_proj"}, {qs, 1.0f, 1.0f}, d);
  b.linear(k + "self_attn.out_proj", d, d);
  b.layernorm(k + "encoder_attn_layer_norm", d);
  // Cross-attention's q reads the decoder stream and k, v the encoder output: two groups.
  b.fused(k + "encoder_attn.q", k + "encoder_attn.", {"q_proj"}, {qs}, d);
  b.fused(k + "encoder_attn.kv", k + "encoder_attn.", {"k_proj", "v_proj"}, {1.0f, 1.0f}, d);
  b.linear(k + "encoder_attn.out_proj", d, d);
  b.layernorm(k + "final_layer_norm", d);
  b.linear(k + "fc1", d, c.decoder_ffn_dim);
  b.linear(k + "fc2", c.decoder_ffn_dim, d);
}

}  // namespace

std::string encoder_layer_key(int64_t i) { return "encoder.layers." + std::to_string(i) + "."; }
std::string decoder_layer_key(int64_t i) { return "decoder.layers." + std::to_string(i) + "."; }

std::string detect_whisper_prefix(const Checkpoint& ck) {
  if (ck.has("model.encoder.conv1.weight")) return "model.";
  if (ck.has("encoder.conv1.weight")) return "";
  FLURRY_FAIL(ck.dir() << ": not a Whisper checkpoint: no tensor 'model.encoder.conv1.weight' "
                          "(nor 'encoder.conv1.weight')");
}

WeightTable whisper_weight_table(const WhisperConfig& c, const std::string& prefix) {
  WeightTable t;
  TableBuilder b{t, prefix};
  const int64_t d = c.d_model;
  // Conv1d weights [c_out, c_in, 3]; FanIn over c_in * 3.
  t.add("encoder.conv1.weight", prefix + "encoder.conv1.weight", {d, c.num_mel_bins, 3}, WeightInit::fan_in());
  t.add("encoder.conv1.bias", prefix + "encoder.conv1.bias", {d}, WeightInit::uniform(-0.1f, 0.1f));
  t.add("encoder.conv2.weight", prefix + "encoder.conv2.weight", {d, d, 3}, WeightInit::fan_in());
  t.add("encoder.conv2.bias", prefix + "encoder.conv2.bias", {d}, WeightInit::uniform(-0.1f, 0.1f));
  t.add("encoder.embed_positions.weight", prefix + "encoder.embed_positions.weight", {c.max_source_positions, d},
        WeightInit::uniform(-0.5f, 0.5f));
  for (int64_t i = 0; i < c.encoder_layers; ++i) encoder_layer(b, c, i);
  b.layernorm("encoder.layer_norm", d);
  t.add("decoder.embed_tokens.weight", prefix + "decoder.embed_tokens.weight", {c.vocab_size, d},
        WeightInit::uniform(-0.1f, 0.1f));
  t.add("decoder.embed_positions.weight", prefix + "decoder.embed_positions.weight", {c.max_target_positions, d},
        WeightInit::uniform(-0.1f, 0.1f));
  for (int64_t i = 0; i < c.decoder_layers; ++i) decoder_layer(b, c, i);
  b.layernorm("decoder.layer_norm", d);
  // Tied to embed_tokens in every released Whisper (and then usually not stored); an untied
  // checkpoint must carry its own.
  if (!c.tie_word_embeddings) {
    t.add("proj_out.weight", "proj_out.weight", {c.vocab_size, d}, WeightInit::uniform(-0.1f, 0.1f));
  }
  return t;
}

WeightTable checked_whisper_table(const WhisperConfig& c, const Checkpoint& ck) {
  c.validate(ck.dir() + "/config.json");
  const std::string prefix = detect_whisper_prefix(ck);
  WeightTable t = whisper_weight_table(c, prefix);
  models::validate_checkpoint(t, ck);
  // A layer beyond the configured count means config and weights disagree: refuse rather than run a
  // truncated model.
  const std::string extra_enc = prefix + encoder_layer_key(c.encoder_layers) + "fc1.weight";
  const std::string extra_dec = prefix + decoder_layer_key(c.decoder_layers) + "fc1.weight";
  if (ck.has(extra_enc) || ck.has(extra_dec)) {
    FLURRY_FAIL(ck.dir() << ": checkpoint has more layers than config.json says (found '"
                         << (ck.has(extra_enc) ? extra_enc : extra_dec) << "')");
  }
  return t;
}

}  // namespace flurry::whisper
