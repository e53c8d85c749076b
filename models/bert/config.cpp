#include "models/bert/config.h"

#include <filesystem>

#include "runtime/check.h"

namespace fs = std::filesystem;

namespace flurry::bert {

namespace {

int64_t need_int(const Json& j, const char* key, const std::string& where) {
  FLURRY_CHECK(j.contains(key) && j[key].is_number_integer(), where << ": config.json needs integer '" << key << "'");
  const int64_t v = j[key].get<int64_t>();
  FLURRY_CHECK(v > 0, where << ": '" << key << "' must be positive, got " << v);
  return v;
}

}  // namespace

BertConfig bert_config_from_json(const Json& j, const std::string& where) {
  FLURRY_CHECK(j.is_object(), where << ": config.json is not a JSON object");
  const std::string type = j.value("model_type", std::string("bert"));
  FLURRY_CHECK(type == "bert", where << ": model_type '" << type
                                     << "' is not supported (BERT-layout encoders only: bert, e5, bge, gte, "
                                        "arctic-embed and kin; RoBERTa/XLM-R differ in positions)");
  BertConfig c;
  c.hidden_size = need_int(j, "hidden_size", where);
  c.num_hidden_layers = need_int(j, "num_hidden_layers", where);
  c.num_attention_heads = need_int(j, "num_attention_heads", where);
  c.intermediate_size = need_int(j, "intermediate_size", where);
  c.vocab_size = need_int(j, "vocab_size", where);
  c.max_position_embeddings = need_int(j, "max_position_embeddings", where);
  c.type_vocab_size = j.contains("type_vocab_size") ? need_int(j, "type_vocab_size", where) : 2;
  if (j.contains("layer_norm_eps")) {
    FLURRY_CHECK(j["layer_norm_eps"].is_number(), where << ": 'layer_norm_eps' must be a number");
    c.layer_norm_eps = j["layer_norm_eps"].get<float>();
  }
  c.hidden_act = j.value("hidden_act", std::string("gelu"));
  FLURRY_CHECK(c.hidden_act == "gelu", where << ": hidden_act '" << c.hidden_act
                                             << "' is not supported (the exact erf GELU, 'gelu', only)");
  const std::string pos = j.value("position_embedding_type", std::string("absolute"));
  FLURRY_CHECK(pos == "absolute", where << ": position_embedding_type '" << pos << "' is not supported (absolute only)");
  FLURRY_CHECK(c.hidden_size % c.num_attention_heads == 0,
               where << ": hidden_size " << c.hidden_size << " is not a multiple of " << c.num_attention_heads << " heads");
  return c;
}

BertConfig load_bert_config(const std::string& path) { return bert_config_from_json(read_json_file(path), path); }

const char* pooling_name(Pooling p) {
  switch (p) {
    case Pooling::kMean: return "mean";
    case Pooling::kCls: return "cls";
    case Pooling::kMax: return "max";
    case Pooling::kMeanSqrtLen: return "mean_sqrt_len";
  }
  return "?";
}

Pooling parse_pooling(const std::string& name) {
  if (name == "mean") return Pooling::kMean;
  if (name == "cls") return Pooling::kCls;
  if (name == "max") return Pooling::kMax;
  if (name == "mean_sqrt_len" || name == "mean_sqrt_len_tokens") return Pooling::kMeanSqrtLen;
  FLURRY_FAIL("unknown pooling '" << name << "' (mean, cls, max, mean_sqrt_len)");
}

SentenceConfig load_sentence_config(const std::string& dir, const BertConfig& c) {
  SentenceConfig s;
  s.max_seq_length = c.max_position_embeddings;
  const fs::path modules = fs::path(dir) / "modules.json";
  if (!fs::exists(modules)) return s;
  s.sentence_transformers = true;
  const Json m = read_json_file(modules.string());
  FLURRY_CHECK(m.is_array(), modules.string() << ": expected a list of modules");
  bool transformer = false, pooling = false;
  for (const Json& mod : m) {
    const std::string type = mod.value("type", std::string());
    const std::string path = mod.value("path", std::string());
    if (type.find("models.Transformer") != std::string::npos) {
      transformer = true;
    } else if (type.find("models.Pooling") != std::string::npos) {
      pooling = true;
      const Json p = read_json_file((fs::path(dir) / path / "config.json").string());
      int modes = 0;
      if (p.value("pooling_mode_mean_tokens", false)) s.pooling = Pooling::kMean, ++modes;
      if (p.value("pooling_mode_cls_token", false)) s.pooling = Pooling::kCls, ++modes;
      if (p.value("pooling_mode_max_tokens", false)) s.pooling = Pooling::kMax, ++modes;
      if (p.value("pooling_mode_mean_sqrt_len_tokens", false)) s.pooling = Pooling::kMeanSqrtLen, ++modes;
      FLURRY_CHECK(modes == 1, dir << "/" << path << "/config.json: exactly one pooling mode is supported, found "
                                   << modes << " (concatenated poolings are not)");
      FLURRY_CHECK(!p.value("pooling_mode_weightedmean_tokens", false) && !p.value("pooling_mode_lasttoken", false),
                   dir << "/" << path << "/config.json: weighted-mean and last-token pooling are not supported");
      if (p.contains("include_prompt") && p["include_prompt"].is_boolean()) s.include_prompt = p["include_prompt"].get<bool>();
    } else if (type.find("models.Normalize") != std::string::npos) {
      s.normalize = true;
    } else {
      FLURRY_FAIL(modules.string() << ": module '" << type << "' is not supported (Transformer, Pooling, Normalize)");
    }
  }
  FLURRY_CHECK(transformer && pooling, modules.string() << ": needs a Transformer and a Pooling module");
  const fs::path st = fs::path(dir) / "config_sentence_transformers.json";
  if (fs::exists(st)) {
    const Json j = read_json_file(st.string());
    if (j.contains("prompts") && j["prompts"].is_object()) {
      for (const auto& [name, text] : j["prompts"].items()) {
        FLURRY_CHECK(text.is_string(), st.string() << ": prompt '" << name << "' is not a string");
        s.prompts[name] = text.get<std::string>();
      }
    }
    if (j.contains("default_prompt_name") && j["default_prompt_name"].is_string()) {
      s.default_prompt_name = j["default_prompt_name"].get<std::string>();
      FLURRY_CHECK(s.prompts.count(s.default_prompt_name) == 1,
                   st.string() << ": default_prompt_name '" << s.default_prompt_name << "' is not among its prompts");
    }
  }
  const fs::path sb = fs::path(dir) / "sentence_bert_config.json";
  if (fs::exists(sb)) {
    const Json j = read_json_file(sb.string());
    if (j.contains("max_seq_length") && j["max_seq_length"].is_number_integer()) {
      s.max_seq_length = j["max_seq_length"].get<int64_t>();
    }
  }
  FLURRY_CHECK(s.max_seq_length >= 2 && s.max_seq_length <= c.max_position_embeddings,
               dir << ": max_seq_length " << s.max_seq_length << " outside [2, max_position_embeddings "
                   << c.max_position_embeddings << "]");
  return s;
}

std::string resolve_prompt(const SentenceConfig& s, const std::optional<std::string>& prompt,
                           const std::string& prompt_name, const std::string& what) {
  std::string text;
  if (prompt) {
    text = *prompt;
  } else if (!prompt_name.empty()) {
    const auto it = s.prompts.find(prompt_name);
    if (it == s.prompts.end()) {
      std::string known;
      for (const auto& [name, value] : s.prompts) known += (known.empty() ? "" : ", ") + name;
      FLURRY_FAIL(what << ": the checkpoint has no prompt named '" << prompt_name << "' (its prompts: "
                       << (known.empty() ? "none" : known) << ")");
    }
    text = it->second;
  } else if (!s.default_prompt_name.empty()) {
    text = s.prompts.at(s.default_prompt_name);
  }
  FLURRY_CHECK(text.empty() || s.include_prompt,
               what << ": the checkpoint's pooling leaves the prompt's tokens out (include_prompt false), "
                       "which is not supported; pass an empty --prompt to embed without one");
  return text;
}

}  // namespace flurry::bert
