#include "models/whisper/config.h"

#include "runtime/check.h"

namespace flurry::whisper {
namespace {

// Token ids may be an int, null/absent (-1) or, for eos in some HF configs, a list (first wins).
int32_t token_id(const Json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return -1;
  if (it->is_array()) {
    if (it->empty()) return -1;
    FLURRY_CHECK((*it)[0].is_number_integer(), where << ": '" << key << "' list holds a non-integer");
    return (*it)[0].get<int32_t>();
  }
  return json_get<int>(j, key, where);
}

void require_positive(int64_t v, const char* key, const std::string& where) {
  if (v <= 0) FLURRY_FAIL(where << ": '" << key << "' must be positive, got " << v);
}

void require_token(int32_t id, int64_t vocab, const char* key, const std::string& where) {
  if (id >= vocab) FLURRY_FAIL(where << ": '" << key << "' = " << id << " is outside the vocabulary of " << vocab);
}

}  // namespace

void WhisperConfig::validate(const std::string& where) const {
  require_positive(d_model, "d_model", where);
  require_positive(encoder_layers, "encoder_layers", where);
  require_positive(encoder_attention_heads, "encoder_attention_heads", where);
  require_positive(encoder_ffn_dim, "encoder_ffn_dim", where);
  require_positive(decoder_layers, "decoder_layers", where);
  require_positive(decoder_attention_heads, "decoder_attention_heads", where);
  require_positive(decoder_ffn_dim, "decoder_ffn_dim", where);
  require_positive(num_mel_bins, "num_mel_bins", where);
  require_positive(vocab_size, "vocab_size", where);
  require_positive(max_source_positions, "max_source_positions", where);
  require_positive(max_target_positions, "max_target_positions", where);
  if (d_model % encoder_attention_heads != 0) {
    FLURRY_FAIL(where << ": d_model " << d_model << " is not divisible by encoder_attention_heads "
                      << encoder_attention_heads);
  }
  if (d_model % decoder_attention_heads != 0) {
    FLURRY_FAIL(where << ": d_model " << d_model << " is not divisible by decoder_attention_heads "
                      << decoder_attention_heads);
  }
  // HF maps "gelu" to the exact erf GELU; anything else is a model this runtime was not written for.
  if (activation_function != "gelu") {
    FLURRY_FAIL(where << ": activation_function '" << activation_function
                      << "' is not supported (Whisper uses 'gelu')");
  }
  // No released Whisper scales embeddings, and HF's own handling of the flag has changed between
  // versions; refusing is better than guessing.
  if (scale_embedding) FLURRY_FAIL(where << ": scale_embedding = true is not supported");
  if (!(layer_norm_eps > 0.0f)) FLURRY_FAIL(where << ": layer_norm_eps must be positive");
  require_token(pad_token_id, vocab_size, "pad_token_id", where);
  require_token(bos_token_id, vocab_size, "bos_token_id", where);
  require_token(eos_token_id, vocab_size, "eos_token_id", where);
  require_token(decoder_start_token_id, vocab_size, "decoder_start_token_id", where);
}

WhisperConfig whisper_config_from_json(const Json& j, const std::string& where) {
  if (!j.is_object()) FLURRY_FAIL(where << ": config is not a JSON object");
  const std::string model_type = json_get_or<std::string>(j, "model_type", "whisper", where);
  if (model_type != "whisper") {
    FLURRY_FAIL(where << ": model_type is '" << model_type << "', expected 'whisper'");
  }
  WhisperConfig c;
  c.d_model = json_get<int64_t>(j, "d_model", where);
  c.encoder_layers = json_get<int64_t>(j, "encoder_layers", where);
  c.encoder_attention_heads = json_get<int64_t>(j, "encoder_attention_heads", where);
  c.encoder_ffn_dim = json_get<int64_t>(j, "encoder_ffn_dim", where);
  c.decoder_layers = json_get<int64_t>(j, "decoder_layers", where);
  c.decoder_attention_heads = json_get<int64_t>(j, "decoder_attention_heads", where);
  c.decoder_ffn_dim = json_get<int64_t>(j, "decoder_ffn_dim", where);
  c.num_mel_bins = json_get<int64_t>(j, "num_mel_bins", where);
  c.vocab_size = json_get<int64_t>(j, "vocab_size", where);
  c.max_source_positions = json_get<int64_t>(j, "max_source_positions", where);
  c.max_target_positions = json_get<int64_t>(j, "max_target_positions", where);
  c.activation_function = json_get_or<std::string>(j, "activation_function", "gelu", where);
  c.scale_embedding = json_get_or<bool>(j, "scale_embedding", false, where);
  c.tie_word_embeddings = json_get_or<bool>(j, "tie_word_embeddings", true, where);
  c.pad_token_id = token_id(j, "pad_token_id", where);
  c.bos_token_id = token_id(j, "bos_token_id", where);
  c.eos_token_id = token_id(j, "eos_token_id", where);
  c.decoder_start_token_id = token_id(j, "decoder_start_token_id", where);
  c.validate(where);
  return c;
}

WhisperConfig load_whisper_config(const std::string& path) {
  return whisper_config_from_json(read_json_file(path), path);
}

}  // namespace flurry::whisper
