// Loading a Whisper checkpoint into fp32 and sizing the per-request state.
#include "models/whisper/model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "runtime/check.h"
#include "runtime/log.h"
#include "runtime/ref/ops.h"

namespace flurry::whisper {
namespace {

// Reads tensors by their HF name below a prefix, checking each shape before converting to fp32.
class Binder {
 public:
  Binder(const Checkpoint& ck, std::string prefix) : ck_(ck), prefix_(std::move(prefix)) {}

  std::vector<float> get(const std::string& name, const std::vector<int64_t>& shape) const {
    ck_.get(prefix_ + name, shape);  // throws naming the tensor and both shapes
    return ck_.to_f32(prefix_ + name);
  }
  bool has(const std::string& name) const { return ck_.has(prefix_ + name); }

  LinearW linear(const std::string& name, int64_t in, int64_t out, bool bias = true) const {
    LinearW l;
    l.in = in;
    l.out = out;
    l.w = get(name + ".weight", {out, in});
    if (bias) l.b = get(name + ".bias", {out});
    return l;
  }
  LayerNormW layernorm(const std::string& name, int64_t d) const {
    return LayerNormW{get(name + ".weight", {d}), get(name + ".bias", {d})};
  }
  LinearW conv(const std::string& name, int64_t c_in, int64_t c_out) const {
    LinearW l;
    l.in = c_in * 3;
    l.out = c_out;
    l.w = get(name + ".weight", {c_out, c_in, 3});
    l.b = get(name + ".bias", {c_out});
    return l;
  }

 private:
  const Checkpoint& ck_;
  std::string prefix_;
};

// Stacks linear layers along the output dimension into one; a layer without bias contributes zeros.
// `scale[i]` multiplies part i (weights and bias): used to fold HF's query scaling into q_proj.
LinearW fuse(const std::vector<const LinearW*>& parts, const std::vector<float>& scale) {
  LinearW f;
  f.in = parts.front()->in;
  for (size_t i = 0; i < parts.size(); ++i) {
    const LinearW& p = *parts[i];
    const float s = scale[i];
    for (float v : p.w) f.w.push_back(v * s);
    if (p.b.empty()) {
      f.b.insert(f.b.end(), static_cast<size_t>(p.out), 0.0f);
    } else {
      for (float v : p.b) f.b.push_back(v * s);
    }
    f.out += p.out;
  }
  return f;
}

EncoderLayerW bind_encoder_layer(const Binder& b, const WhisperConfig& c, int64_t i) {
  const std::string p = "encoder.layers." + std::to_string(i) + ".";
  const int64_t d = c.d_model;
  const float qs = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.encoder_head_dim())));
  EncoderLayerW l;
  l.attn_ln = b.layernorm(p + "self_attn_layer_norm", d);
  const LinearW q = b.linear(p + "self_attn.q_proj", d, d);
  const LinearW k = b.linear(p + "self_attn.k_proj", d, d, /*bias=*/false);
  const LinearW v = b.linear(p + "self_attn.v_proj", d, d);
  l.qkv = fuse({&q, &k, &v}, {qs, 1.0f, 1.0f});
  l.attn_out = b.linear(p + "self_attn.out_proj", d, d);
  l.ffn_ln = b.layernorm(p + "final_layer_norm", d);
  l.fc1 = b.linear(p + "fc1", d, c.encoder_ffn_dim);
  l.fc2 = b.linear(p + "fc2", c.encoder_ffn_dim, d);
  return l;
}

DecoderLayerW bind_decoder_layer(const Binder& b, const WhisperConfig& c, int64_t i) {
  const std::string p = "decoder.layers." + std::to_string(i) + ".";
  const int64_t d = c.d_model;
  const float qs = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.decoder_head_dim())));
  DecoderLayerW l;
  l.self_ln = b.layernorm(p + "self_attn_layer_norm", d);
  {
    const LinearW q = b.linear(p + "self_attn.q_proj", d, d);
    const LinearW k = b.linear(p + "self_attn.k_proj", d, d, /*bias=*/false);
    const LinearW v = b.linear(p + "self_attn.v_proj", d, d);
    l.self_qkv = fuse({&q, &k, &v}, {qs, 1.0f, 1.0f});
  }
  l.self_out = b.linear(p + "self_attn.out_proj", d, d);
  l.cross_ln = b.layernorm(p + "encoder_attn_layer_norm", d);
  {
    const LinearW q = b.linear(p + "encoder_attn.q_proj", d, d);
    l.cross_q = fuse({&q}, {qs});
    const LinearW k = b.linear(p + "encoder_attn.k_proj", d, d, /*bias=*/false);
    const LinearW v = b.linear(p + "encoder_attn.v_proj", d, d);
    l.cross_kv = fuse({&k, &v}, {1.0f, 1.0f});
  }
  l.cross_out = b.linear(p + "encoder_attn.out_proj", d, d);
  l.ffn_ln = b.layernorm(p + "final_layer_norm", d);
  l.fc1 = b.linear(p + "fc1", d, c.decoder_ffn_dim);
  l.fc2 = b.linear(p + "fc2", c.decoder_ffn_dim, d);
  return l;
}

