// The in-flight scheduler's backend on the CPU reference model: one WhisperState per slot, the
// reference log-mel and encoder for admission, decoder_step for the step, and the rules of
// logit_rules.h for the selection. It is the oracle the GPU backend is held to, the proof of the
// scheduler's bookkeeping without a GPU, and a batched `--device cpu` path.
#pragma once

#include <memory>
#include <vector>

#include "models/whisper/inflight_core.h"
#include "models/whisper/inflight_decoder.h"
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

// InflightDecoder's backend on the CPU reference model: a WhisperState per audio index and per
// slot (plus the spare). Slot states share the scratch (one engine thread) and read their audio's
// encoding by pointer; each call runs the reference decoder_step with the token chunks
// CpuDecoderModel uses (up to the aux position, then the rest), so a sequence's logits are bit for
// bit those of the one-file-at-a-time reference, whatever else is in the batch.
//
// With `select` it also answers forward_select (greedy, beam candidates and sampling, by
// select_from_row on each row), as the GPU backend does on the device: the CPU proof of the lanes'
// and InflightDecoder's selection plumbing. The product's CPU path leaves it off (rows to the lanes).
class CpuSlotBackend : public SlotBackend {
 public:
  CpuSlotBackend(std::shared_ptr<const WhisperModel> model, int slots, int audios, int encoder_batch,
                 bool select = false);

  int vocab() const override;
  int n_text_ctx() const override;
  int slots() const override { return static_cast<int>(slots_.size()) - 1; }
  int audios() const override { return static_cast<int>(audios_.size()); }
  int encoder_batch() const override { return enc_batch_; }
  void encode(const std::vector<int>& audio, const std::vector<const float*>& mels, InflightStats& stats) override;
  void forward(const std::vector<SlotCall>& calls, float* last, float* aux_out, InflightStats& stats) override;
  void copy_slot(int from, int to, int len) override;
  int spare_slot() const override { return slots(); }
  bool selects_tokens() const override { return select_; }
  bool samples_tokens() const override { return select_; }
  void forward_select(const std::vector<SlotCall>& calls, float* last, float* aux_out, int32_t* token, float* logprob,
                      InflightStats& stats) override;

 private:
  std::shared_ptr<const WhisperModel> model_;
  int enc_batch_;
  bool select_ = false;
  std::vector<float> rows_;
  std::vector<std::unique_ptr<WhisperState>> audios_, slots_;
};

// The two best ids of a logits row after SuppressTokens and, when n_sampled == 0, SuppressBlank
// (blank ids and EOT); ties go to the lower id. `row` is modified.
void inflight_select_top2(float* row, int vocab, int n_sampled, const std::vector<int>& suppress,
                          const std::vector<int>& blank, int eot, int32_t* top2);

}  // namespace flurry::whisper
