// Next-token selection on the device for greedy and beam-search decoding: logit rules, log-softmax,
// argmax and top-k, one block per row of logits [rows, vocab] fp32 (the output-projection GEMM's).
//
// The rules mirror models/whisper/logit_rules.h (openai-whisper's SuppressBlank, SuppressTokens
// and ApplyTimestampRules) exactly as DecodeRun::filter_row applies them, and like them only ever
// set entries to -inf, in place in `logits`:
//   - SuppressBlank: when a row has sampled nothing yet, its blank ids and EOT;
//   - SuppressTokens: every id of the list;
//   - timestamps: <|notimestamps|>; the pair rule (after "<|t|><|t|>" or a leading "<|t|>" only
//     text, after "text <|t|>" only timestamps or EOT); timestamps never decrease and a new
//     segment cannot reuse the last value; the first sampled token is a timestamp no later than
//     the max initial one; and when logsumexp over the timestamps exceeds the largest text logit
//     (the rule "sum of timestamp probabilities > max text probability", whose log-softmax
//     normaliser cancels from both sides) every text token is masked.
// Then, over the filtered row: the log-softmax normaliser (max-subtracted, fp32), the argmax of the
// logits (the first index on ties, as std::max_element) or a draw at a temperature (sampling,
// with the caller's uniform) with its logprob, optionally the full
// logprob row, and optionally the top_k (<= 10) logprobs, ordered by logprob descending and then by
// id ascending as the CPU beam search's partial_sort orders them.
//
// Each row reads its token history (the tokens sampled after the SOT sequence / prompt, openai-
// whisper's tokens[sample_begin:]) from device memory, so rows with different prompts and lengths
// share one launch. Cost: a few passes over the row (207 KB for vocab 51866), which stays in L2
// between passes; small next to the vocab projection that produced it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flurry {

constexpr int kLogitsMaxTopK = 10;

// Bits OR-ed into LogitsArgs::error (only set, never cleared: clear it before the launches whose
// errors you want to collect).
constexpr int32_t kLogitsBadSuppressId = 1;  // a suppress or blank id outside [0, vocab): skipped
constexpr int32_t kLogitsBadHistory = 2;     // n_sampled[r] outside [0, sampled_ld]: clamped
constexpr int32_t kLogitsAllMasked = 4;      // sampling: every entry of a row is -inf (token 0)

struct LogitRulesGpu {
  const int32_t* suppress_ids = nullptr;  // device; SuppressTokens list (resolve_suppress_tokens)
  int n_suppress = 0;
  bool suppress_blank = false;            // SuppressBlank on
  const int32_t* blank_ids = nullptr;     // device; SpecialTokens::blank_tokens (EOT is added)
  int n_blank = 0;
  bool timestamps = false;                // ApplyTimestampRules on (!without_timestamps)
  int eot = -1;
  int no_timestamps = -1;                 // -1: none
  int timestamp_begin = -1;
  int max_initial_timestamp_index = -1;   // -1: no limit
};

struct LogitsArgs {
  float* logits = nullptr;  // [rows, ld], filtered in place
  int64_t rows = 0, vocab = 0, ld = 0;
  // Token history: row r's sampled tokens are sampled[r * sampled_ld + 0 .. n_sampled[r]).
  // n_sampled is needed by SuppressBlank and the timestamp rules, sampled by the latter.
  const int32_t* sampled = nullptr;
  int64_t sampled_ld = 0;
  const int32_t* n_sampled = nullptr;
  LogitRulesGpu rules;
  // Optional forced lengths (models/whisper/logit_rules.h apply_forced_length, applied after the
  // rules), as what is left per row: eot_after[r] < 0 off; > 0: that many tokens still to come, EOT
  // masked; == 0: every id but EOT masked and EOT's logit set to 0. Given as a remainder rather
  // than a length so that it needs no full history (n_sampled may be a summary's count).
  const int32_t* eot_after = nullptr;
  // Optional sampling (DecoderModel::forward_select at temperature > 0; top_k must be 0): row r's
  // token is models/whisper/decoding.h sample_inverse_cdf of the filtered row at `temperature`
  // with uniform[r], written to `argmax` in the argmax's place, its temperature-1 log-softmax to
  // argmax_logprob. The exp weights and their prefix sums are in double, as the CPU's; the sums
  // run in a different order (per thread, then across threads), so a draw within ~1e-15 of a
  // boundary between two tokens may fall on the other side.
  float temperature = 0.0f;
  const double* uniform = nullptr;  // device, [rows]
  // Outputs (device). argmax and argmax_logprob: [rows], each optional.
  int32_t* argmax = nullptr;
  float* argmax_logprob = nullptr;
  // Optional [rows, logprobs_ld] log-softmax of the filtered row; may alias `logits`.
  float* logprobs = nullptr;
  int64_t logprobs_ld = 0;
  // Optional top-k: [rows, top_k] ids and logprobs; top_k in [0, kLogitsMaxTopK].
  int top_k = 0;
  int32_t* topk_ids = nullptr;
  float* topk_logprobs = nullptr;
  int32_t* error = nullptr;  // optional device word, kLogits* bits
};

void logits_select(const LogitsArgs& a, cudaStream_t stream);

}  // namespace flurry