// HF WhisperForConditionalGeneration checkpoints name tensors "model.encoder...", a bare WhisperModel
// "encoder...". Either is accepted.
std::string detect_prefix(const Checkpoint& ck) {
  if (ck.has("model.encoder.conv1.weight")) return "model.";
  if (ck.has("encoder.conv1.weight")) return "";
  FLURRY_FAIL(ck.dir() << ": not a Whisper checkpoint: no tensor 'model.encoder.conv1.weight' "
                          "(nor 'encoder.conv1.weight')");
}

}  // namespace

std::shared_ptr<const WhisperModel> WhisperModel::load(const std::string& dir) {
  const std::string cfg_path = (std::filesystem::path(dir) / "config.json").string();
  const WhisperConfig config = load_whisper_config(cfg_path);
  const Checkpoint ck = Checkpoint::open(dir);
  return from_checkpoint(config, ck);
}

std::shared_ptr<const WhisperModel> WhisperModel::from_checkpoint(const WhisperConfig& c,
                                                                  const Checkpoint& ck) {
  c.validate(ck.dir() + "/config.json");
  const std::string prefix = detect_prefix(ck);
  const Binder b(ck, prefix);
  const int64_t d = c.d_model;
  std::shared_ptr<WhisperModel> m(new WhisperModel());
  m->config_ = c;

  m->conv1 = b.conv("encoder.conv1", c.num_mel_bins, d);
  m->conv2 = b.conv("encoder.conv2", d, d);
  m->enc_positions = b.get("encoder.embed_positions.weight", {c.max_source_positions, d});
  for (int64_t i = 0; i < c.encoder_layers; ++i) m->enc_layers.push_back(bind_encoder_layer(b, c, i));
  m->enc_ln = b.layernorm("encoder.layer_norm", d);

  m->embed_tokens = b.get("decoder.embed_tokens.weight", {c.vocab_size, d});
  m->dec_positions = b.get("decoder.embed_positions.weight", {c.max_target_positions, d});
  for (int64_t i = 0; i < c.decoder_layers; ++i) m->dec_layers.push_back(bind_decoder_layer(b, c, i));
  m->dec_ln = b.layernorm("decoder.layer_norm", d);

  // proj_out is tied to embed_tokens in every released Whisper (and usually not stored); an untied
  // checkpoint must carry its own.
  if (!c.tie_word_embeddings) {
    ck.get("proj_out.weight", {c.vocab_size, d});
    m->proj_out = ck.to_f32("proj_out.weight");
  }
  // A layer beyond the configured count means config and weights disagree: refuse rather than run a
  // truncated model.
  const std::string extra_enc = "encoder.layers." + std::to_string(c.encoder_layers) + ".fc1.weight";
  const std::string extra_dec = "decoder.layers." + std::to_string(c.decoder_layers) + ".fc1.weight";
  if (b.has(extra_enc) || b.has(extra_dec)) {
    FLURRY_FAIL(ck.dir() << ": checkpoint has more layers than config.json says (found '" << prefix
                         << (b.has(extra_enc) ? extra_enc : extra_dec) << "')");
  }
  LOG_DEBUG("whisper: loaded d_model=" << d << " enc_layers=" << c.encoder_layers
                                       << " dec_layers=" << c.decoder_layers << " vocab=" << c.vocab_size
                                       << " from " << ck.dir());
  return m;
}

WhisperState::WhisperState(const WhisperModel& model, int64_t max_tokens_) {
  const WhisperConfig& c = model.config();
  d_model = c.d_model;
  n_ctx = c.max_source_positions;
  n_frames = c.n_frames();
  vocab = c.vocab_size;
  max_tokens = max_tokens_ == 0 ? c.max_target_positions : max_tokens_;
  FLURRY_CHECK(max_tokens > 0 && max_tokens <= c.max_target_positions,
               "whisper: max_tokens " << max_tokens_ << " outside [1, max_target_positions="
                                      << c.max_target_positions << "]");
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  const int64_t d = d_model;
  const int64_t rows = std::max(n_ctx, max_tokens);
  const int64_t ffn_dim = std::max(c.encoder_ffn_dim, c.decoder_ffn_dim);

  enc = std::make_shared<WhisperEncoding>();
  enc->encoder_out.resize(sz(n_ctx * d));
  enc->cross_kv.assign(sz(c.decoder_layers), std::vector<float>(sz(n_ctx * 2 * d)));
  self_k.assign(sz(c.decoder_layers), std::vector<float>(sz(max_tokens * d)));
  self_v.assign(sz(c.decoder_layers), std::vector<float>(sz(max_tokens * d)));
  logits.resize(sz(vocab));

  scratch = std::make_shared<WhisperScratch>();
  WhisperScratch& s = *scratch;
  s.conv_in.resize(sz(n_frames * d));
  s.conv_scratch.resize(sz(std::max(conv1d_scratch_floats(c.num_mel_bins, n_frames, 1),
                                    conv1d_scratch_floats(d, n_frames, 2))));
  s.hidden.resize(sz(rows * d));
  s.normed.resize(sz(rows * d));
  s.qkv.resize(sz(rows * 3 * d));
  s.attn.resize(sz(rows * d));
  s.proj.resize(sz(rows * d));
  s.ffn.resize(sz(rows * ffn_dim));
  s.scores.resize(sz(std::max(attention_scratch_floats(n_ctx, n_ctx),
                              attention_scratch_floats(max_tokens, std::max(n_ctx, max_tokens)))));
}

}  // namespace flurry::whisper
