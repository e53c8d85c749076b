// Whisper log-mel spectrogram, CPU reference. See runtime/ref/audio/logmel.h for the definition.
#include "runtime/ref/audio/logmel.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>

#include "runtime/check.h"

namespace flurry {
namespace {

using cd = std::complex<double>;

constexpr double kPi = 3.14159265358979323846;
constexpr int kPad = kMelNfft / 2;  // center=True: frame t is centered on sample t * hop
constexpr double kMelFloor = 1e-10;
constexpr double kFmax = 8000.0;

// Mixed-radix decimation-in-time FFT for n = 400 = 4 * 4 * 5 * 5 (Cooley-Tukey): X = DFT_p over
// the p interleaved sub-sequences' DFTs, each twiddled by W_n^{rk}. Twiddles come from one table
// of W_400^j = exp(-2 pi i j / 400) computed once in double precision.
class Fft400 {
 public:
  Fft400() {
    for (int j = 0; j < kMelNfft; ++j) {
      double a = -2.0 * kPi * j / kMelNfft;
      tw_[j] = cd(std::cos(a), std::sin(a));
    }
  }

  // out[k] = sum_j in[j] exp(-2 pi i j k / 400), k = 0..399.
  void run(const cd* in, cd* out) const { rec(in, out, kMelNfft, 1, 0); }

 private:
  static constexpr int kFactors[4] = {4, 4, 5, 5};

  // DFT of length n of in[0], in[stride], ...; `level` indexes kFactors.
  void rec(const cd* in, cd* out, int n, int stride, int level) const {
    if (n == 1) {
      out[0] = in[0];
      return;
    }
    const int p = kFactors[level];
    const int m = n / p;
    for (int r = 0; r < p; ++r) rec(in + r * stride, out + r * m, m, stride * p, level + 1);
    const int step = kMelNfft / n;  // W_n^j = W_400^(j * step)
    const int pstep = kMelNfft / p;  // W_p^j = W_400^(j * pstep)
    cd t[5];
    for (int k = 0; k < m; ++k) {
      for (int r = 0; r < p; ++r) t[r] = out[r * m + k] * tw_[(r * k * step) % kMelNfft];
      for (int q = 0; q < p; ++q) {
        cd acc = t[0];
        for (int r = 1; r < p; ++r) acc += t[r] * tw_[((r * q) % p) * pstep];
        out[q * m + k] = acc;
      }
    }
  }

  cd tw_[kMelNfft];
};

const Fft400& fft400() {
  static const Fft400 plan;
  return plan;
}

// Periodic Hann window (torch.hann_window(400), periodic=True): 0.5 - 0.5 cos(2 pi n / N).
const std::vector<double>& hann400() {
  static const std::vector<double> w = [] {
    std::vector<double> v(kMelNfft);
    for (int j = 0; j < kMelNfft; ++j) v[j] = 0.5 - 0.5 * std::cos(2.0 * kPi * j / kMelNfft);
    return v;
  }();
  return w;
}

// Sample i of the reflect-padded signal (numpy pad mode "reflect": the edge sample not repeated),
// i in [0, n + 2 * kPad).
inline double padded_sample(const float* x, int64_t n, int64_t i) {
  int64_t j = i - kPad;
  if (j < 0) j = -j;
  if (j >= n) j = 2 * (n - 1) - j;
  return x[j];
}

// Power spectra of frames [0, n_frames) into power [n_frames, 201].
void stft_power_frames(const float* x, int64_t n, int64_t n_frames, double* power) {
  FLURRY_CHECK(n > kPad, "stft_power: reflect padding of " << kPad << " needs more than " << kPad
                                                           << " samples, got " << n);
  const Fft400& fft = fft400();
  const std::vector<double>& w = hann400();
  cd frame[kMelNfft], spec[kMelNfft];
  for (int64_t t = 0; t < n_frames; ++t) {
    const int64_t start = t * kMelHop;
    for (int j = 0; j < kMelNfft; ++j) frame[j] = cd(w[j] * padded_sample(x, n, start + j), 0.0);
    fft.run(frame, spec);
    double* row = power + t * kMelBins;
    for (int k = 0; k < kMelBins; ++k) row[k] = std::norm(spec[k]);
  }
}

// Filter bank in double, [n_mels, 201] (see mel_filters).
std::vector<double> mel_filters_f64(int n_mels) {
  FLURRY_CHECK(n_mels > 0, "mel_filters: n_mels must be positive, got " << n_mels);
  // n_mels + 2 edges equally spaced on the mel scale from 0 Hz to 8000 Hz, back in Hz.
  const double mel_lo = hz_to_mel_slaney(0.0), mel_hi = hz_to_mel_slaney(kFmax);
  std::vector<double> edge(static_cast<size_t>(n_mels) + 2);
  for (int i = 0; i < n_mels + 2; ++i) {
    edge[i] = mel_to_hz_slaney(mel_lo + (mel_hi - mel_lo) * i / (n_mels + 1));
  }
  std::vector<double> f(static_cast<size_t>(n_mels) * kMelBins, 0.0);
  for (int m = 0; m < n_mels; ++m) {
    // Triangle rising from edge[m] to edge[m+1], falling to edge[m+2]; Slaney normalisation scales
    // it by 2 / (edge[m+2] - edge[m]) so that every filter has the same area.
    const double lo = edge[m], mid = edge[m + 1], hi = edge[m + 2];
    const double enorm = 2.0 / (hi - lo);
    for (int k = 0; k < kMelBins; ++k) {
      const double hz = double{kAudioSampleRate} * k / kMelNfft;  // bin k's frequency, 0..8000 in steps of 40
      const double up = (hz - lo) / (mid - lo);
      const double down = (hi - hz) / (hi - mid);
      f[static_cast<size_t>(m) * kMelBins + k] = std::max(0.0, std::min(up, down)) * enorm;
    }
  }
  return f;
}

// Nonzero span [begin, end) of each filter row, so the projection skips the zeros.
struct MelBank {
  int n_mels = 0;
  std::vector<double> w;
  std::vector<int> begin, end;

