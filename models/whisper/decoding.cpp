#include "models/whisper/decoding.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>

#include "models/whisper/text_metrics.h"
#include "runtime/check.h"

namespace flurry::whisper {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Python's v[-n:]: n == 0 keeps everything and a negative n drops the first |n| elements; the
// prompt and prefix truncation rely on that reading.
std::vector<int> py_tail(const std::vector<int>& v, int n) {
  const int size = static_cast<int>(v.size());
  int start = n > 0 ? std::max(size - n, 0) : (n == 0 ? 0 : std::min(-n, size));
  return std::vector<int>(v.begin() + start, v.end());
}

// One decoded sequence of the batch; `tokens` is the whole context including initial tokens.
struct Row {
  int audio = 0;
  std::vector<int> tokens;
  float sum_logprob = 0.0f;  // float32, as openai-whisper accumulates in a float tensor
};

// A finished candidate: tokens up to and including EOT, and its summed log-probability.
struct Candidate {
  std::vector<int> tokens;
  float score = 0.0f;
};

struct AudioState {
  std::vector<int> init;  // initial tokens
  int sample_begin = 0;
  int sot_index = 0;
  std::string language;
  std::vector<std::pair<std::string, float>> language_probs;
  double no_speech_prob = std::numeric_limits<double>::quiet_NaN();
  std::vector<Candidate> finished;  // beam search: insertion order matters for ranking ties
  std::vector<Candidate> final;     // candidates handed to the ranker once the audio is done
  bool done = false;
};

// Adds or overwrites `c` keyed by its tokens, keeping the first insertion position (a dict).
void upsert(std::vector<Candidate>& list, Candidate c) {
  for (auto& e : list) {
    if (e.tokens == c.tokens) {
      e.score = c.score;
      return;
    }
  }
  list.push_back(std::move(c));
}

// Rows in an order sorted by descending score, stable (Python's sorted(..., reverse=True)).
template <typename T, typename Key>
std::vector<size_t> order_desc(const std::vector<T>& v, Key key) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return key(v[a]) > key(v[b]); });
  return idx;
}

void verify_options(const DecodingOptions& o) {
  FLURRY_CHECK(!(o.beam_size > 0 && o.best_of > 0), "beam_size and best_of can't be given together");
  FLURRY_CHECK(!(o.temperature == 0.0f && o.best_of > 0), "best_of with greedy sampling (T=0) is not compatible");
  FLURRY_CHECK(!(o.patience > 0.0f && o.beam_size <= 0), "patience requires beam_size to be given");
  FLURRY_CHECK(!o.length_penalty || (*o.length_penalty >= 0.0 && *o.length_penalty <= 1.0),
               "length_penalty (alpha) should be a value between 0 and 1");
  FLURRY_CHECK(o.beam_size >= 0 && o.best_of >= 0 && o.sample_len >= 0 && o.temperature >= 0.0f &&
                   o.forced_length >= 0,
               "negative decoding option");
}

}  // namespace

void DecoderModel::forward_select(const std::vector<std::vector<int>>&, const SelectQuery&, int*, float*,
                                  const std::vector<int>&, float*) {
  FLURRY_FAIL("this decoder model does not select tokens itself (selects_tokens() is false)");
}

void apply_rule_set(const LogitRuleSet& r, float* logits, int vocab, const int* sampled, int n_sampled,
                    std::vector<float>& scratch) {
  if (r.suppress_blank) suppress_blank(logits, vocab, n_sampled, r.blank_tokens, r.ts.eot);
  if (!r.suppress.empty()) suppress_tokens(logits, vocab, r.suppress);
  if (r.timestamps) apply_timestamp_rules(logits, vocab, sampled, n_sampled, r.ts, scratch);
  apply_forced_length(logits, vocab, n_sampled, r.forced_length, r.ts.eot);
}

