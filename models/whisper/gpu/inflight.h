// In-flight batching over the GPU Whisper model (whisper_gpu.h's design note, first cut): a pool of
// S decoder slots that never drains while windows are waiting. The slot bookkeeping is
// InflightCore (models/whisper/inflight_core.h, tested on the CPU reference backend); this file is
// its GPU backend and the scheduler type the benchmark and the product use.
//
//   InflightScheduler sched(gpu, options);          // gpu built with inflight_plan(S, E)
//   sched.submit(window);  ...                      // 30 s windows: samples or log-mel + prompt
//   sched.run([](InflightResult&& r) { ... });      // until every window has retired
//
// One scheduler step:
//   1. admit: while a slot is free and a window waits, take up to E waiting windows, run log-mel
//      (LogMelGpu) and the encoder on them as one batch into the staging audio indices [S, S + E),
//      then copy each window's cross K/V (32 layers x 7.68 MB at large-v3) into the free slot it
//      takes. Slot i always reads audio index i, so the live slots form runs that one
//      decode_attention launch covers (self caches by slot, cross K/V by audio index).
//   2. compact (only once the queue is empty): the highest live slot moves into the lowest free one
//      (copy_slot for the self caches, one copy per layer for the cross K/V), so the live slots are
//      always 0..n-1 and the step stays on decoder_forward's single-launch path.
//   3. step: one decoder_forward over the n live slots, every one bringing exactly one token.
//      A new window feeds its prompt one token per step (its first prompt_len - 1 steps give
//      logits nobody reads). That keeps every step uniform (n_new = 1, consecutive slots) at the
//      cost of prompt_len - 1 extra cross-K/V reads per window (3 for the 4-token prompt, ~10% of
//      the reads at the benchmark's 30-token mean). TODO: a prefill call of the admitted windows
//      (n_new = prompt_len, uniform) before the step, once it can run without a second host sync.
//   4. select: logits_select on the device over the step's logits rows with Whisper's
//      no-timestamps greedy rules (SuppressBlank, SuppressTokens), giving the argmax and the top 2;
//      only those ids come back to the host.
//      Forced lengths are host post-processing of that result: while a window has fewer text
//      tokens than its target, the pick is the best id that is not EOT (top-1, or top-2 when top-1
//      is EOT: the top 2 always hold one); at the target the pick is EOT. No device mask is needed
//      and the decoder does exactly the work of a transcription of that length.
//   5. retire: a window that picked EOT (or filled its context) frees its slot at the end of the
//      step and its text tokens go to the callback.
//
// Memory: everything on the device comes from the WhisperGpu's arena (sized at start-up by
// inflight_plan) except the scheduler's few small selection buffers (argmax, top-2, history
// lengths, suppress lists: a few KB, one cudaMalloc each at construction); the host side reserves
// its vectors at construction. Nothing is allocated inside run().
//
// CUDA graphs: not captured. TODO(capture): decoder_forward synchronises the stream inside
// (stage_and_embed waits before refilling its pinned staging, and the call ends with a sync to
// read the kernels' error word) and stages the ids and the sequence index from host memory; the K/V
// append already reads device slots and positions (one kv_append launch per layer). A capturable
// step needs the ids and index updated on the device (whisper_gpu.h's design note), after which the
// step per batch-size bucket can be captured here.
//
// Timing: CUDA events around each stage (log-mel, encoder incl. the cross-K/V moves, decoder step
// incl. selection), summed in InflightStats; stages do not overlap (one stream).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "models/whisper/gpu/whisper_gpu.h"
#include "models/whisper/inflight_core.h"
#include "models/whisper/inflight_decoder.h"

namespace flurry::whisper {

// The plan the scheduler needs: S slots, E windows per encoder batch, S + E audio indices (the last
// E are the encoder's staging), log-mel on the device, decoder rows for one token per slot.
GpuPlan inflight_plan(int slots, int enc_batch);

class InflightScheduler {
 public:
  // `g` must come from inflight_plan (or a plan with max_windows >= max_slots + enc_batch).
  InflightScheduler(WhisperGpu& g, InflightOptions options);
  ~InflightScheduler();
  InflightScheduler(const InflightScheduler&) = delete;
  InflightScheduler& operator=(const InflightScheduler&) = delete;

  // Queues a window (the host buffers must outlive run()).
  void submit(InflightWindow w);
  // Runs until every submitted window has retired; `on_done` is called once per window, in
  // retirement order, from this thread.
  void run(const std::function<void(InflightResult&&)>& on_done);

