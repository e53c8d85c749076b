#include "models/whisper/inflight_decoder.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>

#include "runtime/check.h"

namespace flurry::whisper {

void SlotBackend::forward_select(const std::vector<SlotCall>&, float*, float*, int32_t*, float*, InflightStats&) {
  FLURRY_FAIL("inflight decoder: this backend does not select tokens (selects_tokens() is false)");
}

void SlotBackend::encode_samples(const std::vector<int>&, const std::vector<const SampleWindow*>&, InflightStats&) {
  FLURRY_FAIL("inflight decoder: this backend does not compute log-mel (encodes_samples() is false)");
}

InflightDecoder::InflightDecoder(SlotBackend& backend, int lanes) : be_(backend) {
  FLURRY_CHECK(lanes >= 1, "inflight decoder: " << lanes << " lanes");
  FLURRY_CHECK(be_.slots() >= lanes, "inflight decoder: " << lanes << " files in flight need at least as many "
                                                           << "decoder slots; the backend has " << be_.slots());
  FLURRY_CHECK(be_.audios() >= lanes, "inflight decoder: " << lanes << " files in flight need as many audio "
                                                            << "indices; the backend has " << be_.audios());
  FLURRY_CHECK(be_.encoder_batch() >= 1, "inflight decoder: encoder batch " << be_.encoder_batch());
  group_ = be_.slots() / lanes;
  for (int k = 0; k < lanes; ++k) lanes_.push_back(std::make_unique<Lane>(*this, k));
  calls_.reserve(static_cast<size_t>(be_.slots()));
}

InflightDecoder::~InflightDecoder() = default;

void InflightDecoder::close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_engine_.notify_all();
}

void InflightDecoder::reopen() {
  std::lock_guard<std::mutex> lock(mu_);
  FLURRY_CHECK(joined_ == 0 && !failure_, "inflight decoder: reopen with lanes joined or after a failure");
  closed_ = false;
}

void InflightDecoder::post(Lane& lane) {
  std::unique_lock<std::mutex> lock(mu_);
  if (failure_) std::rethrow_exception(failure_);
  FLURRY_CHECK(lane.joined_, "inflight decoder: lane " << lane.index_ << " used without join()");
  lane.done_ = false;
  if (lane.kind_ == Kind::kFork) {
    ++cheap_;
  } else {
    ++heavy_;
  }
  cv_engine_.notify_all();
  cv_lanes_.wait(lock, [&] { return lane.done_ || failure_ != nullptr; });
  lane.kind_ = Kind::kNone;
  if (!lane.done_) std::rethrow_exception(failure_);
}

void InflightDecoder::serve() {
  std::unique_lock<std::mutex> lock(mu_);
  try {
    for (;;) {
      cv_engine_.wait(lock, [&] {
        return cheap_ > 0 || (joined_ > 0 && heavy_ == joined_) || (closed_ && joined_ == 0);
      });
      if (cheap_ > 0) {
        serve_cheap();
      } else if (joined_ > 0 && heavy_ == joined_) {
        serve_batch(lock);
      } else {
        break;
      }
    }
  } catch (...) {
    if (!lock.owns_lock()) lock.lock();
    failure_ = std::current_exception();
    cv_lanes_.notify_all();
    throw;
  }
}

void InflightDecoder::serve_cheap() {
  for (auto& lp : lanes_) {
    Lane& lane = *lp;
    if (lane.kind_ != Kind::kFork || lane.done_) continue;
    run_fork(lane);
    lane.done_ = true;
    --cheap_;
  }
  cv_lanes_.notify_all();
}

