#include "models/whisper/app/cpu_decoder.h"

#include <algorithm>
#include <cstring>

#include "runtime/check.h"

namespace flurry::whisper {

CpuDecoderModel::CpuDecoderModel(std::shared_ptr<const WhisperModel> model) : model_(std::move(model)) {}

int CpuDecoderModel::vocab_size() const { return static_cast<int>(model_->config().vocab_size); }
int CpuDecoderModel::n_text_ctx() const { return static_cast<int>(model_->config().max_target_positions); }

void CpuDecoderModel::encode_audio(int index, const float* mel) {
  FLURRY_CHECK(index >= 0, "audio index " << index);
  if (static_cast<size_t>(index) >= audio_.size()) audio_.resize(index + 1);
  if (!audio_[index]) audio_[index] = std::make_unique<WhisperState>(*model_);
  encode(*model_, *audio_[index], mel);
}

void CpuDecoderModel::begin(const std::vector<int>& audio_of_seq) {
  seqs_.clear();
  for (int a : audio_of_seq) {
    FLURRY_CHECK(a >= 0 && static_cast<size_t>(a) < audio_.size() && audio_[a],
                 "sequence reads audio " << a << ", which was not encoded");
    auto st = std::make_unique<WhisperState>(*audio_[a]);
    decoder_reset(*st);
    seqs_.push_back(std::move(st));
  }
}

void CpuDecoderModel::forward(const std::vector<std::vector<int>>& tokens, float* last_logits,
                              const std::vector<int>& aux_pos, float* aux_logits) {
  FLURRY_CHECK(tokens.size() == seqs_.size(),
               "forward got tokens for " << tokens.size() << " sequences, " << seqs_.size() << " are running");
  const size_t vocab = static_cast<size_t>(vocab_size());
  for (size_t s = 0; s < seqs_.size(); ++s) {
    const std::vector<int32_t> t(tokens[s].begin(), tokens[s].end());
    FLURRY_CHECK(!t.empty(), "forward with no tokens for sequence " << s);
    size_t done = 0;
    if (!aux_pos.empty()) {
      // Run up to and including the auxiliary position first, to read its logits on the way.
      const size_t a = static_cast<size_t>(aux_pos[s]);
      FLURRY_CHECK(a < t.size(), "aux position " << a << " past the " << t.size() << " tokens given");
      const float* l = decoder_step(*model_, *seqs_[s], t.data(), static_cast<int64_t>(a + 1));
      std::memcpy(aux_logits + s * vocab, l, vocab * sizeof(float));
      done = a + 1;
    }
    const float* l = seqs_[s]->logits.data();
    if (done < t.size()) {
      l = decoder_step(*model_, *seqs_[s], t.data() + done, static_cast<int64_t>(t.size() - done));
    }
    std::memcpy(last_logits + s * vocab, l, vocab * sizeof(float));
  }
}

void CpuDecoderModel::fork(const std::vector<int>& parent) {
  std::vector<std::unique_ptr<WhisperState>> next;
  next.reserve(parent.size());
  for (int p : parent) {
    FLURRY_CHECK(p >= 0 && static_cast<size_t>(p) < seqs_.size(), "fork from sequence " << p);
    next.push_back(std::make_unique<WhisperState>(*seqs_[p]));
  }
  seqs_ = std::move(next);
}

}  // namespace flurry::whisper
