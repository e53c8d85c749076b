// Decoding one 30-second window with openai-whisper's semantics (decoding.py), independent of
// the backend that computes the logits.
//
// The decoder talks to the model through DecoderModel: the CPU reference and the CUDA backend
// both implement it; the tests drive it with a scripted fake. Everything here — language
// detection, the logit rules, greedy / sampled / beam search, ranking, no-speech probability —
// runs on the host over one row of logits per sequence, except that a model may take over the
// rules and the choice of greedy and beam steps (DecoderModel::selects_tokens(), the GPU pipeline's
// backend), returning chosen tokens or each beam's top candidates instead of rows.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "models/whisper/logit_rules.h"
#include "runtime/audio_constants.h"

namespace flurry::whisper {

// Whisper's fixed audio geometry: 30 s windows of 3000 mel frames (10 ms hop); the encoder halves
// the frame rate, so a timestamp token step is 20 ms.
constexpr int kSampleRate = kAudioSampleRate;  // runtime/audio_constants.h
constexpr int kHopLength = kMelHop;
constexpr int kFramesPerWindow = kMelWindowFrames;
constexpr int kInputStride = 2;  // mel frames per timestamp step
constexpr double kTimePrecision = static_cast<double>(kInputStride * kHopLength) / kSampleRate;

// The logit filters of one decode() as data (filter_row's SuppressBlank, SuppressTokens and
// ApplyTimestampRules, with their switches), for a model that applies them on its side.
struct LogitRuleSet {
  bool suppress_blank = false;
  std::vector<int> blank_tokens;  // SpecialTokens::blank_tokens; EOT is added by the rule
  std::vector<int> suppress;      // resolve_suppress_tokens(); empty: none
  bool timestamps = false;        // ApplyTimestampRules on
  TimestampRules ts;              // eot is set whether or not timestamps are on
  int forced_length = 0;          // apply_forced_length, last; 0: off

  // Equal but for forced_length (a backend that takes the length per row shares one rule set).
  bool same_rules(const LogitRuleSet& o) const {
    return suppress_blank == o.suppress_blank && blank_tokens == o.blank_tokens && suppress == o.suppress &&
           timestamps == o.timestamps && ts.eot == o.ts.eot && ts.no_timestamps == o.ts.no_timestamps &&
           ts.timestamp_begin == o.ts.timestamp_begin &&
           ts.max_initial_timestamp_index == o.ts.max_initial_timestamp_index;
  }
  bool operator==(const LogitRuleSet& o) const { return forced_length == o.forced_length && same_rules(o); }
  bool operator!=(const LogitRuleSet& o) const { return !(*this == o); }
};

// Applies the rules to one row of logits as decode() does (SuppressBlank, SuppressTokens, the
// timestamp rules, the forced length, in that order); `sampled` / `n_sampled` is the row's history.
// `scratch` (vocab floats) serves the timestamp rules.
void apply_rule_set(const LogitRuleSet& rules, float* logits, int vocab, const int* sampled, int n_sampled,
                    std::vector<float>& scratch);

// The host's answer to one sequence of a forward_select (DecoderModel's contract below): filters
// `logits` in place with the rules, then writes the argmax (top_k 0, temperature 0), the top_k best
// by (logprob desc, id asc), or the sample_inverse_cdf draw at `temperature` with `uniform`, and
// their temperature-1 log-softmax values. The CPU oracle of a backend that selects on its side.
void select_from_row(const LogitRuleSet& rules, float* logits, int vocab, const int* sampled, int n_sampled,
                     int top_k, float temperature, double uniform, int32_t* token_out, float* logprob_out);

// A step's request to a model that selects on its side: the rules, per sequence the tokens sampled
// so far (openai-whisper's tokens[sample_begin:]; the rules read them), and what to return: the
// argmax (top_k = 0, greedy), the top_k best (beam search), or with temperature > 0 (top_k 0) a
// draw per sequence: sample_inverse_cdf of the filtered row at `temperature` with uniform[s].
struct SelectQuery {
  const LogitRuleSet* rules = nullptr;
  std::vector<const int*> sampled;
  std::vector<int> n_sampled;
  int top_k = 0;
  float temperature = 0.0f;
  std::vector<double> uniform;  // temperature > 0: one draw in [0, 1) per sequence
};

// The decoder side of a Whisper model with its per-sequence state (self-attention KV caches).
// A decode holds n_seqs sequences; each reads the encoder output of one audio of the batch the
// caller encoded before decoding.
class DecoderModel {
 public:
  virtual ~DecoderModel() = default;
  virtual int vocab_size() const = 0;
  virtual int n_text_ctx() const = 0;  // 448 for every released Whisper
  // Drops all sequences and starts audio_of_seq.size() empty ones; sequence s reads audio
  // audio_of_seq[s].
  virtual void begin(const std::vector<int>& audio_of_seq) = 0;
  // Appends tokens[s] to sequence s (after begin(): the whole initial sequence; then one token
  // per step) and writes the logits after each sequence's last token to last_logits
  // (n_seqs x vocab, row-major). When aux_pos is not empty, also writes the logits at position
  // aux_pos[s] of the tokens passed in this call to aux_logits (n_seqs x vocab): the decoder
  // asks for the SOT position on the first call, for the no-speech probability.
  virtual void forward(const std::vector<std::vector<int>>& tokens, float* last_logits,
                       const std::vector<int>& aux_pos, float* aux_logits) = 0;
  // Rearranges sequences for beam search: new sequence i continues old sequence parent[i]
  // (a parent may be repeated or dropped; the count may change).
  virtual void fork(const std::vector<int>& parent) = 0;