  explicit MelBank(int n) : n_mels(n), w(mel_filters_f64(n)), begin(n, 0), end(n, 0) {
    for (int m = 0; m < n; ++m) {
      const double* row = w.data() + static_cast<size_t>(m) * kMelBins;
      int b = 0, e = kMelBins;
      while (b < kMelBins && row[b] == 0.0) ++b;
      while (e > b && row[e - 1] == 0.0) --e;
      begin[m] = b;
      end[m] = e;
    }
  }
};

}  // namespace

double hz_to_mel_slaney(double hz) {
  // Linear part: 3 mels per 200 Hz up to 1000 Hz (= 15 mels); log part: 27 mels per octave-like
  // step of ratio 6.4 above it (Slaney's Auditory Toolbox, as librosa implements it).
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = std::log(6.4) / 27.0;
  if (hz < min_log_hz) return hz / f_sp;
  return min_log_mel + std::log(hz / min_log_hz) / logstep;
}

double mel_to_hz_slaney(double mel) {
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = std::log(6.4) / 27.0;
  if (mel < min_log_mel) return mel * f_sp;
  return min_log_hz * std::exp(logstep * (mel - min_log_mel));
}

std::vector<float> mel_filters(int n_mels) {
  std::vector<double> f = mel_filters_f64(n_mels);
  return std::vector<float>(f.begin(), f.end());
}

void stft_power(const float* samples, int64_t n_samples, double* power) {
  stft_power_frames(samples, n_samples, 1 + n_samples / kMelHop, power);
}

void log_mel_batch(const float* const* samples, const int64_t* n_samples, int batch, int n_mels,
                   float* out) {
  FLURRY_CHECK(batch >= 0, "log_mel_batch: negative batch " << batch);
  FLURRY_CHECK(n_mels > 0, "log_mel: n_mels must be positive, got " << n_mels);
  const MelBank bank(n_mels);
  std::vector<float> x(static_cast<size_t>(kMelWindowSamples));
  std::vector<double> power(static_cast<size_t>(kMelWindowFrames) * kMelBins);
  std::vector<double> logmel(static_cast<size_t>(n_mels) * kMelWindowFrames);
  for (int b = 0; b < batch; ++b) {
    FLURRY_CHECK(n_samples[b] >= 0, "log_mel: negative sample count " << n_samples[b]);
    FLURRY_CHECK(n_samples[b] == 0 || samples[b] != nullptr, "log_mel: null samples");
    // Pad with silence or trim to exactly 30 s, as the feature extractor does before the STFT.
    const int64_t keep = std::min(n_samples[b], kMelWindowSamples);
    std::fill(x.begin(), x.end(), 0.0f);
    if (keep > 0) std::copy(samples[b], samples[b] + keep, x.begin());
    // 480000 samples give 3001 centered frames; Whisper drops the last, so compute 3000.
    stft_power_frames(x.data(), kMelWindowSamples, kMelWindowFrames, power.data());

    double peak = -std::numeric_limits<double>::infinity();
    for (int m = 0; m < n_mels; ++m) {
      const double* wrow = bank.w.data() + static_cast<size_t>(m) * kMelBins;
      double* lrow = logmel.data() + static_cast<size_t>(m) * kMelWindowFrames;
      for (int t = 0; t < kMelWindowFrames; ++t) {
        const double* prow = power.data() + static_cast<size_t>(t) * kMelBins;
        double acc = 0.0;
        for (int k = bank.begin[m]; k < bank.end[m]; ++k) acc += wrow[k] * prow[k];
        lrow[t] = std::log10(std::max(acc, kMelFloor));
        peak = std::max(peak, lrow[t]);
      }
    }
    // Dynamic range of 80 dB (8 decades of power) below the window's peak, then scale to ~[-1, 1].
    const double floor = peak - 8.0;
    float* o = out + static_cast<size_t>(b) * n_mels * kMelWindowFrames;
    for (size_t i = 0; i < logmel.size(); ++i) {
      o[i] = static_cast<float>((std::max(logmel[i], floor) + 4.0) / 4.0);
    }
  }
}

void log_mel_window(const float* samples, int64_t n_samples, int n_mels, float* out) {
  log_mel_batch(&samples, &n_samples, 1, n_mels, out);
}

}  // namespace flurry
