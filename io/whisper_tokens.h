// Whisper's special tokens, found by name in the checkpoint's tokenizer, never by fixed id: the
// ids move between model generations (v3 added <|yue|>, turning every id after it by one).
#pragma once

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/bpe_tokenizer.h"

namespace flurry {

struct WhisperSpecialTokens {
  int sot = -1;               // <|startoftranscript|>
  int eot = -1;               // <|endoftext|>
  int translate = -1;         // <|translate|>
  int transcribe = -1;        // <|transcribe|>
  int no_timestamps = -1;     // <|notimestamps|>
  int no_speech = -1;         // <|nospeech|> (v3), <|nocaptions|> (earlier)
  int start_of_prev = -1;     // <|startofprev|>: opens the previous-text prompt
  int start_of_lm = -1;       // <|startoflm|>, -1 when absent
  // <|0.00|>; timestamp tokens are consecutive from here in steps of 0.02 s. Checkpoints whose
  // tokenizer lists no timestamp tokens still have them in the model: no_timestamps + 1.
  int timestamp_begin = -1;

  // Language codes ("en", "yue") in id order, and both directions of the map. English-only
  // checkpoints (tiny.en ...) list the language tokens too; whether a model is multilingual comes
  // from its config (openai-whisper: vocab_size >= 51865), not from here.
  std::vector<std::string> language_codes;
  std::unordered_map<std::string, int> language_to_id;
  std::unordered_map<int, std::string> id_to_language;

  // Throws flurry::Error naming the first missing token when the tokenizer is not Whisper's.
  static WhisperSpecialTokens resolve(const BpeTokenizer& tok);

  std::optional<int> language_id(const std::string& code) const;
  std::optional<std::string> language_code(int id) const;
  bool is_timestamp(int id) const { return id >= timestamp_begin; }
  // Seconds of a timestamp token (0.02 s per step).
  double timestamp_seconds(int id) const { return (id - timestamp_begin) * 0.02; }
};

}  // namespace flurry
