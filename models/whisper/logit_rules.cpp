#include "models/whisper/logit_rules.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/check.h"

namespace flurry::whisper {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void mask_range(float* logits, int begin, int end) {
  for (int i = std::max(begin, 0); i < end; ++i) logits[i] = kNegInf;
}

}  // namespace

int SpecialTokens::language_id(const std::string& code) const {
  for (const auto& [c, id] : languages) {
    if (c == code) return id;
  }
  FLURRY_FAIL("unknown language code '" << code << "'" << (languages.empty() ? " (English-only checkpoint)" : ""));
}

std::string SpecialTokens::language_code(int id) const {
  for (const auto& [c, tok] : languages) {
    if (tok == id) return c;
  }
  return std::string();
}

void SpecialTokens::validate(int vocab_size) const {
  const std::pair<const char*, int> required[] = {
      {"sot", sot},         {"eot", eot},         {"transcribe", transcribe}, {"translate", translate},
      {"sot_prev", sot_prev}, {"no_timestamps", no_timestamps}, {"timestamp_begin", timestamp_begin}};
  for (const auto& [name, id] : required) {
    FLURRY_CHECK(id >= 0 && id < vocab_size, "special token " << name << " = " << id << " outside vocab of " << vocab_size);
  }
  // The rules rely on Whisper's layout: text < EOT < other specials < timestamps.
  FLURRY_CHECK(eot < timestamp_begin && sot < timestamp_begin && no_timestamps < timestamp_begin,
               "timestamps must follow every other special token");
  for (const auto& [c, id] : languages) {
    FLURRY_CHECK(id > eot && id < timestamp_begin, "language token " << c << " = " << id << " out of the special range");
  }
  for (int id : suppress_tokens) FLURRY_CHECK(id >= 0 && id < vocab_size, "suppress token " << id << " outside vocab");
  for (int id : blank_tokens) FLURRY_CHECK(id >= 0 && id < vocab_size, "blank token " << id << " outside vocab");
}

void suppress_blank(float* logits, int vocab, int n_sampled, const std::vector<int>& blank_tokens, int eot) {
  if (n_sampled != 0) return;
  for (int id : blank_tokens) {
    FLURRY_CHECK(id >= 0 && id < vocab, "blank token " << id << " outside vocab of " << vocab);
    logits[id] = kNegInf;
  }
  logits[eot] = kNegInf;
}

void apply_forced_length(float* logits, int vocab, int n_sampled, int length, int eot) {
  if (length <= 0) return;
  FLURRY_CHECK(eot >= 0 && eot < vocab, "forced length: EOT " << eot << " outside vocab of " << vocab);
  if (n_sampled < length) {
    logits[eot] = kNegInf;
    return;
  }
  mask_range(logits, 0, eot);
  mask_range(logits, eot + 1, vocab);
  logits[eot] = 0.0f;
}

void suppress_tokens(float* logits, int vocab, const std::vector<int>& ids) {
  for (int id : ids) {
    FLURRY_CHECK(id >= 0 && id < vocab, "suppressed token " << id << " outside vocab of " << vocab);
    logits[id] = kNegInf;
  }
}

void log_softmax(const float* logits, int n, float* out) {
  float mx = kNegInf;
  for (int i = 0; i < n; ++i) mx = std::max(mx, logits[i]);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const float lse = mx + static_cast<float>(std::log(sum));
  for (int i = 0; i < n; ++i) out[i] = logits[i] - lse;
}

void apply_timestamp_rules(float* logits, int vocab, const int* sampled, int n_sampled,
                           const TimestampRules& rules, std::vector<float>& scratch) {
  const int tb = rules.timestamp_begin;
  FLURRY_CHECK(tb > 0 && tb < vocab && rules.eot >= 0 && rules.eot < tb, "bad timestamp rule ids");
  if (rules.no_timestamps >= 0) logits[rules.no_timestamps] = kNegInf;

  // Pairs: after "text <|t|>" the next token is a timestamp or EOT (a lone one may close the
  // output); after "<|t|><|t|>" (or a leading <|t|>) it must be text.
  const bool last_ts = n_sampled >= 1 && sampled[n_sampled - 1] >= tb;
  const bool penultimate_ts = n_sampled < 2 || sampled[n_sampled - 2] >= tb;
  if (last_ts) {
    if (penultimate_ts) {
      mask_range(logits, tb, vocab);
    } else {
      mask_range(logits, 0, rules.eot);
    }
  }
  // Monotone: forbid timestamps before the last one; when this token would open a new segment,
  // forbid the last value too, so that segments cannot have zero length and loop forever.
  int last_value = -1;
  for (int i = n_sampled - 1; i >= 0; --i) {
    if (sampled[i] >= tb) {
      last_value = sampled[i];
      break;
    }
  }
  if (last_value >= 0) {
    const int limit = (last_ts && !penultimate_ts) ? last_value : last_value + 1;
    mask_range(logits, tb, std::min(limit, vocab));
  }
  if (n_sampled == 0) {
    mask_range(logits, 0, tb);
    if (rules.max_initial_timestamp_index >= 0) {
      mask_range(logits, tb + rules.max_initial_timestamp_index + 1, vocab);
    }
  }

  // Force a timestamp when, together, timestamps are likelier than any single text token.
  scratch.resize(static_cast<size_t>(vocab));
  log_softmax(logits, vocab, scratch.data());
  float ts_max = kNegInf;
  for (int i = tb; i < vocab; ++i) ts_max = std::max(ts_max, scratch[static_cast<size_t>(i)]);
  double ts_logprob = -std::numeric_limits<double>::infinity();
  if (ts_max > kNegInf) {
    double s = 0.0;
    for (int i = tb; i < vocab; ++i) s += std::exp(static_cast<double>(scratch[static_cast<size_t>(i)]) - ts_max);
    ts_logprob = ts_max + std::log(s);
  }
  float text_max = kNegInf;
  for (int i = 0; i < tb; ++i) text_max = std::max(text_max, scratch[static_cast<size_t>(i)]);
  if (ts_logprob > static_cast<double>(text_max)) mask_range(logits, 0, tb);
}

}  // namespace flurry::whisper