void select_from_row(const LogitRuleSet& rules, float* logits, int vocab, const int* sampled, int n_sampled,
                     int top_k, float temperature, double uniform, int32_t* token_out, float* logprob_out) {
  FLURRY_CHECK(top_k >= 0 && top_k <= vocab && (temperature == 0.0f || top_k == 0),
               "select_from_row: top_k " << top_k << " at temperature " << temperature);
  std::vector<float> scratch, lp(static_cast<size_t>(vocab));
  apply_rule_set(rules, logits, vocab, sampled, n_sampled, scratch);
  log_softmax(logits, vocab, lp.data());
  if (top_k == 0) {
    int tok = 0;
    if (temperature > 0.0f) {
      std::vector<double> cdf;
      tok = sample_inverse_cdf(logits, vocab, temperature, uniform, cdf);
    } else {
      tok = static_cast<int>(std::max_element(logits, logits + vocab) - logits);
    }
    token_out[0] = tok;
    logprob_out[0] = lp[static_cast<size_t>(tok)];
    return;
  }
  std::vector<int> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + top_k, idx.end(), [&](int a, int b) {
    const float la = lp[static_cast<size_t>(a)], lb = lp[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  });
  for (int i = 0; i < top_k; ++i) {
    token_out[i] = idx[static_cast<size_t>(i)];
    logprob_out[i] = lp[static_cast<size_t>(idx[static_cast<size_t>(i)])];
  }
}

double TokenSampler::uniform() { FLURRY_FAIL("this sampler does not draw uniforms (draws_uniform() is false)"); }

int sample_inverse_cdf(const float* logits, int vocab, float temperature, double u, std::vector<double>& weights) {
  weights.resize(static_cast<size_t>(vocab));
  float mx = kNegInf;
  for (int i = 0; i < vocab; ++i) mx = std::max(mx, logits[i] / temperature);
  FLURRY_CHECK(mx > kNegInf, "every token is suppressed");
  double total = 0.0;
  for (int i = 0; i < vocab; ++i) {
    total += std::exp(static_cast<double>(logits[i] / temperature) - mx);
    weights[static_cast<size_t>(i)] = total;
  }
  const double target = u * total;
  const auto it = std::upper_bound(weights.begin(), weights.end(), target);
  if (it != weights.end()) return static_cast<int>(it - weights.begin());
  for (int i = vocab - 1; i > 0; --i) {  // target rounded up to total: the last token with mass
    if (weights[static_cast<size_t>(i)] > weights[static_cast<size_t>(i - 1)]) return i;
  }
  return 0;
}

int RandomSampler::sample(const float* logits, int vocab, float temperature) {
  return sample_inverse_cdf(logits, vocab, temperature, uniform(), weights_);
}

std::vector<int> parse_suppress_tokens(const std::string& csv) {
  std::vector<int> out;
  for (const std::string& t : split_fields(csv)) {
    if (t.empty()) continue;
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    FLURRY_CHECK(used == t.size(), "suppress_tokens: '" << t << "' is not an integer");
    out.push_back(v);
  }
  return out;
}

