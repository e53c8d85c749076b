#include "models/whisper/inflight_core.h"

#include <algorithm>
#include <utility>

#include "runtime/check.h"

namespace flurry::whisper {

InflightCore::InflightCore(InflightBackend& backend, InflightOptions options)
    : be_(backend), opt_(std::move(options)) {
  S_ = be_.slots();
  E_ = be_.encoder_batch();
  FLURRY_CHECK(S_ >= 1 && E_ >= 1, "inflight: " << S_ << " slots, encoder batch " << E_);
  const int vocab = be_.vocab();
  FLURRY_CHECK(opt_.rules.eot >= 0 && opt_.rules.eot < vocab, "inflight: EOT id " << opt_.rules.eot);
  for (int32_t id : opt_.rules.suppress_ids) {
    FLURRY_CHECK(id >= 0 && id < vocab, "inflight: suppress id " << id << " outside the vocabulary");
  }
  for (int32_t id : opt_.rules.blank_ids) {
    FLURRY_CHECK(id >= 0 && id < vocab, "inflight: blank id " << id << " outside the vocabulary");
  }
  slots_.assign(static_cast<size_t>(S_), Slot{});
  for (Slot& sl : slots_) sl.tokens.reserve(static_cast<size_t>(be_.max_tokens()));
  for (auto* v : {&free_, &live_, &pos_, &dest_}) v->reserve(static_cast<size_t>(S_));
  for (auto* v : {&feed_, &n_sampled_}) v->reserve(static_cast<size_t>(S_));
  top2_.reserve(static_cast<size_t>(2 * S_));
  batch_.reserve(static_cast<size_t>(E_));
}

void InflightCore::submit(InflightWindow w) {
  FLURRY_CHECK(!w.prompt.empty(), "inflight: window " << w.id << " has no prompt");
  FLURRY_CHECK((w.samples != nullptr) != (w.mel != nullptr) || (w.mel == nullptr && w.n_samples == 0),
               "inflight: window " << w.id << " needs exactly one of samples and mel");
  const int ctx = be_.max_tokens();
  FLURRY_CHECK(static_cast<int>(w.prompt.size()) + std::max(w.forced_length, 0) + 1 <= ctx,
               "inflight: window " << w.id << ": prompt " << w.prompt.size() << " + forced " << w.forced_length
                                   << " + EOT exceed the decoder context of " << ctx);
  queue_.push_back(std::move(w));
}

int InflightCore::admit_batch() {
  free_.clear();
  for (int i = 0; i < S_; ++i) {
    if (!slots_[static_cast<size_t>(i)].live) free_.push_back(i);
  }
  if (free_.empty() || queue_.empty()) return 0;
  // One batch holds windows of one kind: log-mel on the device needs samples, uploads need mels.
  const bool from_samples = queue_.front().mel == nullptr;
  const int limit = std::min<int>({E_, static_cast<int>(free_.size()), static_cast<int>(queue_.size())});
  batch_.clear();
  dest_.clear();
  while (static_cast<int>(batch_.size()) < limit &&
         (queue_[batch_.size()].mel == nullptr) == from_samples) {
    dest_.push_back(free_[batch_.size()]);
    batch_.push_back(&queue_[batch_.size()]);
  }
  const int n = static_cast<int>(batch_.size());
  be_.admit(batch_, dest_, stats_);
  for (int k = 0; k < n; ++k) {
    InflightWindow& w = queue_.front();
    Slot& sl = slots_[static_cast<size_t>(dest_[static_cast<size_t>(k)])];
    sl.live = true;
    sl.id = w.id;
    sl.prompt = std::move(w.prompt);
    sl.tokens.clear();
    sl.pos = 0;
    sl.next = 0;
    sl.forced_length = w.forced_length;
    sl.max_new_tokens = w.max_new_tokens;
    queue_.pop_front();
  }
  stats_.windows += n;
  stats_.encoder_batches += 1;
  return n;
}

void InflightCore::compact() {
  int lo = 0, hi = S_ - 1;
  for (;;) {
    while (lo < S_ && slots_[static_cast<size_t>(lo)].live) ++lo;
    while (hi >= 0 && !slots_[static_cast<size_t>(hi)].live) --hi;
    if (lo >= hi) return;
    Slot& from = slots_[static_cast<size_t>(hi)];
    be_.move_slot(hi, lo, from.pos);
    std::swap(slots_[static_cast<size_t>(lo)], from);  // `from` becomes the free one
    from.live = false;
    stats_.slot_moves += 1;
  }
}

int32_t InflightCore::pick(const Slot& sl, const int32_t* top) const {
  const int32_t eot = opt_.rules.eot;
  const int vocab = be_.vocab();
  const auto valid = [&](int32_t id) { return id >= 0 && id < vocab; };
  if (sl.forced_length < 0) return valid(top[0]) ? top[0] : eot;
  if (static_cast<int>(sl.tokens.size()) >= sl.forced_length) return eot;
  const int32_t best = top[0] != eot ? top[0] : top[1];
  return valid(best) && best != eot ? best : 0;  // a NaN row: any text id keeps the length
}

void InflightCore::step(const std::function<void(InflightResult&&)>& on_done) {
  if (be_.needs_compact_slots()) compact();
  live_.clear();
  pos_.clear();
  feed_.clear();
  n_sampled_.clear();
  for (int i = 0; i < S_; ++i) {
    const Slot& sl = slots_[static_cast<size_t>(i)];
    if (!sl.live) continue;
    live_.push_back(i);
    pos_.push_back(sl.pos);
    feed_.push_back(sl.pos < static_cast<int>(sl.prompt.size()) ? sl.prompt[static_cast<size_t>(sl.pos)] : sl.next);
    n_sampled_.push_back(static_cast<int32_t>(sl.tokens.size()));
  }
  if (live_.empty()) return;
  top2_.assign(2 * live_.size(), -1);
  be_.step(live_, feed_, pos_, n_sampled_, top2_, stats_);
  stats_.steps += 1;
  stats_.sequence_steps += static_cast<int64_t>(live_.size());

  const int ctx = be_.max_tokens();
  for (size_t r = 0; r < live_.size(); ++r) {
    Slot& sl = slots_[static_cast<size_t>(live_[r])];
    sl.pos += 1;
    if (sl.pos < static_cast<int>(sl.prompt.size())) continue;  // still feeding the prompt
    const int32_t id = pick(sl, &top2_[2 * r]);
    const bool eot = id == opt_.rules.eot;
    if (!eot) sl.tokens.push_back(id);
    const bool full = sl.pos + 1 > ctx ||
                      (sl.max_new_tokens > 0 && static_cast<int>(sl.tokens.size()) >= sl.max_new_tokens);
    if (!eot && !full) {
      sl.next = id;
      continue;
    }
    InflightResult res;
    res.id = sl.id;
    res.tokens = sl.tokens;
    res.ended_with_eot = eot;
    res.forced_length = sl.forced_length;
    sl.live = false;
    on_done(std::move(res));
  }
}

void InflightCore::run(const std::function<void(InflightResult&&)>& on_done) {
  be_.begin_run();
  const auto is_live = [](const Slot& sl) { return sl.live; };
  for (;;) {
    if (opt_.refill || std::none_of(slots_.begin(), slots_.end(), is_live)) {
      while (admit_batch() > 0) {
      }
    }
    if (std::none_of(slots_.begin(), slots_.end(), is_live)) {
      FLURRY_CHECK(queue_.empty(), "inflight: windows wait but none could be admitted");
      break;
    }
    step(on_done);
  }
  be_.end_run();
}

}  // namespace flurry::whisper
