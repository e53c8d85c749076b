#include "io/whisper_tokens.h"

#include "runtime/check.h"

namespace flurry {

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

WhisperSpecialTokens WhisperSpecialTokens::resolve(const BpeTokenizer& tok) {
  WhisperSpecialTokens w;
  w.sot = require(tok, "<|startoftranscript|>");
  w.eot = require(tok, "<|endoftext|>");
  w.translate = require(tok, "<|translate|>");
  w.transcribe = require(tok, "<|transcribe|>");
  w.no_timestamps = require(tok, "<|notimestamps|>");
  w.start_of_prev = require(tok, "<|startofprev|>");
  w.start_of_lm = optional_id(tok, "<|startoflm|>");
  w.no_speech = optional_id(tok, "<|nospeech|>");
  if (w.no_speech < 0) w.no_speech = require(tok, "<|nocaptions|>");
  const int ts = optional_id(tok, "<|0.00|>");
  w.timestamp_begin = ts >= 0 ? ts : w.no_timestamps + 1;

  // A tokenizer without language tokens would have sot and translate as neighbours.
  for (int id = w.sot + 1; id < w.translate; ++id) {
    const std::string& content = tok.id_to_token(id);
    std::string code;
    FLURRY_CHECK(language_code_of(content, &code),
                 "token " << id << " '" << content << "' sits between <|startoftranscript|> and <|translate|> "
                          << "but is not a language token");
    FLURRY_CHECK(w.language_to_id.emplace(code, id).second, "language token <|" << code << "|> appears twice");
    w.id_to_language.emplace(id, code);
    w.language_codes.push_back(code);
  }
  return w;
}

std::optional<int> WhisperSpecialTokens::language_id(const std::string& code) const {
  auto it = language_to_id.find(code);
  if (it == language_to_id.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> WhisperSpecialTokens::language_code(int id) const {
  auto it = id_to_language.find(id);
  if (it == id_to_language.end()) return std::nullopt;
  return it->second;
}

}  // namespace flurry
