#include "models/whisper/app/features.h"

#include <algorithm>
#include <cmath>

#include "runtime/check.h"
#include "runtime/ref/logmel.h"

namespace flurry::whisper {

namespace {
constexpr int64_t kBlockFrames = 3000;
// Frames of context before a block: a frame reads 200 samples either side of its centre, so two
// hops (320 samples) keep the block's first frame clear of the sub-signal's own reflect padding.
constexpr int64_t kMarginFrames = 2;
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
    const int64_t s0 = std::max<int64_t>(0, (f0 - kMarginFrames) * kMelHop);
    const int64_t s1 = std::min(total, (f1 - 1 + kMarginFrames) * kMelHop + kMelNfft / 2 + 1);
    const int64_t local_frames = 1 + (s1 - s0) / kMelHop;
    power.resize(static_cast<size_t>(local_frames) * kMelBins);
    stft_power(padded.data() + s0, s1 - s0, power.data());
    const int64_t first_local = (f0 * kMelHop - s0) / kMelHop;
    for (int64_t f = f0; f < f1; ++f) {
      const double* p = power.data() + (first_local + f - f0) * kMelBins;
      for (int m = 0; m < n_mels; ++m) {
        const float* w = filters.data() + static_cast<int64_t>(m) * kMelBins;
        double acc = 0.0;
        for (int k = 0; k < kMelBins; ++k) acc += static_cast<double>(w[k]) * p[k];
        const double l = std::log10(std::max(acc, 1e-10));
        global_max = std::max(global_max, l);
        out.data[static_cast<size_t>(m) * out.n_frames + f] = static_cast<float>(l);
      }
    }
  }
  const float floor_v = static_cast<float>(global_max - 8.0);
  for (float& v : out.data) v = (std::max(v, floor_v) + 4.0f) / 4.0f;
  return out;
}

}  // namespace flurry::whisper