std::vector<int> resolve_suppress_tokens(const SpecialTokens& sp, const std::vector<int>& requested) {
  if (requested.empty()) return {};
  std::vector<int> out;
  const bool defaults = std::find(requested.begin(), requested.end(), -1) != requested.end();
  for (int t : requested) {
    if (t >= 0) out.push_back(t);
  }
  if (defaults) out.insert(out.end(), sp.suppress_tokens.begin(), sp.suppress_tokens.end());
  for (int t : {sp.transcribe, sp.translate, sp.sot, sp.sot_prev, sp.sot_lm, sp.no_speech}) {
    if (t >= 0) out.push_back(t);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<int> initial_tokens(const SpecialTokens& sp, const DecodingOptions& o, const std::string& language,
                                int n_text_ctx, const std::vector<int>& prompt) {
  std::vector<int> tokens = {sp.sot};
  if (sp.multilingual()) {
    tokens.push_back(sp.language_id(language));
    tokens.push_back(o.task == Task::kTranscribe ? sp.transcribe : sp.translate);
  }
  if (o.without_timestamps) tokens.push_back(sp.no_timestamps);
  if (!o.prefix.empty()) {
    const int sample_len = o.sample_len > 0 ? o.sample_len : n_text_ctx / 2;
    const std::vector<int> p = py_tail(o.prefix, n_text_ctx / 2 - sample_len);
    tokens.insert(tokens.end(), p.begin(), p.end());
  }
  if (!prompt.empty()) {
    std::vector<int> with_prompt = {sp.sot_prev};
    const std::vector<int> p = py_tail(prompt, n_text_ctx / 2 - 1);
    with_prompt.insert(with_prompt.end(), p.begin(), p.end());
    with_prompt.insert(with_prompt.end(), tokens.begin(), tokens.end());
    tokens = std::move(with_prompt);
  }
  return tokens;
}

int rank_sequences(const std::vector<int>& lengths, const std::vector<double>& sum_logprobs,
                   const std::optional<double>& length_penalty) {
  FLURRY_CHECK(!lengths.empty() && lengths.size() == sum_logprobs.size(), "nothing to rank");
  int best = 0;
  double best_score = 0.0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    const double len = lengths[i];
    // The reference divides by a zero length and raises; an empty result ranks last here.
    const double penalty = length_penalty ? std::pow((5.0 + len) / 6.0, *length_penalty) : len;
    const double score = penalty == 0.0 ? -std::numeric_limits<double>::infinity() : sum_logprobs[i] / penalty;
    if (i == 0 || score > best_score) {
      best = static_cast<int>(i);
      best_score = score;
    }
  }
  return best;
}

std::vector<LanguageGuess> detect_language(DecoderModel& model, const SpecialTokens& sp, int n_audio) {
  FLURRY_CHECK(sp.multilingual(), "this model doesn't have language tokens so it can't perform lang id");
  const int vocab = model.vocab_size();
  std::vector<int> audio(static_cast<size_t>(n_audio));
  std::iota(audio.begin(), audio.end(), 0);
  model.begin(audio);
  std::vector<float> logits(static_cast<size_t>(n_audio) * static_cast<size_t>(vocab));
  model.forward(std::vector<std::vector<int>>(static_cast<size_t>(n_audio), {sp.sot}), logits.data(), {}, nullptr);

  std::vector<LanguageGuess> out(static_cast<size_t>(n_audio));
  for (int a = 0; a < n_audio; ++a) {
    const float* row = logits.data() + static_cast<size_t>(a) * static_cast<size_t>(vocab);
    float mx = kNegInf;
    for (const auto& [code, id] : sp.languages) mx = std::max(mx, row[id]);
    double total = 0.0;
    for (const auto& [code, id] : sp.languages) total += std::exp(static_cast<double>(row[id]) - mx);
    LanguageGuess& g = out[static_cast<size_t>(a)];
    float best = -1.0f;
    for (const auto& [code, id] : sp.languages) {
      const float p = static_cast<float>(std::exp(static_cast<double>(row[id]) - mx) / total);
      g.probs.emplace_back(code, p);
      if (p > best) {  // first maximum, as argmax and max(probs, key=probs.get)
        best = p;
        g.code = code;
        g.token = id;
      }
    }
  }
  return out;
}

namespace {

// The loop state of one decode() call: rows of the batch (model rows, in order) and per audio.
class DecodeRun {
 public:
  DecodeRun(DecoderModel& model, const SpecialTokens& sp, const DecodingOptions& o, int n_audio,
            const DecodeHooks& hooks);
  std::vector<DecodingResult> run();

 private:
  void setup_audio();
  void filter_row(const Row& row, float* logits);
  void step_greedy(const std::vector<size_t>& rows_of_audio, const float* logits, bool* completed);
  // step_greedy with the model's choices (forward_select): token and log-softmax per row.
  void step_chosen(const std::vector<size_t>& rows_of_audio, const int* chosen, const float* chosen_logprob,
                   bool* completed);
  // With top_ids / top_lps ([rows, beam_size + 1], the model's forward_select), the candidates
  // come from them instead of from the logits rows.
  void step_beam(int audio, const std::vector<size_t>& rows_of_audio, const float* logits, const int* top_ids,
                 const float* top_lps, std::vector<Row>& next, bool* completed);
  void finalize_audio(int audio, const std::vector<size_t>& rows_of_audio);
  DecodingResult result_for(int audio) const;

  DecoderModel& model_;
  const SpecialTokens& sp_;
  const DecodingOptions& o_;
  const DecodeHooks& hooks_;
  int n_audio_, vocab_, n_ctx_, sample_len_, n_group_;
  bool beam_;
  int max_candidates_ = 0;
  std::vector<int> suppress_;
  TimestampRules ts_rules_;
  LogitRuleSet rule_set_;       // the same rules as data, for a model that selects
  bool model_selects_ = false;  // greedy at temperature 0, or beam search, on a model with forward_select()
  int select_k_ = 0;            // the query's top_k: 0 greedy, beam_size + 1 beam search
  std::vector<AudioState> audio_;
  std::vector<Row> rows_;
  std::unique_ptr<RandomSampler> own_sampler_;
  TokenSampler* sampler_ = nullptr;
  std::vector<float> scratch_, logprobs_;
};

DecodeRun::DecodeRun(DecoderModel& model, const SpecialTokens& sp, const DecodingOptions& o, int n_audio,
                     const DecodeHooks& hooks)
    : model_(model), sp_(sp), o_(o), hooks_(hooks), n_audio_(n_audio), vocab_(model.vocab_size()),
      n_ctx_(model.n_text_ctx()), beam_(o.beam_size > 0) {
  verify_options(o);
  FLURRY_CHECK(n_audio > 0, "decode needs at least one audio");
  FLURRY_CHECK(hooks.prompts.empty() || static_cast<int>(hooks.prompts.size()) == n_audio,
               "per-audio prompts: " << hooks.prompts.size() << " for " << n_audio << " audios");
  sp.validate(vocab_);
  sample_len_ = o.sample_len > 0 ? o.sample_len : n_ctx_ / 2;
  FLURRY_CHECK(o.forced_length < sample_len_, "forced length " << o.forced_length << " leaves no step for EOT within "
                                                                 << "sample_len " << sample_len_);
  n_group_ = beam_ ? o.beam_size : (o.best_of > 0 ? o.best_of : 1);
  if (beam_) {
    const double patience = o.patience > 0.0f ? o.patience : 1.0;
    max_candidates_ = static_cast<int>(std::nearbyint(o.beam_size * patience));  // Python round()
    FLURRY_CHECK(max_candidates_ > 0, "invalid beam size " << o.beam_size << " or patience " << o.patience);
  }
  suppress_ = resolve_suppress_tokens(sp, o.suppress_tokens);
  ts_rules_.eot = sp.eot;
  ts_rules_.no_timestamps = sp.no_timestamps;
  ts_rules_.timestamp_begin = sp.timestamp_begin;
  if (o.max_initial_timestamp && *o.max_initial_timestamp != 0.0) {  // 0 reads as unset, as in Python
    ts_rules_.max_initial_timestamp_index = static_cast<int>(std::nearbyint(*o.max_initial_timestamp / kTimePrecision));
  }
  rule_set_.suppress_blank = o.suppress_blank;
  rule_set_.blank_tokens = sp.blank_tokens;
  rule_set_.suppress = suppress_;
  rule_set_.timestamps = !o.without_timestamps;
  rule_set_.ts = ts_rules_;
  rule_set_.forced_length = o.forced_length;
  sampler_ = hooks.sampler;
  if (!sampler_ && !beam_ && o.temperature > 0.0f) {
    own_sampler_ = std::make_unique<RandomSampler>(o.seed);
    sampler_ = own_sampler_.get();
  }
  if (model.selects_tokens()) {
    if (beam_) {
      select_k_ = std::min(o.beam_size + 1, vocab_);
      model_selects_ = select_k_ <= model.max_select_top_k();
    } else if (o.temperature == 0.0f) {
      model_selects_ = true;
    } else {
      // Sampling on the model's side with the sampler's own uniforms, drawn here in the order the
      // host path would draw them (audio by audio, row by row), so the tokens are the host's.
      model_selects_ = sampler_->draws_uniform() && model.samples_tokens();
    }
  }
}

void DecodeRun::setup_audio() {
  audio_.resize(static_cast<size_t>(n_audio_));
  std::vector<LanguageGuess> guesses;
  if (o_.language.empty() && sp_.multilingual()) guesses = detect_language(model_, sp_, n_audio_);
  for (int a = 0; a < n_audio_; ++a) {
    AudioState& st = audio_[static_cast<size_t>(a)];
    if (!guesses.empty()) {
      st.language = guesses[static_cast<size_t>(a)].code;
      st.language_probs = guesses[static_cast<size_t>(a)].probs;
    } else {
      st.language = o_.language.empty() ? "en" : o_.language;  // English-only checkpoints
    }
    const std::vector<int>& prompt = hooks_.prompts.empty() ? o_.prompt : hooks_.prompts[static_cast<size_t>(a)];
    st.init = initial_tokens(sp_, o_, st.language, n_ctx_, prompt);
    st.sample_begin = static_cast<int>(st.init.size());
    st.sot_index = static_cast<int>(std::find(st.init.begin(), st.init.end(), sp_.sot) - st.init.begin());
    for (int g = 0; g < n_group_; ++g) rows_.push_back(Row{a, st.init, 0.0f});
  }
}

void DecodeRun::filter_row(const Row& row, float* logits) {
  const AudioState& st = audio_[static_cast<size_t>(row.audio)];
  const int n_sampled = static_cast<int>(row.tokens.size()) - st.sample_begin;
  apply_rule_set(rule_set_, logits, vocab_, row.tokens.data() + st.sample_begin, n_sampled, scratch_);
}

// GreedyDecoder.update for the rows of one audio: argmax or a draw; finished rows repeat EOT.
void DecodeRun::step_greedy(const std::vector<size_t>& rows_of_audio, const float* logits, bool* completed) {
  *completed = true;
  for (size_t r : rows_of_audio) {
    Row& row = rows_[r];
    const float* x = logits + r * static_cast<size_t>(vocab_);
    int tok = 0;
    if (o_.temperature == 0.0f) {
      tok = static_cast<int>(std::max_element(x, x + vocab_) - x);
    } else {
      tok = sampler_->sample(x, vocab_, o_.temperature);
    }
    logprobs_.resize(static_cast<size_t>(vocab_));
    log_softmax(x, vocab_, logprobs_.data());
    if (row.tokens.back() != sp_.eot) {
      row.sum_logprob += logprobs_[static_cast<size_t>(tok)];
    } else {
      tok = sp_.eot;
    }
    row.tokens.push_back(tok);
    *completed = *completed && tok == sp_.eot;
  }
}

// step_greedy where the model applied the rules and chose (the argmax, or at temperature > 0 its
// draw with our uniform): the same bookkeeping (a finished row repeats EOT and adds nothing).
void DecodeRun::step_chosen(const std::vector<size_t>& rows_of_audio, const int* chosen, const float* chosen_logprob,
                            bool* completed) {
  *completed = true;
  for (size_t r : rows_of_audio) {
    Row& row = rows_[r];
    int tok = chosen[r];
    if (row.tokens.back() != sp_.eot) {
      row.sum_logprob += chosen_logprob[r];
    } else {
      tok = sp_.eot;
    }
    row.tokens.push_back(tok);
    *completed = *completed && tok == sp_.eot;
  }
}

// BeamSearchDecoder.update for one audio: expand each beam by its beam_size + 1 likeliest tokens,
// keep the beam_size best unfinished candidates, collect finished ones up to max_candidates.
void DecodeRun::step_beam(int audio, const std::vector<size_t>& rows_of_audio, const float* logits,
                          const int* top_ids, const float* top_lps, std::vector<Row>& next, bool* completed) {
  struct Cand {
    size_t source;
    int token;
    float score;
  };
  std::vector<Cand> cands;
  auto same_sequence = [&](const Cand& c, size_t source, int token) {
    return c.token == token && rows_[c.source].tokens == rows_[source].tokens;
  };
  const int k = std::min(o_.beam_size + 1, vocab_);
  std::vector<int> idx(static_cast<size_t>(vocab_));
  for (size_t r : rows_of_audio) {
    if (top_ids != nullptr) {
      for (int i = 0; i < k; ++i) {
        const size_t at = r * static_cast<size_t>(k) + static_cast<size_t>(i);
        const int tok = top_ids[at];
        const float score = rows_[r].sum_logprob + top_lps[at];
        auto it = std::find_if(cands.begin(), cands.end(), [&](const Cand& c) { return same_sequence(c, r, tok); });
        if (it != cands.end()) {
          it->score = score;
          it->source = r;
        } else {
          cands.push_back(Cand{r, tok, score});
        }
      }
      continue;
    }
    logprobs_.resize(static_cast<size_t>(vocab_));
    log_softmax(logits + r * static_cast<size_t>(vocab_), vocab_, logprobs_.data());
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
      const float la = logprobs_[static_cast<size_t>(a)], lb = logprobs_[static_cast<size_t>(b)];
      return la > lb || (la == lb && a < b);
    });
    for (int i = 0; i < k; ++i) {
      const int tok = idx[static_cast<size_t>(i)];
      const float score = rows_[r].sum_logprob + logprobs_[static_cast<size_t>(tok)];
      auto it = std::find_if(cands.begin(), cands.end(), [&](const Cand& c) { return same_sequence(c, r, tok); });
      if (it != cands.end()) {
        it->score = score;  // identical prefixes (the first step): the later beam wins, in place
        it->source = r;
      } else {
        cands.push_back(Cand{r, tok, score});
      }
    }
  }
  std::vector<Candidate> newly_finished;
  int saved = 0;
  for (size_t i : order_desc(cands, [](const Cand& c) { return c.score; })) {
    const Cand& c = cands[i];
    std::vector<int> seq = rows_[c.source].tokens;
    seq.push_back(c.token);
    if (c.token == sp_.eot) {
      newly_finished.push_back(Candidate{std::move(seq), c.score});
    } else {
      next.push_back(Row{audio, std::move(seq), c.score});
      next.back().audio = static_cast<int>(c.source);  // parent row, resolved by the caller
      if (++saved == o_.beam_size) break;
    }
  }
  AudioState& st = audio_[static_cast<size_t>(audio)];
  for (auto& f : newly_finished) {
    if (static_cast<int>(st.finished.size()) >= max_candidates_) break;
    upsert(st.finished, std::move(f));
  }
  *completed = static_cast<int>(st.finished.size()) >= max_candidates_;
}

