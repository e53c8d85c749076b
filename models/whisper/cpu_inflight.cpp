#include "models/whisper/cpu_inflight.h"

#include <chrono>
#include <algorithm>
#include <cstring>
#include <limits>

#include "models/whisper/logit_rules.h"
#include "runtime/check.h"
#include "runtime/ref/audio/logmel.h"

namespace flurry::whisper {

namespace {
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

void inflight_select_top2(float* row, int vocab, int n_sampled, const std::vector<int>& suppress,
                          const std::vector<int>& blank, int eot, int32_t* top2) {
  if (!suppress.empty()) suppress_tokens(row, vocab, suppress);
  if (!blank.empty()) suppress_blank(row, vocab, n_sampled, blank, eot);
  int32_t best = -1, second = -1;
  for (int i = 0; i < vocab; ++i) {
    const float v = row[i];
    if (!(v == v)) continue;  // NaN never wins
    if (best < 0 || v > row[best]) {
      second = best;
      best = i;
    } else if (second < 0 || v > row[second]) {
      second = i;
    }
  }
  top2[0] = best;
  top2[1] = second;
}

CpuInflightBackend::CpuInflightBackend(std::shared_ptr<const WhisperModel> model, int slots, int encoder_batch,
                                       InflightRules rules, bool compact_slots)
    : model_(std::move(model)), enc_batch_(encoder_batch), rules_(std::move(rules)), compact_(compact_slots) {
  FLURRY_CHECK(model_ != nullptr, "CpuInflightBackend: no model");
  FLURRY_CHECK(slots >= 1 && encoder_batch >= 1, "CpuInflightBackend: " << slots << " slots, batch " << encoder_batch);
  for (int i = 0; i < slots; ++i) slots_.push_back(std::make_unique<WhisperState>(*model_));
  const auto& c = model_->config();
  mel_.resize(static_cast<size_t>(c.num_mel_bins) * kMelWindowFrames);
  row_.resize(static_cast<size_t>(c.vocab_size));
  suppress_.assign(rules_.suppress_ids.begin(), rules_.suppress_ids.end());
  blank_.assign(rules_.blank_ids.begin(), rules_.blank_ids.end());
}

int CpuInflightBackend::max_tokens() const { return static_cast<int>(slots_.front()->max_tokens); }
int CpuInflightBackend::vocab() const { return static_cast<int>(model_->config().vocab_size); }

void CpuInflightBackend::admit(const std::vector<const InflightWindow*>& windows, const std::vector<int>& dest,
                               InflightStats& stats) {
  FLURRY_CHECK(windows.size() == dest.size(), "inflight admit: " << windows.size() << " windows, " << dest.size()
                                                                 << " slots");
  const int n_mels = static_cast<int>(model_->config().num_mel_bins);
  for (size_t k = 0; k < windows.size(); ++k) {
    const InflightWindow& w = *windows[k];
    const float* mel = w.mel;
    if (mel == nullptr) {
      const auto t0 = std::chrono::steady_clock::now();
      log_mel_window(w.samples, w.n_samples, n_mels, mel_.data());
      stats.mel_s += since(t0);
      mel = mel_.data();
    }
    const auto t1 = std::chrono::steady_clock::now();
    WhisperState& st = *slots_[static_cast<size_t>(dest[k])];
    encode(*model_, st, mel);  // also resets the slot's decoder
    stats.encoder_s += since(t1);
  }
}

void CpuInflightBackend::move_slot(int from, int to, int pos) {
  FLURRY_CHECK(slots_[static_cast<size_t>(from)]->n_past == pos,
               "inflight move: slot " << from << " holds " << slots_[static_cast<size_t>(from)]->n_past
                                      << " positions, the scheduler says " << pos);
  std::swap(slots_[static_cast<size_t>(from)], slots_[static_cast<size_t>(to)]);
}

void CpuInflightBackend::step(const std::vector<int>& slots, const std::vector<int32_t>& feed,
                              const std::vector<int>& pos, const std::vector<int32_t>& n_sampled,
                              std::vector<int32_t>& top2, InflightStats& stats) {
  const auto t0 = std::chrono::steady_clock::now();
  const int vocab = this->vocab();
  for (size_t i = 0; i < slots.size(); ++i) {
    WhisperState& st = *slots_[static_cast<size_t>(slots[i])];
    FLURRY_CHECK(st.n_past == pos[i], "inflight step: slot " << slots[i] << " holds " << st.n_past
                                                             << " positions, the scheduler says " << pos[i]);
    const float* logits = decoder_step(*model_, st, &feed[i], 1);
    std::memcpy(row_.data(), logits, static_cast<size_t>(vocab) * sizeof(float));
    inflight_select_top2(row_.data(), vocab, n_sampled[i], suppress_, blank_, rules_.eot, &top2[2 * i]);
  }
  stats.decoder_s += since(t0);
}

}  // namespace flurry::whisper

namespace flurry::whisper {

CpuSlotBackend::CpuSlotBackend(std::shared_ptr<const WhisperModel> model, int slots, int audios, int encoder_batch,
                               bool select)
    : model_(std::move(model)), enc_batch_(encoder_batch), select_(select) {
  FLURRY_CHECK(model_ != nullptr, "CpuSlotBackend: no model");
  FLURRY_CHECK(slots >= 1 && audios >= 1 && encoder_batch >= 1,
               "CpuSlotBackend: " << slots << " slots, " << audios << " audios, encoder batch " << encoder_batch);
  // Copies of one state share its scratch and (until encode() gives them their own) its encoding;
  // each owns its self-attention cache.
  const WhisperState proto(*model_);
  for (int i = 0; i < audios; ++i) audios_.push_back(std::make_unique<WhisperState>(proto));
  for (int i = 0; i <= slots; ++i) slots_.push_back(std::make_unique<WhisperState>(proto));
}

int CpuSlotBackend::vocab() const { return static_cast<int>(model_->config().vocab_size); }
int CpuSlotBackend::n_text_ctx() const { return static_cast<int>(model_->config().max_target_positions); }

void CpuSlotBackend::encode(const std::vector<int>& audio, const std::vector<const float*>& mels,
                            InflightStats& stats) {
  FLURRY_CHECK(audio.size() == mels.size() && static_cast<int>(audio.size()) <= enc_batch_,
               "CpuSlotBackend: encode of " << audio.size() << " windows");
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t k = 0; k < audio.size(); ++k) {
    FLURRY_CHECK(audio[k] >= 0 && audio[k] < audios(), "CpuSlotBackend: audio index " << audio[k]);
    flurry::whisper::encode(*model_, *audios_[static_cast<size_t>(audio[k])], mels[k]);
  }
  stats.encoder_s += since(t0);
}

void CpuSlotBackend::forward(const std::vector<SlotCall>& calls, float* last, float* aux_out, InflightStats& stats) {
  const auto t0 = std::chrono::steady_clock::now();
  const size_t vocab = static_cast<size_t>(this->vocab());
  for (size_t i = 0; i < calls.size(); ++i) {
    const SlotCall& c = calls[i];
    FLURRY_CHECK(c.slot >= 0 && c.slot < slots() && c.audio >= 0 && c.audio < audios(),
                 "CpuSlotBackend: call " << i << " on slot " << c.slot << ", audio " << c.audio);
    WhisperState& st = *slots_[static_cast<size_t>(c.slot)];
    if (c.pos == 0) {  // a new sequence on the audio's current window
      const WhisperState& a = *audios_[static_cast<size_t>(c.audio)];
      FLURRY_CHECK(a.encoded, "CpuSlotBackend: slot " << c.slot << " reads audio " << c.audio
                                                      << ", which was not encoded");
      st.enc = a.enc;
      st.encoded = true;
      decoder_reset(st);
    }
    FLURRY_CHECK(st.n_past == c.pos, "CpuSlotBackend: slot " << c.slot << " holds " << st.n_past
                                                             << " positions, the call says " << c.pos);
    std::vector<int32_t> t(c.tokens, c.tokens + c.n_new);
    int done = 0;
    if (c.aux >= 0) {
      FLURRY_CHECK(aux_out != nullptr, "CpuSlotBackend: aux logits wanted without a buffer");
      const float* l = decoder_step(*model_, st, t.data(), c.aux + 1);
      std::memcpy(aux_out + i * vocab, l, vocab * sizeof(float));
      done = c.aux + 1;
    }
    const float* l = st.logits.data();
    if (done < c.n_new) l = decoder_step(*model_, st, t.data() + done, c.n_new - done);
    std::memcpy(last + i * vocab, l, vocab * sizeof(float));
  }
  stats.decoder_s += since(t0);
}

void CpuSlotBackend::forward_select(const std::vector<SlotCall>& calls, float* last, float* aux_out, int32_t* token,
                                    float* logprob, InflightStats& stats) {
  FLURRY_CHECK(select_, "CpuSlotBackend: forward_select with selection off");
  const size_t vocab = static_cast<size_t>(this->vocab());
  rows_.resize(calls.size() * vocab);
  forward(calls, rows_.data(), aux_out, stats);
  for (size_t i = 0; i < calls.size(); ++i) {
    const SlotCall& c = calls[i];
    float* row = rows_.data() + i * vocab;
    if (c.rules == nullptr) {
      std::memcpy(last + i * vocab, row, vocab * sizeof(float));
      continue;
    }
    select_from_row(*c.rules, row, static_cast<int>(vocab), c.sampled, c.n_sampled, c.top_k, c.temperature, c.uniform,
                    token + i * kMaxSelectTopK, logprob + i * kMaxSelectTopK);
  }
}

void CpuSlotBackend::copy_slot(int from, int to, int len) {
  FLURRY_CHECK(from >= 0 && from <= slots() && to >= 0 && to <= slots() && from != to,
               "CpuSlotBackend: copy_slot " << from << " -> " << to);
  const WhisperState& a = *slots_[static_cast<size_t>(from)];
  WhisperState& b = *slots_[static_cast<size_t>(to)];
  FLURRY_CHECK(len >= 0 && len <= a.n_past, "CpuSlotBackend: copy of " << len << " positions from a slot holding "
                                                                       << a.n_past);
  const size_t n = static_cast<size_t>(len) * static_cast<size_t>(a.d_model);
  for (size_t l = 0; l < a.self_k.size(); ++l) {
    std::copy(a.self_k[l].begin(), a.self_k[l].begin() + static_cast<std::ptrdiff_t>(n), b.self_k[l].begin());
    std::copy(a.self_v[l].begin(), a.self_v[l].begin() + static_cast<std::ptrdiff_t>(n), b.self_v[l].begin());
  }
  b.enc = a.enc;
  b.encoded = a.encoded;
  b.n_past = len;
  b.logits = a.logits;
}

}  // namespace flurry::whisper
