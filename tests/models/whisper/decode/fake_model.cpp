#include "tests/models/whisper/decode/fake_model.h"

#include <algorithm>
#include <cmath>

#include "runtime/check.h"

namespace flurry::whisper::test {

uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fake_audio_key(int64_t x0, int64_t x1) {
  return mix64(mix64(static_cast<uint64_t>(x0) + 0x1234u) ^ (static_cast<uint64_t>(x1) * 0x9E3779B97F4A7C15ull));
}

SpecialTokens fake_special_tokens() {
  SpecialTokens sp;
  sp.sot = fake::kSot;
  sp.eot = fake::kEot;
  sp.transcribe = fake::kTranscribe;
  sp.translate = fake::kTranslate;
  sp.sot_lm = fake::kSotLm;
  sp.sot_prev = fake::kSotPrev;
  sp.no_speech = fake::kNoSpeech;
  sp.no_timestamps = fake::kNoTimestamps;
  sp.timestamp_begin = fake::kTsBegin;
  const char* codes[] = {"en", "de", "fr", "es", "ja"};
  for (int i = 0; i < 5; ++i) sp.languages.emplace_back(codes[i], fake::kLang0 + i);
  sp.suppress_tokens = {1, 2, 3, 4, 7};
  sp.blank_tokens = {fake::kBlank};
  return sp;
}

std::string fake_detokenize(const std::vector<int>& ids) {
  std::string s;
  for (int t : ids) {
    if (t < fake::kText) {
      s += t == fake::kBlank ? std::string(" ") : " w" + std::to_string(t);
    } else if (t < fake::kTsBegin) {
      s += "<|special" + std::to_string(t) + "|>";
    }
  }
  return s;
}

void FakeWhisperModel::set_audio(int index, int64_t x0, int64_t x1) {
  if (static_cast<int>(audio_keys_.size()) <= index) audio_keys_.resize(static_cast<size_t>(index) + 1);
  audio_keys_[static_cast<size_t>(index)] = fake_audio_key(x0, x1);
}

void FakeWhisperModel::begin(const std::vector<int>& audio_of_seq) {
  seqs_.clear();
  for (int a : audio_of_seq) {
    FLURRY_CHECK(a >= 0 && a < static_cast<int>(audio_keys_.size()), "no audio " << a);
    State st;
    st.key = audio_keys_[static_cast<size_t>(a)];
    st.h = mix64(st.key);
    seqs_.push_back(st);
  }
}

void FakeWhisperModel::logits_for(const State& st, float* out) const {
  using namespace fake;
  const uint64_t h = st.h;
  std::vector<double> x(kVocab);
  for (int v = 0; v < kVocab; ++v) {
    const uint64_t u = mix64(h ^ (static_cast<uint64_t>(v) * 0x9E3779B97F4A7C15ull)) >> 40;
    x[static_cast<size_t>(v)] = static_cast<double>(u) / static_cast<double>(1 << 22) - 2.0 - (v >= kTsBegin ? 3.0 : 0.0);
  }
  const int t1 = st.key % 7 == 0 ? 42 : static_cast<int>(mix64(h ^ 0x1111) % kText);
  const int t2 = static_cast<int>(mix64(h ^ 0x2222) % kText);
  x[static_cast<size_t>(t1)] += 6.0;
  x[static_cast<size_t>(t2)] += 4.5;
  if (mix64(h ^ 0x3333) % 4 == 0) {
    const int ts = std::max(st.last_ts, 0) + 1 + static_cast<int>(mix64(h ^ 0x4444) % 40);
    x[static_cast<size_t>(kTsBegin + std::min(ts, kNumTs - 1))] += 9.0;
  }
  x[kEot] += -4.0 + 0.25 * st.since_sot;
  x[kNoSpeech] += static_cast<double>(mix64(st.key ^ 0x5555) % 12);
  if (st.since_sot == 0) x[static_cast<size_t>(kLang0 + static_cast<int>(mix64(st.key ^ 0x6666) % 5))] += 5.0;
  for (int v = 0; v < kVocab; ++v) out[v] = static_cast<float>(x[static_cast<size_t>(v)]);
}

void FakeWhisperModel::forward(const std::vector<std::vector<int>>& tokens, float* last_logits,
                               const std::vector<int>& aux_pos, float* aux_logits) {
  FLURRY_CHECK(tokens.size() == seqs_.size(), "forward: " << tokens.size() << " rows for " << seqs_.size() << " sequences");
  FLURRY_CHECK(aux_pos.empty() || aux_pos.size() == seqs_.size(), "aux_pos size");
  for (size_t s = 0; s < seqs_.size(); ++s) {
    FLURRY_CHECK(!tokens[s].empty(), "forward with no token for sequence " << s);
    for (size_t p = 0; p < tokens[s].size(); ++p) {
      State& st = seqs_[s];
      const int tok = tokens[s][p];
      FLURRY_CHECK(tok >= 0 && tok < fake::kVocab, "token " << tok << " outside the vocabulary");
      st.h = mix64(st.h ^ ((static_cast<uint64_t>(tok) + 1) * 0xD1B54A32D192ED03ull));
      st.since_sot = tok == fake::kSot ? 0 : st.since_sot + 1;
      if (tok >= fake::kTsBegin) st.last_ts = tok - fake::kTsBegin;
      ++positions;
      if (!aux_pos.empty() && static_cast<int>(p) == aux_pos[s]) logits_for(st, aux_logits + s * fake::kVocab);
    }
    logits_for(seqs_[s], last_logits + s * fake::kVocab);
  }
}

void FakeWhisperModel::fork(const std::vector<int>& parent) {
  std::vector<State> next;
  for (int p : parent) {
    FLURRY_CHECK(p >= 0 && p < static_cast<int>(seqs_.size()), "fork from missing sequence " << p);
    next.push_back(seqs_[static_cast<size_t>(p)]);
  }
  seqs_ = std::move(next);
  ++forks;
}

int HashSampler::sample(const float* logits, int vocab, float temperature) {
  cum_.resize(static_cast<size_t>(vocab));
  double mx = -INFINITY;
  for (int i = 0; i < vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i] / temperature));
  double c = 0.0;
  for (int i = 0; i < vocab; ++i) {
    c += std::exp(static_cast<double>(logits[i] / temperature) - mx);
    cum_[static_cast<size_t>(i)] = c;
  }
  const double u = static_cast<double>(mix64(k_++ + 0xC0FFEEull) >> 11) / 9007199254740992.0;
  const auto it = std::upper_bound(cum_.begin(), cum_.end(), u * c);
  if (it != cum_.end()) return static_cast<int>(it - cum_.begin());
  for (int i = vocab - 1; i > 0; --i) {
    if (cum_[static_cast<size_t>(i)] > cum_[static_cast<size_t>(i - 1)]) return i;
  }
  return 0;
}

}  // namespace flurry::whisper::test
