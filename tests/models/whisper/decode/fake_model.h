// Test scaffolding: the fake Whisper of tests/fixtures/whisper_decode/fake_whisper.py in C++,
// with bit-identical logits, so decoding here can be compared with openai-whisper's decoding of
// the same fake. Unlike the Python side (which recomputes from the whole prefix), this model keeps
// per-sequence state like a KV cache, so a wrong fork() changes the results.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/whisper/decoding.h"

namespace flurry::whisper::test {

namespace fake {
constexpr int kText = 100, kEot = 100, kSot = 101, kLang0 = 102, kTranslate = 107, kTranscribe = 108;
constexpr int kSotLm = 109, kSotPrev = 110, kNoSpeech = 111, kNoTimestamps = 112, kTsBegin = 113;
constexpr int kNumTs = 1501, kVocab = kTsBegin + kNumTs, kBlank = 0;
}  // namespace fake

uint64_t mix64(uint64_t x);
uint64_t fake_audio_key(int64_t x0, int64_t x1);
SpecialTokens fake_special_tokens();
std::string fake_detokenize(const std::vector<int>& ids);

class FakeWhisperModel : public DecoderModel {
 public:
  // Audio i of the batch is named by two integers, as the fake encoder output in Python.
  void set_audio(int index, int64_t x0, int64_t x1);
  int vocab_size() const override { return fake::kVocab; }
  int n_text_ctx() const override { return 448; }
  void begin(const std::vector<int>& audio_of_seq) override;
  void forward(const std::vector<std::vector<int>>& tokens, float* last_logits, const std::vector<int>& aux_pos,
               float* aux_logits) override;
  void fork(const std::vector<int>& parent) override;

  int forks = 0;       // fork() calls that changed the order, for tests to see beam search used it
  int positions = 0;   // tokens fed in total

 private:
  struct State {
    uint64_t key = 0, h = 0;
    int since_sot = 0, last_ts = -1;
  };
  void logits_for(const State& st, float* out) const;
  std::vector<uint64_t> audio_keys_;
  std::vector<State> seqs_;
};

// fake_whisper.HashSampler: the k-th draw inverts the CDF at a hash of k.
class HashSampler : public TokenSampler {
 public:
  int sample(const float* logits, int vocab, float temperature) override;

 private:
  uint64_t k_ = 0;
  std::vector<double> cum_;
};

}  // namespace flurry::whisper::test