// The candidates the ranker sees once an audio stops: beam search adds its best unfinished
// beams when fewer than beam_size finished; greedy rows are closed with EOT.
void DecodeRun::finalize_audio(int audio, const std::vector<size_t>& rows_of_audio) {
  AudioState& st = audio_[static_cast<size_t>(audio)];
  st.done = true;
  if (!beam_) {
    for (size_t r : rows_of_audio) {
      std::vector<int> t = rows_[r].tokens;
      t.push_back(sp_.eot);
      st.final.push_back(Candidate{std::move(t), rows_[r].sum_logprob});
    }
    return;
  }
  st.final = st.finished;
  if (static_cast<int>(st.final.size()) < o_.beam_size) {
    // np.argsort(...)[::-1]: descending, later index first among equal scores.
    std::vector<size_t> order(rows_of_audio.rbegin(), rows_of_audio.rend());
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return rows_[a].sum_logprob > rows_[b].sum_logprob; });
    for (size_t r : order) {
      std::vector<int> t = rows_[r].tokens;
      t.push_back(sp_.eot);
      upsert(st.final, Candidate{std::move(t), rows_[r].sum_logprob});
      if (static_cast<int>(st.final.size()) >= o_.beam_size) break;
    }
  }
}

DecodingResult DecodeRun::result_for(int audio) const {
  const AudioState& st = audio_[static_cast<size_t>(audio)];
  std::vector<std::vector<int>> seqs;
  std::vector<int> lengths;
  std::vector<double> sums;
  for (const Candidate& c : st.final) {
    const auto begin = c.tokens.begin() + st.sample_begin;
    seqs.emplace_back(begin, std::find(begin, c.tokens.end(), sp_.eot));
    lengths.push_back(static_cast<int>(seqs.back().size()));
    sums.push_back(c.score);
  }
  const int best = rank_sequences(lengths, sums, o_.length_penalty);
  DecodingResult r;
  r.language = st.language;
  r.language_probs = st.language_probs;
  r.tokens = seqs[static_cast<size_t>(best)];
  r.sum_logprob = sums[static_cast<size_t>(best)];
  r.avg_logprob = r.sum_logprob / static_cast<double>(r.tokens.size() + 1);
  r.no_speech_prob = st.no_speech_prob;
  r.temperature = o_.temperature;
  r.compression_ratio = std::numeric_limits<double>::quiet_NaN();
  if (hooks_.detokenize) {
    std::vector<int> text_ids;
    for (int t : r.tokens) {
      if (t < sp_.timestamp_begin) text_ids.push_back(t);
    }
    r.text = strip_whitespace(hooks_.detokenize(text_ids));
    r.compression_ratio = compression_ratio(r.text);
  }
  return r;
}

