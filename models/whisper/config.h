// Whisper's hyper-parameters, read from a Hugging Face config.json.
//
// Every size (tiny ... large-v3, large-v3-turbo, distil-*) comes from here; no model code hard-codes
// a width, a layer count or a token id.
#pragma once

#include <cstdint>
#include <string>

#include "io/json_file.h"

namespace flurry::whisper {

struct WhisperConfig {
  int64_t d_model = 0;
  int64_t encoder_layers = 0;
  int64_t encoder_attention_heads = 0;
  int64_t encoder_ffn_dim = 0;
  int64_t decoder_layers = 0;
  int64_t decoder_attention_heads = 0;
  int64_t decoder_ffn_dim = 0;
  int64_t num_mel_bins = 0;
  int64_t vocab_size = 0;
  int64_t max_source_positions = 0;  // encoder output frames (1500 for 30 s)
  int64_t max_target_positions = 0;  // decoder context (448)
  std::string activation_function;
  bool scale_embedding = false;
  bool tie_word_embeddings = true;
  float layer_norm_eps = 1e-5f;  // nn.LayerNorm's default; Whisper's config does not carry it
  int32_t pad_token_id = -1;
  int32_t bos_token_id = -1;
  int32_t eos_token_id = -1;
  int32_t decoder_start_token_id = -1;

  // The mel frames the encoder takes: the two convolutions halve once, so 2 * max_source_positions.
  int64_t n_frames() const { return 2 * max_source_positions; }
  int64_t encoder_head_dim() const { return d_model / encoder_attention_heads; }
  int64_t decoder_head_dim() const { return d_model / decoder_attention_heads; }

  // Throws flurry::Error naming `where` and the offending field.
  void validate(const std::string& where) const;
};

// Reads and validates config.json; `where` (usually the path) prefixes error messages.
WhisperConfig whisper_config_from_json(const Json& j, const std::string& where);
WhisperConfig load_whisper_config(const std::string& path);

}  // namespace flurry::whisper
