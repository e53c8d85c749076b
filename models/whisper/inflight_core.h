// In-flight batching for Whisper: the scheduling logic, apart from any device. A pool of S decoder
// slots never drains while windows wait; a backend does the arithmetic (the GPU model in
// models/whisper/gpu/inflight.h, the CPU reference in models/whisper/cpu_inflight.h), so the same
// slot bookkeeping runs, and is tested, on both.
//
// One step of InflightCore::run():
//   1. admit (every step with refill; only when every slot is free without): while a slot is free
//      and windows wait, hand up to E waiting windows of one kind (samples or log-mel) to the
//      backend as one encoder batch, each bound for a free slot.
//   2. compact (the backend asks for it: the GPU's decoder step covers slots 0..n-1 in one launch):
//      the highest live slot moves into the lowest free one until the live slots are 0..n-1.
//   3. step: the backend runs one decoder position for every live slot (a new window feeds its
//      prompt one token per step) and applies the selection rules (SuppressBlank, SuppressTokens)
//      to give each row's two best ids.
//   4. pick: greedy takes the best id; a forced length takes the best non-EOT id until the window
//      has that many text tokens, then EOT (the top 2 always hold a non-EOT id).
//   5. retire: a window that picked EOT, reached max_new_tokens or filled its context frees its
//      slot, and its tokens go to the callback.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

namespace flurry::whisper {

// One 30 s window to transcribe. Exactly one of samples / mel is set.
struct InflightWindow {
  int64_t id = 0;                  // caller's tag, returned in the result
  const float* samples = nullptr;  // 16 kHz mono fp32, host; the first 480000 are used
  int64_t n_samples = 0;
  const float* mel = nullptr;      // or host log-mel [n_mels, 3000] fp32, channel-major
  std::vector<int32_t> prompt;     // e.g. SOT, language, task, no-timestamps (>= 1 token)
  int forced_length = -1;          // text tokens before EOT; -1: greedy until EOT
  int max_new_tokens = 0;          // 0: until the slot's context is full
};

struct InflightResult {
  int64_t id = 0;
  std::vector<int32_t> tokens;  // text tokens, EOT not included
  bool ended_with_eot = false;  // false: stopped by max_new_tokens or the context
  int forced_length = -1;
};

// The no-timestamps greedy rules the selection applies (ids of the checkpoint's tokenizer).
struct InflightRules {
  int eot = -1;
  std::vector<int32_t> suppress_ids;  // SuppressTokens
  std::vector<int32_t> blank_ids;     // SuppressBlank (with EOT, at the first sampled position); empty: off
};

struct InflightOptions {
  InflightRules rules;
  // true: a freed slot takes a waiting window at the next step (in-flight batching). false: static
  // batches: windows are admitted only when every slot is free, so a batch's sequences share their
  // positions and the batch shrinks as sequences retire; for comparison and as a fallback.
  bool refill = true;
};

struct InflightStats {
  int64_t steps = 0;           // decoder steps
  int64_t sequence_steps = 0;  // sum over steps of the live slots (prompt feeding included)
  int64_t windows = 0;         // windows encoded
  int64_t encoder_batches = 0;
  int64_t slot_moves = 0;      // compactions
  int64_t rows_selected = 0;   // sequence steps whose token the backend chose (no logits row to the host)
  int64_t rows_sampled = 0;    // of those, drawn at a temperature > 0 (with the lane's uniforms)
  double mel_s = 0, encoder_s = 0, decoder_s = 0;  // backend-measured stage times
};

// What the scheduler needs from a model.
class InflightBackend {
 public:
  virtual ~InflightBackend() = default;
  virtual int slots() const = 0;          // S
  virtual int encoder_batch() const = 0;  // E
  virtual int max_tokens() const = 0;     // decoder context of a slot
  virtual int vocab() const = 0;
  // True when a step must cover slots 0..n-1 (the scheduler then compacts the live slots).
  virtual bool needs_compact_slots() const = 0;
  virtual void begin_run() {}
  virtual void end_run() {}
  // Encodes `windows` (all with samples, or all with mel) as one batch; window k's encoding goes to
  // slot dest[k], whose self cache starts empty.
  virtual void admit(const std::vector<const InflightWindow*>& windows, const std::vector<int>& dest,
                     InflightStats& stats) = 0;
  // Slot `from` (its self cache, `pos` positions, and its encoding) becomes slot `to`.
  virtual void move_slot(int from, int to, int pos) = 0;
  // One decoder position for each slot in `slots` (feed[i] at position pos[i]), then the rules
  // with n_sampled[i] tokens sampled so far; top2[2i], top2[2i+1]: row i's two best ids.
  virtual void step(const std::vector<int>& slots, const std::vector<int32_t>& feed, const std::vector<int>& pos,
                    const std::vector<int32_t>& n_sampled, std::vector<int32_t>& top2, InflightStats& stats) = 0;
};

class InflightCore {
 public:
  InflightCore(InflightBackend& backend, InflightOptions options);

  // Queues a window (its host buffers must outlive run()). Throws for a window that cannot fit.
  void submit(InflightWindow w);
  // Runs until every submitted window has retired; `on_done` is called once per window, in
  // retirement order, from this thread.
  void run(const std::function<void(InflightResult&&)>& on_done);

  const InflightOptions& options() const { return opt_; }
  const InflightStats& stats() const { return stats_; }
  void reset_stats() { stats_ = InflightStats{}; }

 private:
  struct Slot {
    bool live = false;
    int64_t id = 0;
    std::vector<int32_t> prompt;
    std::vector<int32_t> tokens;  // text tokens picked so far
    int pos = 0;                  // tokens in the slot's self cache
    int32_t next = 0;             // the token the next step feeds once the prompt is in
    int forced_length = -1;
    int max_new_tokens = 0;
  };
  int admit_batch();
  void compact();
  int32_t pick(const Slot& sl, const int32_t* top) const;
  void step(const std::function<void(InflightResult&&)>& on_done);

  InflightBackend& be_;
  InflightOptions opt_;
  InflightStats stats_;
  int S_ = 0, E_ = 0;
  std::deque<InflightWindow> queue_;
  std::vector<Slot> slots_;
  // Scratch reserved once.
  std::vector<int> free_, live_, pos_;
  std::vector<int32_t> feed_, n_sampled_, top2_;
  std::vector<const InflightWindow*> batch_;
  std::vector<int> dest_;
};

}  // namespace flurry::whisper