// Beam reordering inside one lane: new sequence i continues old sequence parent[i]. Copies run in an
// order that never overwrites a slot before the copies reading it; a cycle goes through the spare.
void InflightDecoder::run_fork(Lane& lane) {
  const std::vector<int>& parent = *lane.parent_;
  const int n_new = static_cast<int>(parent.size());
  const int n_old = static_cast<int>(lane.pos_.size());
  FLURRY_CHECK(n_new <= group_, "inflight decoder: fork to " << n_new << " sequences; a lane has " << group_
                                                             << " slots");
  for (int p : parent) FLURRY_CHECK(p >= 0 && p < n_old, "inflight decoder: fork from sequence " << p);
  const int base = lane.index_ * group_;
  const int spare = group_;  // local index of the backend's spare slot
  const auto global = [&](int local) { return local == spare ? be_.spare_slot() : base + local; };
  std::vector<int> src(parent), len(static_cast<size_t>(n_new));
  for (int i = 0; i < n_new; ++i) len[static_cast<size_t>(i)] = lane.pos_[static_cast<size_t>(parent[i])];
  std::vector<int> readers(static_cast<size_t>(spare + 1), 0);
  std::vector<bool> pending(static_cast<size_t>(n_new), false);
  int left = 0;
  for (int i = 0; i < n_new; ++i) {
    if (src[static_cast<size_t>(i)] != i) {
      pending[static_cast<size_t>(i)] = true;
      ++readers[static_cast<size_t>(src[static_cast<size_t>(i)])];
      ++left;
    }
  }
  while (left > 0) {
    bool progressed = false;
    for (int i = 0; i < n_new; ++i) {
      if (!pending[static_cast<size_t>(i)] || readers[static_cast<size_t>(i)] > 0) continue;
      be_.copy_slot(global(src[static_cast<size_t>(i)]), global(i), len[static_cast<size_t>(i)]);
      pending[static_cast<size_t>(i)] = false;
      --readers[static_cast<size_t>(src[static_cast<size_t>(i)])];
      --left;
      progressed = true;
    }
    if (progressed) continue;
    int v = 0;  // only cycles remain: park one slot in the spare and redirect its readers there
    while (!pending[static_cast<size_t>(v)]) ++v;
    be_.copy_slot(global(v), global(spare), lane.pos_[static_cast<size_t>(v)]);
    for (int i = 0; i < n_new; ++i) {
      if (pending[static_cast<size_t>(i)] && src[static_cast<size_t>(i)] == v) {
        src[static_cast<size_t>(i)] = spare;
        --readers[static_cast<size_t>(v)];
        ++readers[static_cast<size_t>(spare)];
      }
    }
  }
  std::vector<int> pos(static_cast<size_t>(n_new));
  for (int i = 0; i < n_new; ++i) pos[static_cast<size_t>(i)] = lane.pos_[static_cast<size_t>(parent[i])];
  lane.pos_ = std::move(pos);
  stats_.slot_moves += 1;
}

