// Whisper's logit filters, applied to one row of next-token logits before a token is chosen.
//
// They follow openai-whisper's decoding.py (SuppressBlank, SuppressTokens, ApplyTimestampRules) and
// only ever set entries to -inf, so a backend can mirror them as masks. Each works on one sequence:
// `sampled` holds the tokens generated after the initial tokens (SOT sequence, prompt, prefix) —
// openai-whisper's tokens[sample_begin:] — so sequences with different prompts share one code path.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace flurry::whisper {

// Special token ids, filled by the caller from the tokenizer by name and from the checkpoint's
// generation_config.json; nothing in decoding hard-codes an id.
struct SpecialTokens {
  int sot = -1;              // <|startoftranscript|>
  int eot = -1;              // <|endoftext|>
  int transcribe = -1;       // <|transcribe|>
  int translate = -1;        // <|translate|>
  int sot_lm = -1;           // <|startoflm|>
  int sot_prev = -1;         // <|startofprev|>
  int no_speech = -1;        // <|nospeech|> (<|nocaptions|> before v3); -1 when absent
  int no_timestamps = -1;    // <|notimestamps|>
  int timestamp_begin = -1;  // <|0.00|>; every id from here on is a timestamp
  // (code, id) in vocabulary order, e.g. ("en", 50259). Empty for English-only checkpoints,
  // whose SOT sequence is <|startoftranscript|> alone.
  std::vector<std::pair<std::string, int>> languages;
  // generation_config.json "suppress_tokens" (openai-whisper's non_speech_tokens): what the
  // suppress_tokens option "-1" stands for.
  std::vector<int> suppress_tokens;
  // The tokenizer's encoding of " " (generation_config.json "begin_suppress_tokens" without EOT),
  // suppressed with EOT at the first sampled position.
  std::vector<int> blank_tokens;

  bool multilingual() const { return !languages.empty(); }
  bool is_timestamp(int id) const { return id >= timestamp_begin; }
  // Seconds of a timestamp token (0.02 s per step).
  double timestamp_seconds(int id) const { return (id - timestamp_begin) * 0.02; }
  // Id of a language code; throws for a code the checkpoint does not know.
  int language_id(const std::string& code) const;
  // Code of a language token id, or "" when `id` is not one.
  std::string language_code(int id) const;
  // Checks that the ids are set and ordered as Whisper's vocabulary has them.
  void validate(int vocab_size) const;
};

// SuppressBlank: at the first sampled position, forbid the blank and EOT.
void suppress_blank(float* logits, int vocab, int n_sampled, const std::vector<int>& blank_tokens, int eot);

// SuppressTokens: forbid every id in `ids` (ids outside [0, vocab) are an error).
void suppress_tokens(float* logits, int vocab, const std::vector<int>& ids);

// A forced decoded length (the benchmark's: the Hugging Face peer's ForcedLengths, a per-sequence
// min_new_tokens plus an end there): with `length` > 0, EOT is forbidden while fewer than `length`
// tokens have been sampled, and once `length` have been, every other id is forbidden and EOT's
// logit is set to 0 (its log-softmax is then 0, as the peer's). length <= 0: nothing.
void apply_forced_length(float* logits, int vocab, int n_sampled, int length, int eot);

struct TimestampRules {
  int eot = -1;
  int no_timestamps = -1;
  int timestamp_begin = -1;
  // Latest timestamp index allowed as the first sampled token; -1 for no limit. openai-whisper:
  // round(max_initial_timestamp / time_precision), 50 for its default of 1.0 s.
  int max_initial_timestamp_index = -1;
};

// ApplyTimestampRules: <|notimestamps|> is never sampled; timestamps come in pairs except a lone
// one right before EOT; they never decrease (and a closing pair cannot reuse the last value,
// so every segment has a nonzero length); the first sampled token is a timestamp no later than
// the max initial one; and when the total probability of all timestamps exceeds that of the
// likeliest text token, a timestamp is forced. `scratch` (vocab floats) holds the log-softmax.
void apply_timestamp_rules(float* logits, int vocab, const int* sampled, int n_sampled,
                           const TimestampRules& rules, std::vector<float>& scratch);

// log-softmax of one row, out[i] = x[i] - max - log(sum exp(x - max)); -inf entries stay -inf.
void log_softmax(const float* logits, int n, float* out);

}  // namespace flurry::whisper