std::vector<DecodingResult> DecodeRun::run() {
  setup_audio();
  std::vector<int> audio_of_row;
  for (const Row& r : rows_) audio_of_row.push_back(r.audio);
  model_.begin(audio_of_row);
  std::vector<float> logits, aux, chosen_logprob;
  std::vector<int> chosen;
  SelectQuery query;
  query.rules = &rule_set_;
  query.top_k = select_k_;
  const size_t per_row = static_cast<size_t>(std::max(select_k_, 1));
  for (int step = 0; step < sample_len_ && !rows_.empty(); ++step) {
    const size_t n = rows_.size();
    if (model_selects_) {
      chosen.assign(n * per_row, -1);
      chosen_logprob.assign(n * per_row, 0.0f);
    } else {
      logits.resize(n * static_cast<size_t>(vocab_));
    }
    std::vector<std::vector<int>> feed(n);
    std::vector<int> aux_pos;
    for (size_t r = 0; r < n; ++r) {
      feed[r] = step == 0 ? rows_[r].tokens : std::vector<int>{rows_[r].tokens.back()};
      if (step == 0 && sp_.no_speech >= 0) aux_pos.push_back(audio_[static_cast<size_t>(rows_[r].audio)].sot_index);
    }
    if (!aux_pos.empty()) aux.resize(n * static_cast<size_t>(vocab_));
    if (model_selects_) {
      query.sampled.clear();
      query.n_sampled.clear();
      for (const Row& row : rows_) {
        const int begin = audio_[static_cast<size_t>(row.audio)].sample_begin;
        query.sampled.push_back(row.tokens.data() + begin);
        query.n_sampled.push_back(static_cast<int>(row.tokens.size()) - begin);
      }
      if (!beam_ && o_.temperature > 0.0f) {  // the model draws (beam search ignores the temperature)
        // step_greedy's draws: one per row (finished rows too), audio by audio in row order.
        query.temperature = o_.temperature;
        query.uniform.assign(n, 0.0);
        for (int a = 0; a < n_audio_; ++a) {
          if (audio_[static_cast<size_t>(a)].done) continue;
          for (size_t r = 0; r < n; ++r) {
            if (rows_[r].audio == a) query.uniform[r] = sampler_->uniform();
          }
        }
      }
      model_.forward_select(feed, query, chosen.data(), chosen_logprob.data(), aux_pos,
                            aux_pos.empty() ? nullptr : aux.data());
    } else {
      model_.forward(feed, logits.data(), aux_pos, aux_pos.empty() ? nullptr : aux.data());
    }
    if (!aux_pos.empty()) {
      for (size_t r = n; r-- > 0;) {  // the first row of each audio's group
        logprobs_.resize(static_cast<size_t>(vocab_));
        log_softmax(aux.data() + r * static_cast<size_t>(vocab_), vocab_, logprobs_.data());
        audio_[static_cast<size_t>(rows_[r].audio)].no_speech_prob =
            std::exp(static_cast<double>(logprobs_[static_cast<size_t>(sp_.no_speech)]));
      }
    }
    if (!model_selects_) {
      for (size_t r = 0; r < n; ++r) filter_row(rows_[r], logits.data() + r * static_cast<size_t>(vocab_));
    }

    // Each audio advances on its own and leaves the batch once complete (or at the context
    // limit), so an audio decodes the same alone or in a batch.
    std::vector<Row> next;
    std::vector<int> parent;
    for (int a = 0; a < n_audio_; ++a) {
      if (audio_[static_cast<size_t>(a)].done) continue;
      std::vector<size_t> mine;
      for (size_t r = 0; r < n; ++r) {
        if (rows_[r].audio == a) mine.push_back(r);
      }
      bool completed = false;
      std::vector<Row> grown;
      if (beam_) {
        step_beam(a, mine, logits.data(), model_selects_ ? chosen.data() : nullptr,
                  model_selects_ ? chosen_logprob.data() : nullptr, grown, &completed);
        for (Row& g : grown) {
          parent.push_back(g.audio);
          g.audio = a;
        }
      } else if (model_selects_) {
        step_chosen(mine, chosen.data(), chosen_logprob.data(), &completed);
        for (size_t r : mine) {
          grown.push_back(rows_[r]);
          parent.push_back(static_cast<int>(r));
        }
      } else {
        step_greedy(mine, logits.data(), &completed);
        for (size_t r : mine) {
          grown.push_back(rows_[r]);
          parent.push_back(static_cast<int>(r));
        }
      }
      const bool too_long = static_cast<int>(grown.front().tokens.size()) > n_ctx_;
      if (completed || too_long || step + 1 == sample_len_) {
        std::vector<Row> saved_rows = std::move(rows_);
        rows_ = grown;  // finalize reads the rows as they stand after this step
        std::vector<size_t> all(rows_.size());
        std::iota(all.begin(), all.end(), size_t{0});
        finalize_audio(a, all);
        rows_ = std::move(saved_rows);
        parent.resize(parent.size() - grown.size());
        continue;
      }
      next.insert(next.end(), grown.begin(), grown.end());
    }
    std::vector<int> identity(n);
    std::iota(identity.begin(), identity.end(), 0);
    if (!next.empty() && parent != identity) model_.fork(parent);
    rows_ = std::move(next);
  }
  std::vector<DecodingResult> out;
  for (int a = 0; a < n_audio_; ++a) out.push_back(result_for(a));
  return out;
}

}  // namespace

std::vector<DecodingResult> decode(DecoderModel& model, const SpecialTokens& sp, const DecodingOptions& options,
                                   int n_audio, const DecodeHooks& hooks) {
  DecodeRun run(model, sp, options, n_audio, hooks);
  return run.run();
}

}  // namespace flurry::whisper
