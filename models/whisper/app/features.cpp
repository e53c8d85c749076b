#include "models/whisper/app/features.h"

#include <algorithm>
#include <cmath>

#include "io/audio.h"
#include "runtime/check.h"
#include "runtime/ref/audio/logmel.h"

namespace flurry::whisper {

namespace {
constexpr int64_t kBlockFrames = 3000;
// Frames of context before a block: a frame reads 200 samples either side of its centre, so two
// hops (320 samples) keep the block's first frame clear of the sub-signal's own reflect padding.
constexpr int64_t kMarginFrames = 2;
constexpr int64_t kStreamChunk = 16000 * 10;

// The padded-signal sample range a block of frames [f0, f1) needs, given `total` samples.
void block_range(int64_t f0, int64_t f1, int64_t total, int64_t* s0, int64_t* s1) {
  *s0 = std::max<int64_t>(0, (f0 - kMarginFrames) * kMelHop);
  *s1 = std::min(total, (f1 - 1 + kMarginFrames) * kMelHop + kMelNfft / 2 + 1);
}

// Unclamped log10 mel of frames [f0, f1) from samples [s0, s1) of the padded signal (the range
// block_range gives), written [n_mels, f1 - f0] with row stride `ld`. Returns the block's maximum.
double log_mel_block(const float* samples, int64_t s0, int64_t s1, int64_t f0, int64_t f1, int n_mels,
                     const std::vector<float>& filters, std::vector<double>& power, float* out, int64_t ld) {
  const int64_t local_frames = 1 + (s1 - s0) / kMelHop;
  power.resize(static_cast<size_t>(local_frames) * kMelBins);
  stft_power(samples, s1 - s0, power.data());
  const int64_t first_local = (f0 * kMelHop - s0) / kMelHop;
  double block_max = -1e30;
  for (int64_t f = f0; f < f1; ++f) {
    const double* p = power.data() + (first_local + f - f0) * kMelBins;
    for (int m = 0; m < n_mels; ++m) {
      const float* w = filters.data() + static_cast<int64_t>(m) * kMelBins;
      double acc = 0.0;
      for (int k = 0; k < kMelBins; ++k) acc += static_cast<double>(w[k]) * p[k];
      const double l = std::log10(std::max(acc, 1e-10));
      block_max = std::max(block_max, l);
      out[m * ld + (f - f0)] = static_cast<float>(l);
    }
  }
  return block_max;
}

float clamp_scale(float v, float floor_v) { return (std::max(v, floor_v) + 4.0f) / 4.0f; }

}  // namespace

void LogMel::window(int64_t seek, int64_t n, float* out) const {
  const int64_t take = std::max<int64_t>(0, std::min({n, static_cast<int64_t>(kMelWindowFrames), n_frames - seek}));
  for (int m = 0; m < n_mels; ++m) {
    float* dst = out + static_cast<int64_t>(m) * kMelWindowFrames;
    const float* src = data.data() + m * n_frames + seek;
    std::copy(src, src + take, dst);
    std::fill(dst + take, dst + kMelWindowFrames, 0.0f);
  }
}

LogMel log_mel_whole(const float* samples, int64_t n_samples, int n_mels) {
  FLURRY_CHECK(n_samples >= 0 && n_mels > 0, "log-mel of " << n_samples << " samples, " << n_mels << " mels");
  std::vector<float> padded(static_cast<size_t>(n_samples + kMelWindowSamples), 0.0f);
  std::copy(samples, samples + n_samples, padded.begin());
  const int64_t total = static_cast<int64_t>(padded.size());
  LogMel out;
  out.n_mels = n_mels;
  out.n_frames = total / kMelHop;  // the STFT's last frame is dropped, as Whisper does
  out.content_frames = n_samples / kMelHop;
  out.data.assign(static_cast<size_t>(n_mels) * out.n_frames, 0.0f);
  const std::vector<float> filters = mel_filters(n_mels);
  std::vector<double> power;
  double global_max = -1e30;
  for (int64_t f0 = 0; f0 < out.n_frames; f0 += kBlockFrames) {
    const int64_t f1 = std::min(out.n_frames, f0 + kBlockFrames);
    int64_t s0, s1;
    block_range(f0, f1, total, &s0, &s1);
    global_max = std::max(global_max, log_mel_block(padded.data() + s0, s0, s1, f0, f1, n_mels, filters, power,
                                                    out.data.data() + f0, out.n_frames));
  }
  const float floor_v = static_cast<float>(global_max - 8.0);
  for (float& v : out.data) v = clamp_scale(v, floor_v);
  return out;
}

StreamingLogMel::StreamingLogMel(const std::string& path, int n_mels)
    : path_(path), n_mels_(n_mels), filters_(mel_filters(n_mels)) {
  FLURRY_CHECK(n_mels > 0, "n_mels " << n_mels);
  // Pass 1: the length, then the global maximum. The length is counted by streaming rather than
  // trusted from the header, so a file shorter than its header says fails here, not mid-window.
  stream_ = std::make_unique<AudioStream>(path_, kStreamChunk);
  while (stream_->next(chunk_)) n_samples_ += static_cast<int64_t>(chunk_.size());
  n_frames_ = (n_samples_ + kMelWindowSamples) / kMelHop;
  const int64_t total = n_samples_ + kMelWindowSamples;
  stream_ = std::make_unique<AudioStream>(path_, kStreamChunk);
  buf_.clear();
  buf_start_ = 0;
  stream_done_ = false;
  double global_max = -1e30;
  block_.resize(static_cast<size_t>(n_mels_) * kBlockFrames);
  for (int64_t f0 = 0; f0 < n_frames_; f0 += kBlockFrames) {
    const int64_t f1 = std::min(n_frames_, f0 + kBlockFrames);
    int64_t s0, s1;
    block_range(f0, f1, total, &s0, &s1);
    fill(s0, s1);
    global_max = std::max(global_max, log_mel_block(buf_.data() + (s0 - buf_start_), s0, s1, f0, f1, n_mels_,
                                                    filters_, power_, block_.data(), kBlockFrames));
  }
  floor_ = static_cast<float>(global_max - 8.0);
  stream_.reset();  // pass 2 opens a fresh stream on the first window
}

StreamingLogMel::~StreamingLogMel() = default;

void StreamingLogMel::fill(int64_t s0, int64_t s1) {
  if (!stream_ || s0 < buf_start_) {  // first use, or a seek backwards: start over
    stream_ = std::make_unique<AudioStream>(path_, kStreamChunk);
    buf_.clear();
    buf_start_ = 0;
    stream_done_ = false;
  }
  // Drop what no later block needs, then read forward until [s0, s1) is covered (zeros past EOF).
  const int64_t drop = std::min<int64_t>(s0 - buf_start_, static_cast<int64_t>(buf_.size()));
  if (drop > 0) {
    buf_.erase(buf_.begin(), buf_.begin() + drop);
    buf_start_ += drop;
  }
  if (buf_.empty()) buf_start_ = s0;
  while (buf_start_ + static_cast<int64_t>(buf_.size()) < s1) {
    if (!stream_done_ && stream_->next(chunk_)) {
      const int64_t skip = std::max<int64_t>(0, buf_start_ - stream_->position() + static_cast<int64_t>(chunk_.size()));
      if (skip < static_cast<int64_t>(chunk_.size())) buf_.insert(buf_.end(), chunk_.begin() + skip, chunk_.end());
    } else {
      stream_done_ = true;
      buf_.resize(static_cast<size_t>(s1 - buf_start_), 0.0f);
    }
  }
}

void StreamingLogMel::window(int64_t seek, int64_t n, float* out) {
  FLURRY_CHECK(seek >= 0, "negative seek " << seek);
  const int64_t take = std::max<int64_t>(0, std::min({n, static_cast<int64_t>(kMelWindowFrames), n_frames_ - seek}));
  for (int m = 0; m < n_mels_; ++m) {
    std::fill(out + static_cast<int64_t>(m) * kMelWindowFrames, out + (m + 1) * static_cast<int64_t>(kMelWindowFrames),
              0.0f);
  }
  if (take == 0) return;
  int64_t s0, s1;
  block_range(seek, seek + take, n_samples_ + kMelWindowSamples, &s0, &s1);
  fill(s0, s1);
  log_mel_block(buf_.data() + (s0 - buf_start_), s0, s1, seek, seek + take, n_mels_, filters_, power_, out,
                kMelWindowFrames);
  for (int m = 0; m < n_mels_; ++m) {
    float* row = out + static_cast<int64_t>(m) * kMelWindowFrames;
    for (int64_t f = 0; f < take; ++f) row[f] = clamp_scale(row[f], floor_);
  }
}

}  // namespace flurry::whisper