  // Optional: token selection on the model's side (a GPU backend that would otherwise copy every
  // logits row to the host). A model returning true from selects_tokens() implements
  // forward_select(), which decode() then calls instead of forward() at temperature 0 (greedy, and
  // beam search while beam_size + 1 <= max_select_top_k()): as forward(), but for each sequence s
  // it applies q.rules to the logits after its last token (with q.sampled[s] as the history) and,
  // instead of the row, writes
  //   - q.top_k == 0: the argmax of the filtered row (the first index on ties, as
  //     std::max_element) to token_out[s] and its log-softmax to logprob_out[s];
  //   - q.top_k > 0: the top_k best ids and their log-softmax values, ordered by logprob
  //     descending then id ascending (step_beam's partial_sort), to token_out / logprob_out
  //     [s * top_k, (s + 1) * top_k).
  // Auxiliary rows (aux_pos) are still written in full.
  //   - q.temperature > 0 (top_k 0, only on a model whose samples_tokens() is true): the token
  //     sample_inverse_cdf(filtered row, q.temperature, q.uniform[s]) picks, to token_out[s], and
  //     its log-softmax at temperature 1 (what the host's step adds to the sum) to logprob_out[s].
  virtual bool selects_tokens() const { return false; }
  virtual bool samples_tokens() const { return false; }
  virtual int max_select_top_k() const { return 0; }
  virtual void forward_select(const std::vector<std::vector<int>>& tokens, const SelectQuery& q, int* token_out,
                              float* logprob_out, const std::vector<int>& aux_pos, float* aux_logits);
};

// Draws a token from softmax(logits / temperature). Entries may be -inf.
class TokenSampler {
 public:
  virtual ~TokenSampler() = default;
  virtual int sample(const float* logits, int vocab, float temperature) = 0;
  // A sampler whose sample() is sample_inverse_cdf at its next uniform() draw returns true, so that
  // a model that samples on its side (DecoderModel::samples_tokens) can be handed the draws.
  virtual bool draws_uniform() const { return false; }
  virtual double uniform();
};

// The inverse CDF every uniform-drawing sampler uses: with w_i = exp(double(logits[i] / T) - m)
// (m the largest logits[i] / T, in float) summed in index order into c_i, the first i with
// c_i > u * c_{vocab-1}; past the end (u * total rounded up), the last token with mass. `scratch`
// holds the sums. Throws when every entry is -inf.
int sample_inverse_cdf(const float* logits, int vocab, float temperature, double u, std::vector<double>& scratch);

// The default sampler: a seeded mt19937_64 (53-bit uniforms) and sample_inverse_cdf. It does not
// reproduce torch's random stream (nothing could); it is repeatable for a given seed.
class RandomSampler : public TokenSampler {
 public:
  explicit RandomSampler(uint64_t seed) : rng_(seed) {}
  int sample(const float* logits, int vocab, float temperature) override;
  bool draws_uniform() const override { return true; }
  double uniform() override { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 rng_;
  std::vector<double> weights_;
};

enum class Task { kTranscribe, kTranslate };

// openai-whisper's DecodingOptions; 0 / empty / nullopt where it has None.
struct DecodingOptions {
  Task task = Task::kTranscribe;
  std::string language;  // empty: detect from the audio
  float temperature = 0.0f;
  int sample_len = 0;    // max tokens to sample; 0: n_text_ctx / 2
  int best_of = 0;       // independent samples when temperature > 0; 0: unset (1)
  int beam_size = 0;     // beam search when > 0 (temperature 0 only); 0: unset
  float patience = 0.0f; // beam search patience (arXiv:2204.05424); 0: unset (1.0)
  // Google NMT length penalty alpha in [0, 1]; nullopt: rank by sum logprob / length.
  std::optional<double> length_penalty;
  std::vector<int> prompt;  // previous context, sent after <|startofprev|>
  std::vector<int> prefix;  // forced start of this window's output
  // Ids to suppress; -1 stands for the checkpoint's suppress_tokens list. Whenever the list is
  // not empty the task, SOT, <|startofprev|>, <|startoflm|> and no-speech tokens join it; an
  // empty list suppresses nothing (openai-whisper's suppress_tokens="").
  std::vector<int> suppress_tokens = {-1};
  bool suppress_blank = true;
  bool without_timestamps = false;
  std::optional<double> max_initial_timestamp = 1.0;  // seconds
  uint64_t seed = 0;  // for the default sampler
  // Benchmarks only (not an openai-whisper option): > 0 forces every sequence of the window to
  // exactly this many sampled tokens and then EOT (apply_forced_length, after the other rules), so
  // that runs with random weights do the work of a real transcript of that length. Must be below
  // sample_len. 0: off.
  int forced_length = 0;
};

// Parses openai-whisper's comma-separated suppress_tokens option ("-1", "", "-1,220").
std::vector<int> parse_suppress_tokens(const std::string& csv);

struct DecodingResult {
  std::string language;
  std::vector<std::pair<std::string, float>> language_probs;  // set when the language was detected
  std::vector<int> tokens;  // sampled tokens, from after the initial tokens up to (not incl.) EOT
  std::string text;         // detokenised, whitespace-stripped (empty without a detokeniser)
  double sum_logprob = 0.0;
  double avg_logprob = 0.0;  // sum_logprob / (tokens + 1), the +1 for EOT
  double no_speech_prob = 0.0;
  double temperature = 0.0;
  double compression_ratio = 0.0;  // of `text`; NaN without a detokeniser
};

// Decodes token ids to UTF-8; called with ids below timestamp_begin only (as openai-whisper's
// Tokenizer.decode drops timestamps).
using Detokenizer = std::function<std::string(const std::vector<int>&)>;

struct DecodeHooks {
  Detokenizer detokenize;           // for text and compression_ratio; optional
  TokenSampler* sampler = nullptr;  // temperature > 0; default: RandomSampler(options.seed)
  // Per-audio prompts overriding options.prompt (long-form batches carry one context per file).
  std::vector<std::vector<int>> prompts;
};

// Language identification for n_audio audios (model audio indices 0..n_audio-1) from the logits
// after <|startoftranscript|> restricted to the language tokens: the likeliest code and token,
// and (code, probability) for every language in vocabulary order.
struct LanguageGuess {
  std::string code;
  int token = -1;
  std::vector<std::pair<std::string, float>> probs;
};
std::vector<LanguageGuess> detect_language(DecoderModel& model, const SpecialTokens& sp, int n_audio);

// openai-whisper's DecodingTask.run over n_audio encoded audios (the model's audio indices
// 0..n_audio-1). Returns one result per audio.
std::vector<DecodingResult> decode(DecoderModel& model, const SpecialTokens& sp, const DecodingOptions& options,
                                   int n_audio, const DecodeHooks& hooks = {});

// Building blocks, exposed for tests and for backends that decode on the device.
// The tokens before the first sampled one: [<|startofprev|> prompt] SOT [lang task] [<|notimestamps|>] prefix.
std::vector<int> initial_tokens(const SpecialTokens& sp, const DecodingOptions& options, const std::string& language,
                                int n_text_ctx, const std::vector<int>& prompt);
// The suppress list the SuppressTokens filter uses (sorted, unique), empty for none.
std::vector<int> resolve_suppress_tokens(const SpecialTokens& sp, const std::vector<int>& requested);
// openai-whisper's MaximumLikelihoodRanker: index of the best of sequences with these lengths
// and summed log-probabilities.
int rank_sequences(const std::vector<int>& lengths, const std::vector<double>& sum_logprobs,
                   const std::optional<double>& length_penalty);

}  // namespace flurry::whisper