  const InflightStats& stats() const;
  void reset_stats();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- the product pipeline's backend (models/whisper/inflight_decoder.h) ----------------------
// InflightDecoder over the GPU model: `slots` decoder slots (files in flight x beams), audio
// indices 0..audios-1 (one per file in flight) and enc_batch more as the encoder's staging: a
// batch of windows is encoded into the staging indices as one encoder launch chunk, then each
// window's cross K/V moves to its file's index, so encoder batches are full whatever files ask.
//
// Per step, greedy lanes (temperature 0) get their token chosen on the device and beam-search
// lanes their beams' candidates (forward_select): the step's logits stay in state.logits,
// logits_select (gpu/logits.cuh) applies each lane's SuppressBlank / SuppressTokens / timestamp
// rules, the log-softmax and the argmax or top beam_size + 1 in one launch per run of calls sharing
// a rule set and k, and only (token, logprob) per sequence (k of them for a beam) comes back, plus
// full rows for the calls that want them (language detection, sampling at a fallback temperature)
// and the no-speech auxiliary rows of a window's first call. The rules
// read a sequence's history only through its last two tokens and its latest timestamp, so each
// call uploads a 3-token summary of its history (summarize_history), not the history.
// `device_select` = false keeps every row on the host path (the test's oracle).
//
// Log-mel on the device (encode_samples): each window's samples, with the 200 either side its edge
// frames read, are staged in pinned memory (one buffer of kLogMelContextSamples per encoder-batch
// entry) and uploaded, and LogMelGpu computes the window as features.h's log_mel_whole would cut
// it: reflect padding at the file's start only, silence after its end, the file's floor, zeros past
// the segment. A file's floor needs its peak: the first window of a file (floor NaN) is preceded by
// a peak pass over the file's 30 s tiles (E per launch, peaks only), the host-side mel's one pass
// moved to the device. The plan must have logmel = true (pipeline_plan sets it).
GpuPlan pipeline_plan(int slots, int audios, int enc_batch);

// The most slots (a multiple of `group`, at most `max_slots`) whose pipeline plan, with
// slots / group files in flight, fits in `budget` bytes with the weights; 0 when not even `group`
// does.
int pipeline_slots_for_memory(const WhisperConfig& c, WhisperGpuOptions o, int group, int enc_batch, size_t budget,
                              int max_slots);

class GpuSlotBackend final : public SlotBackend {
 public:
  // `g` must come from pipeline_plan(slots, audios, enc_batch).
  GpuSlotBackend(WhisperGpu& g, int audios, bool device_select = true);
  ~GpuSlotBackend() override;
  int vocab() const override;
  int n_text_ctx() const override;
  int slots() const override;
  int audios() const override { return audios_; }
  int encoder_batch() const override;
  void encode(const std::vector<int>& audio, const std::vector<const float*>& mels, InflightStats& stats) override;
  void forward(const std::vector<SlotCall>& calls, float* last, float* aux_out, InflightStats& stats) override;
  void copy_slot(int from, int to, int len) override;
  int spare_slot() const override;
  bool selects_tokens() const override { return device_select_; }
  bool samples_tokens() const override { return device_select_; }
  bool encodes_samples() const override;
  void encode_samples(const std::vector<int>& audio, const std::vector<const SampleWindow*>& windows,
                      InflightStats& stats) override;
  void forward_select(const std::vector<SlotCall>& calls, float* last, float* aux_out, int32_t* token, float* logprob,
                      InflightStats& stats) override;

 private:
  struct Select;  // device selection buffers and the rule sets uploaded so far
  struct Mel;     // log-mel staging (pinned samples, per-window floors / lengths / frames)
  void build_seqs(const std::vector<SlotCall>& calls, bool any_aux);
  // Encodes the n windows in the state's mel buffer and moves their cross K/V to audio[k].
  void encode_staged(const std::vector<int>& audio);
  // Fills *w.floor for the windows whose file has none yet (peak pass).
  void find_floors(const std::vector<const SampleWindow*>& windows);

  WhisperGpu& g_;
  int audios_;
  bool device_select_;
  std::vector<GpuSeq> seqs_;
  std::unique_ptr<Select> sel_;
  std::unique_ptr<Mel> mel_;
};

// The rules' view of a history of n sampled tokens (logit_rules.h: SuppressBlank and the timestamp
// rules read only n == 0, n < 2, the last two tokens and the latest timestamp): writes at most 3
// tokens to out[0..3) and returns their count, such that the rules over them decide as over the
// whole history. For n > 3: {latest timestamp before the last two, or 0 when none; h[n-2]; h[n-1]}.
int summarize_history(const int* h, int n, int timestamp_begin, int32_t out[3]);

// The host side of encode_samples' log-mel, exposed for the tests.
// Writes the padded signal around frames [seek, seek + 3000) of a file of n samples (x) to out
// (kLogMelContextSamples at most: LogMelArgs::context's layout) and returns how many it wrote; the
// rest reads as silence. The padded signal is the file, then silence; before sample 0 it is
// reflected (numpy "reflect", as the whole-file STFT pads it).
int32_t stage_window_samples(const float* x, int64_t n, int64_t seek, float* out);
// The tiles of a file's peak pass: the whole-file log-mel's peak is its largest frame's; frames that
// read no audio are silence (log10 of the 1e-10 floor = -10), and the file is always padded with
// 3000 of them, so the 3000-frame tiles from 0 while their first frame reads audio cover every
// frame that can matter, and floor = max(-10, their peaks) - 8.
std::vector<int64_t> peak_tiles(int64_t n_samples);
// LogMel::window's frame count: frames past the segment or past the padded signal are zero.
int32_t window_valid_frames(int64_t n_samples, int64_t seek, int64_t n_frames);

}  // namespace flurry::whisper