// Every joined lane has posted an encode or a decoder call: run the encodes as encoder batches,
// then all decoder calls as one batched forward. The lanes stay blocked, so their requests' buffers
// are stable while the lock is released for the arithmetic.
void InflightDecoder::serve_batch(std::unique_lock<std::mutex>& lock) {
  std::vector<Lane*> enc, fwd;
  for (auto& lp : lanes_) {
    if (lp->done_) continue;
    if (lp->kind_ == Kind::kEncode) enc.push_back(lp.get());
    if (lp->kind_ == Kind::kForward) fwd.push_back(lp.get());
  }
  lock.unlock();
  const size_t E = static_cast<size_t>(be_.encoder_batch());
  std::vector<Lane*> enc_mel, enc_samples;
  for (Lane* l : enc) (l->window_ != nullptr ? enc_samples : enc_mel).push_back(l);
  for (size_t b = 0; b < enc_mel.size(); b += E) {
    std::vector<int> audio;
    std::vector<const float*> mels;
    for (size_t k = b; k < std::min(enc_mel.size(), b + E); ++k) {
      audio.push_back(enc_mel[k]->index_);
      mels.push_back(enc_mel[k]->mel_);
    }
    be_.encode(audio, mels, stats_);
    stats_.windows += static_cast<int64_t>(audio.size());
    stats_.encoder_batches += 1;
  }
  for (size_t b = 0; b < enc_samples.size(); b += E) {
    std::vector<int> audio;
    std::vector<const SampleWindow*> windows;
    for (size_t k = b; k < std::min(enc_samples.size(), b + E); ++k) {
      audio.push_back(enc_samples[k]->index_);
      windows.push_back(enc_samples[k]->window_);
    }
    be_.encode_samples(audio, windows, stats_);
    stats_.windows += static_cast<int64_t>(audio.size());
    stats_.encoder_batches += 1;
  }
  if (!fwd.empty()) {
    calls_.clear();
    bool any_aux = false, any_select = false;
    for (Lane* l : fwd) {
      const auto& tokens = *l->tokens_;
      const auto& aux_pos = *l->aux_pos_;
      FLURRY_CHECK(tokens.size() == l->pos_.size(), "inflight decoder: forward got tokens for "
                                                        << tokens.size() << " sequences, " << l->pos_.size()
                                                        << " are running");
      FLURRY_CHECK(aux_pos.empty() || aux_pos.size() == tokens.size(), "inflight decoder: aux_pos size");
      for (size_t s = 0; s < tokens.size(); ++s) {
        SlotCall c;
        c.slot = l->index_ * group_ + static_cast<int>(s);
        c.audio = l->index_;
        c.pos = l->pos_[s];
        c.tokens = tokens[s].data();
        c.n_new = static_cast<int>(tokens[s].size());
        c.aux = aux_pos.empty() ? -1 : aux_pos[s];
        if (l->query_ != nullptr) {
          const SelectQuery& q = *l->query_;
          FLURRY_CHECK(q.rules != nullptr && q.sampled.size() == tokens.size() && q.n_sampled.size() == tokens.size(),
                       "inflight decoder: selection query does not match the " << tokens.size() << " sequences");
          FLURRY_CHECK(q.top_k >= 0 && q.top_k <= kMaxSelectTopK, "inflight decoder: top_k " << q.top_k);
          c.rules = q.rules;
          c.top_k = q.top_k;
          c.sampled = q.sampled[s];
          c.n_sampled = q.n_sampled[s];
          if (q.temperature > 0.0f) {
            FLURRY_CHECK(be_.samples_tokens() && q.top_k == 0 && q.uniform.size() == tokens.size(),
                         "inflight decoder: a sampling query needs a sampling backend, top_k 0 and one uniform "
                         "per sequence");
            c.temperature = q.temperature;
            c.uniform = q.uniform[s];
          }
          FLURRY_CHECK(c.n_sampled >= 0 && (c.n_sampled == 0 || c.sampled != nullptr),
                       "inflight decoder: sequence " << s << " has a bad token history");
          any_select = true;
        }
        FLURRY_CHECK(c.n_new >= 1, "inflight decoder: forward with no tokens for sequence " << s);
        FLURRY_CHECK(c.aux < c.n_new, "inflight decoder: aux position " << c.aux << " past the " << c.n_new
                                                                         << " tokens given");
        any_aux = any_aux || c.aux >= 0;
        calls_.push_back(c);
      }
    }
    const size_t vocab = static_cast<size_t>(be_.vocab());
    last_.resize(calls_.size() * vocab);
    if (any_aux) aux_.resize(calls_.size() * vocab);
    if (any_select) {
      chosen_.assign(calls_.size() * kMaxSelectTopK, -1);
      chosen_logprob_.assign(calls_.size() * kMaxSelectTopK, 0.0f);
      be_.forward_select(calls_, last_.data(), any_aux ? aux_.data() : nullptr, chosen_.data(), chosen_logprob_.data(),
                         stats_);
    } else {
      be_.forward(calls_, last_.data(), any_aux ? aux_.data() : nullptr, stats_);
    }
    stats_.steps += 1;
    stats_.sequence_steps += static_cast<int64_t>(calls_.size());
    size_t row = 0;
    for (Lane* l : fwd) {
      const auto& tokens = *l->tokens_;
      for (size_t s = 0; s < tokens.size(); ++s, ++row) {
        if (calls_[row].rules != nullptr) {
          const size_t k = static_cast<size_t>(std::max(calls_[row].top_k, 1));
          std::copy_n(chosen_.begin() + static_cast<std::ptrdiff_t>(row * kMaxSelectTopK), k, l->token_out_ + s * k);
          std::copy_n(chosen_logprob_.begin() + static_cast<std::ptrdiff_t>(row * kMaxSelectTopK), k,
                      l->logprob_out_ + s * k);
          stats_.rows_selected += 1;
          if (calls_[row].temperature > 0.0f) stats_.rows_sampled += 1;
        } else {
          std::memcpy(l->last_ + s * vocab, last_.data() + row * vocab, vocab * sizeof(float));
        }
        if (calls_[row].aux >= 0) std::memcpy(l->aux_ + s * vocab, aux_.data() + row * vocab, vocab * sizeof(float));
        l->pos_[s] += static_cast<int>(tokens[s].size());
      }
    }
  }
  lock.lock();
  for (Lane* l : enc) l->done_ = true;
  for (Lane* l : fwd) l->done_ = true;
  heavy_ -= static_cast<int>(enc.size() + fwd.size());
  cv_lanes_.notify_all();
}

