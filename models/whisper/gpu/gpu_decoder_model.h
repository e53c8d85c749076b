// DecoderModel over the GPU backend, so that models/whisper/decoding.h (greedy, beam search,
// best-of sampling, temperature fallback, timestamps) and transcribe.h run unchanged on the GPU:
// sequence s of a decode lives in cache slot s; logits come back to the host one row per sequence.
//
// fork() permutes slots on the device, copying only the filled part of each cache, in an order
// that never overwrites a slot before the copies that read it (a cycle goes through the spare slot
// the state reserves). This is the simple, correct driver: the next step is device-side selection
// (models/whisper/gpu/logits.cuh) so only the chosen tokens cross PCIe, and in-flight batching (the design
// note at the end of whisper_gpu.h).
#pragma once

#include <vector>

#include "models/whisper/decoding.h"
#include "models/whisper/gpu/whisper_gpu.h"

namespace flurry::whisper {

class GpuDecoderModel : public DecoderModel {
 public:
  explicit GpuDecoderModel(WhisperGpu& gpu) : g_(gpu) {}

  // Encodes a window's host log-mel ([n_mels, 3000], fp32) as audio `index`.
  void encode_audio(int index, const float* mel);
  // Encodes n windows at once as audios first .. first + n - 1 (n <= the plan's enc_batch).
  void encode_audios(int first, int n, const float* const* mels);

  int vocab_size() const override;
  int n_text_ctx() const override;
  void begin(const std::vector<int>& audio_of_seq) override;
  void forward(const std::vector<std::vector<int>>& tokens, float* last_logits,
               const std::vector<int>& aux_pos, float* aux_logits) override;
  void fork(const std::vector<int>& parent) override;

  int n_seqs() const { return static_cast<int>(audio_.size()); }
  int position(int seq) const { return pos_.at(static_cast<size_t>(seq)); }

 private:
  WhisperGpu& g_;
  std::vector<int> audio_;  // per sequence (= slot)
  std::vector<int> pos_;    // tokens cached per sequence
};

}  // namespace flurry::whisper
