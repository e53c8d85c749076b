#include "models/whisper/tokens.h"

#include "runtime/check.h"

namespace flurry::whisper {

namespace {

int require(const BpeTokenizer& tok, const char* name) {
  auto id = tok.token_to_id(name);
  FLURRY_CHECK(id.has_value(), "the tokenizer has no " << name << " token; is it a Whisper tokenizer?");
  return *id;
}

int optional_id(const BpeTokenizer& tok, const char* name) {
  auto id = tok.token_to_id(name);
  return id ? *id : -1;
}

// "<|xx|>" with lowercase ASCII letters inside: the shape of a language token. Other tokens in the
// same id range would be a tokenizer this code does not know, so they are rejected, not skipped.
bool language_code_of(const std::string& content, std::string* code) {
  if (content.size() < 5 || content.compare(0, 2, "<|") != 0 ||
      content.compare(content.size() - 2, 2, "|>") != 0) {
    return false;
  }
  std::string inner = content.substr(2, content.size() - 4);
  for (char c : inner) {
    if (c < 'a' || c > 'z') return false;
  }
  *code = inner;
  return true;
}

}  // namespace

SpecialTokens resolve_special_tokens(const BpeTokenizer& tok, const nlohmann::json& gen) {
  SpecialTokens sp;
  sp.sot = require(tok, "<|startoftranscript|>");
  sp.eot = require(tok, "<|endoftext|>");
  sp.translate = require(tok, "<|translate|>");
  sp.transcribe = require(tok, "<|transcribe|>");
  sp.no_timestamps = require(tok, "<|notimestamps|>");
  sp.sot_prev = require(tok, "<|startofprev|>");
  sp.sot_lm = optional_id(tok, "<|startoflm|>");
  sp.no_speech = optional_id(tok, "<|nospeech|>");
  if (sp.no_speech < 0) sp.no_speech = require(tok, "<|nocaptions|>");
  // Checkpoints whose tokenizer lists no timestamp tokens still have them in the model.
  const int ts = optional_id(tok, "<|0.00|>");
  sp.timestamp_begin = ts >= 0 ? ts : sp.no_timestamps + 1;

  // A tokenizer without language tokens would have sot and translate as neighbours.
  for (int id = sp.sot + 1; id < sp.translate; ++id) {
    const std::string& content = tok.id_to_token(id);
    std::string code;
    FLURRY_CHECK(language_code_of(content, &code),
                 "token " << id << " '" << content << "' sits between <|startoftranscript|> and <|translate|> "
                          << "but is not a language token");
    for (const auto& [c, other] : sp.languages) {
      FLURRY_CHECK(c != code, "language token <|" << code << "|> appears twice");
    }
    sp.languages.emplace_back(code, id);
  }

  if (gen.is_object() && gen.contains("suppress_tokens") && gen["suppress_tokens"].is_array()) {
    sp.suppress_tokens = gen["suppress_tokens"].get<std::vector<int>>();
  }
  // The blank is the tokenizer's encoding of " "; generation_config's begin_suppress_tokens holds
  // the same ids plus EOT, and is preferred when present.
  if (gen.is_object() && gen.contains("begin_suppress_tokens") && gen["begin_suppress_tokens"].is_array()) {
    for (int id : gen["begin_suppress_tokens"].get<std::vector<int>>()) {
      if (id != sp.eot) sp.blank_tokens.push_back(id);
    }
  } else {
    sp.blank_tokens = tok.encode(" ", false);
  }
  return sp;
}

}  // namespace flurry::whisper
