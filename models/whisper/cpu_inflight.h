// The in-flight scheduler's backend on the CPU reference model: one WhisperState per slot, the
// reference log-mel and encoder for admission, decoder_step for the step, and the rules of
// logit_rules.h for the selection. It is the oracle the GPU backend is held to, the proof of the
// scheduler's bookkeeping without a GPU, and a batched `--device cpu` path.
#pragma once

#include <memory>
#include <vector>

#include "models/whisper/inflight_core.h"
#include "models/whisper/model.h"

namespace flurry::whisper {

class CpuInflightBackend : public InflightBackend {
 public:
  // `compact_slots`: behave as the GPU does (steps over slots 0..n-1, the scheduler compacts), so
  // that compaction runs in CPU tests too.
  CpuInflightBackend(std::shared_ptr<const WhisperModel> model, int slots, int encoder_batch,
                     InflightRules rules, bool compact_slots = true);

  int slots() const override { return static_cast<int>(slots_.size()); }
  int encoder_batch() const override { return enc_batch_; }
  int max_tokens() const override;
  int vocab() const override;
  bool needs_compact_slots() const override { return compact_; }
  void admit(const std::vector<const InflightWindow*>& windows, const std::vector<int>& dest,
             InflightStats& stats) override;
  void move_slot(int from, int to, int pos) override;
  void step(const std::vector<int>& slots, const std::vector<int32_t>& feed, const std::vector<int>& pos,
            const std::vector<int32_t>& n_sampled, std::vector<int32_t>& top2, InflightStats& stats) override;

 private:
  std::shared_ptr<const WhisperModel> model_;
  int enc_batch_;
  InflightRules rules_;
  bool compact_;
  std::vector<std::unique_ptr<WhisperState>> slots_;
  std::vector<float> mel_, row_;
  std::vector<int> suppress_, blank_;
};

// The two best ids of a logits row after SuppressTokens and, when n_sampled == 0, SuppressBlank
// (blank ids and EOT); ties go to the lower id. `row` is modified.
void inflight_select_top2(float* row, int vocab, int n_sampled, const std::vector<int>& suppress,
                          const std::vector<int>& blank, int eot, int32_t* top2);

}  // namespace flurry::whisper
