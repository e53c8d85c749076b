// DecoderModel over the CPU reference model: one WhisperState per decoding sequence, each a copy
// of the encoded window's state it reads (encoder output, cross-attention K/V) plus its own
// self-attention cache. Plain and memory-hungry at large sizes; it is the oracle and the
// `--device cpu` path, not the fast one.
#pragma once

#include <memory>
#include <vector>

#include "models/whisper/decoding.h"
#include "models/whisper/model.h"

namespace flurry::whisper {

class CpuDecoderModel : public DecoderModel {
 public:
  explicit CpuDecoderModel(std::shared_ptr<const WhisperModel> model);

  // Encodes a window's log-mel ([n_mels, 3000]) as audio `index` (0-based; grows the set).
  void encode_audio(int index, const float* mel);

  int vocab_size() const override;
  int n_text_ctx() const override;
  void begin(const std::vector<int>& audio_of_seq) override;
  void forward(const std::vector<std::vector<int>>& tokens, float* last_logits,
               const std::vector<int>& aux_pos, float* aux_logits) override;
  void fork(const std::vector<int>& parent) override;

 private:
  std::shared_ptr<const WhisperModel> model_;
  std::vector<std::unique_ptr<WhisperState>> audio_;  // encoded windows
  std::vector<std::unique_ptr<WhisperState>> seqs_;   // decoding sequences
};

}  // namespace flurry::whisper
