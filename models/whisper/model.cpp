// Loading a Whisper checkpoint into fp32 through Whisper's weight table, and sizing the per-request
// state.
#include "models/whisper/model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "models/whisper/weights.h"
#include "runtime/check.h"
#include "runtime/log.h"
#include "runtime/ref/ops.h"

namespace flurry::whisper {
namespace {

using models::WeightTable;

EncoderLayerW bind_encoder_layer(const WeightTable& t, const Checkpoint& ck, int64_t i) {
  const std::string k = encoder_layer_key(i);
  EncoderLayerW l;
  l.attn_ln = models::bind_layernorm(t, ck, k + "self_attn_layer_norm");
  l.qkv = models::bind_linear(t, ck, k + "self_attn.qkv");
  l.attn_out = models::bind_linear(t, ck, k + "self_attn.out_proj");
  l.ffn_ln = models::bind_layernorm(t, ck, k + "final_layer_norm");
  l.fc1 = models::bind_linear(t, ck, k + "fc1");
  l.fc2 = models::bind_linear(t, ck, k + "fc2");
  return l;
}

DecoderLayerW bind_decoder_layer(const WeightTable& t, const Checkpoint& ck, int64_t i) {
  const std::string k = decoder_layer_key(i);
  DecoderLayerW l;
  l.self_ln = models::bind_layernorm(t, ck, k + "self_attn_layer_norm");
  l.self_qkv = models::bind_linear(t, ck, k + "self_attn.qkv");
  l.self_out = models::bind_linear(t, ck, k + "self_attn.out_proj");
  l.cross_ln = models::bind_layernorm(t, ck, k + "encoder_attn_layer_norm");
  l.cross_q = models::bind_linear(t, ck, k + "encoder_attn.q");
  l.cross_kv = models::bind_linear(t, ck, k + "encoder_attn.kv");
  l.cross_out = models::bind_linear(t, ck, k + "encoder_attn.out_proj");
  l.ffn_ln = models::bind_layernorm(t, ck, k + "final_layer_norm");
  l.fc1 = models::bind_linear(t, ck, k + "fc1");
  l.fc2 = models::bind_linear(t, ck, k + "fc2");
  return l;
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
  // Every check (config, prefix, each tensor's presence, shape and dtype, extra layers) happens
  // before anything is converted.
  const WeightTable t = checked_whisper_table(c, ck);
  const int64_t d = c.d_model;
  std::shared_ptr<WhisperModel> m(new WhisperModel());
  m->config_ = c;
  m->checkpoint_dir_ = ck.dir();

  m->conv1 = models::bind_linear(t, ck, "encoder.conv1");  // [d, n_mels * 3]
  m->conv2 = models::bind_linear(t, ck, "encoder.conv2");
  m->enc_positions = models::bind_f32(t, ck, "encoder.embed_positions.weight");
  for (int64_t i = 0; i < c.encoder_layers; ++i) m->enc_layers.push_back(bind_encoder_layer(t, ck, i));
  m->enc_ln = models::bind_layernorm(t, ck, "encoder.layer_norm");

  m->embed_tokens = models::bind_f32(t, ck, "decoder.embed_tokens.weight");
  m->dec_positions = models::bind_f32(t, ck, "decoder.embed_positions.weight");
  for (int64_t i = 0; i < c.decoder_layers; ++i) m->dec_layers.push_back(bind_decoder_layer(t, ck, i));
  m->dec_ln = models::bind_layernorm(t, ck, "decoder.layer_norm");
  if (t.has("proj_out.weight")) m->proj_out = models::bind_f32(t, ck, "proj_out.weight");
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
  s.blocks.resize(rows, d, 3 * d, ffn_dim,
                  std::max(attention_scratch_floats(n_ctx, n_ctx),
                           attention_scratch_floats(max_tokens, std::max(n_ctx, max_tokens))));
}

}  // namespace flurry::whisper