InflightDecoder::Lane::Lane(InflightDecoder& owner, int index)
    : o_(owner), index_(index), vocab_(owner.be_.vocab()), n_ctx_(owner.be_.n_text_ctx()) {}

int InflightDecoder::Lane::vocab_size() const { return vocab_; }
int InflightDecoder::Lane::n_text_ctx() const { return n_ctx_; }

void InflightDecoder::Lane::join() {
  std::lock_guard<std::mutex> lock(o_.mu_);
  if (o_.failure_) std::rethrow_exception(o_.failure_);
  FLURRY_CHECK(!o_.closed_, "inflight decoder: lane " << index_ << " joined after close()");
  FLURRY_CHECK(!joined_, "inflight decoder: lane " << index_ << " joined twice");
  joined_ = true;
  pos_.clear();
  ++o_.joined_;
}

void InflightDecoder::Lane::leave() {
  std::lock_guard<std::mutex> lock(o_.mu_);
  if (!joined_) return;
  joined_ = false;
  --o_.joined_;
  o_.cv_engine_.notify_all();  // the lanes left may now all be waiting
}

void InflightDecoder::Lane::encode_audio(const float* mel) {
  kind_ = Kind::kEncode;
  mel_ = mel;
  window_ = nullptr;
  o_.post(*this);
}

bool InflightDecoder::Lane::encodes_samples() const { return o_.be_.encodes_samples(); }

void InflightDecoder::Lane::encode_samples(const SampleWindow& w) {
  FLURRY_CHECK(o_.be_.encodes_samples(), "inflight decoder: encode_samples on a backend without log-mel");
  kind_ = Kind::kEncode;
  mel_ = nullptr;
  window_ = &w;
  o_.post(*this);
  window_ = nullptr;
}

void InflightDecoder::Lane::begin(const std::vector<int>& audio_of_seq) {
  FLURRY_CHECK(static_cast<int>(audio_of_seq.size()) <= o_.group_,
               "inflight decoder: " << audio_of_seq.size() << " sequences for a lane of " << o_.group_
                                    << " slots (raise --batch-size or lower --beam_size / --best_of)");
  for (int a : audio_of_seq) {
    FLURRY_CHECK(a == 0, "inflight decoder: a lane decodes one window (audio 0), not audio " << a);
  }
  pos_.assign(audio_of_seq.size(), 0);  // slots restart from position 0 on the lane's window
}

void InflightDecoder::Lane::forward(const std::vector<std::vector<int>>& tokens, float* last_logits,
                                    const std::vector<int>& aux_pos, float* aux_logits) {
  kind_ = Kind::kForward;
  tokens_ = &tokens;
  aux_pos_ = &aux_pos;
  last_ = last_logits;
  aux_ = aux_logits;
  query_ = nullptr;
  o_.post(*this);
}

bool InflightDecoder::Lane::selects_tokens() const { return o_.be_.selects_tokens(); }
bool InflightDecoder::Lane::samples_tokens() const { return o_.be_.selects_tokens() && o_.be_.samples_tokens(); }
int InflightDecoder::Lane::max_select_top_k() const { return o_.be_.selects_tokens() ? kMaxSelectTopK : 0; }

void InflightDecoder::Lane::forward_select(const std::vector<std::vector<int>>& tokens, const SelectQuery& q,
                                           int* token_out, float* logprob_out, const std::vector<int>& aux_pos,
                                           float* aux_logits) {
  FLURRY_CHECK(o_.be_.selects_tokens(), "inflight decoder: forward_select on a backend that does not select");
  kind_ = Kind::kForward;
  tokens_ = &tokens;
  aux_pos_ = &aux_pos;
  last_ = nullptr;
  aux_ = aux_logits;
  query_ = &q;
  token_out_ = token_out;
  logprob_out_ = logprob_out;
  o_.post(*this);
  query_ = nullptr;
}

void InflightDecoder::Lane::fork(const std::vector<int>& parent) {
  kind_ = Kind::kFork;
  parent_ = &parent;
  o_.post(*this);
}

}  // namespace flurry::whisper
