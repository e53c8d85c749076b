// Whisper log-mel reference (runtime/ref/logmel) against a direct DFT, Hugging Face's filter banks
// and WhisperFeatureExtractor output on synthetic signals (goldens from
// tests/fixtures/audio/make_mel_goldens.py). Needs nothing outside the repository; the checks that
// need outside data are in data_test.cpp, so their skips cannot hide these.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "runtime/check.h"
#include "runtime/ref/audio/logmel.h"
#include "tests/audio/mel_golden.h"
#include "tests/audio/mel_signals.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

constexpr double kPi = 3.14159265358979323846;
using test::check_golden;
using test::golden_index;

// Direct O(n^2) DFT power of frame t of the reflect-padded signal, built independently of the FFT.
std::vector<double> direct_power(const std::vector<float>& x, int64_t t) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<double> padded;
  for (int64_t i = 200; i >= 1; --i) padded.push_back(x[static_cast<size_t>(i)]);
  padded.insert(padded.end(), x.begin(), x.end());
  for (int64_t i = n - 2; i >= n - 201; --i) padded.push_back(x[static_cast<size_t>(i)]);
  std::vector<double> p(kMelBins);
  for (int k = 0; k < kMelBins; ++k) {
    double re = 0, im = 0;
    for (int j = 0; j < kMelNfft; ++j) {
      const double w = 0.5 - 0.5 * std::cos(2.0 * kPi * j / kMelNfft);
      const double v = w * padded[static_cast<size_t>(t * kMelHop + j)];
      const double a = -2.0 * kPi * static_cast<double>((static_cast<int64_t>(j) * k) % kMelNfft) / kMelNfft;
      re += v * std::cos(a);
      im += v * std::sin(a);
    }
    p[k] = re * re + im * im;
  }
  return p;
}

TEST(LogMel, FftMatchesDirectDft) {
  auto rng = test::test_rng("logmel_fft");
  for (int64_t n : {201, 1000, 4003}) {
    std::vector<float> x = test::random_vector(static_cast<size_t>(n), rng);
    const int64_t frames = 1 + n / kMelHop;
    std::vector<double> power(static_cast<size_t>(frames) * kMelBins,
                              std::numeric_limits<double>::quiet_NaN());
    stft_power(x.data(), n, power.data());
    for (int64_t t : {int64_t{0}, frames / 2, frames - 1}) {
      std::vector<double> ref = direct_power(x, t);
      std::vector<float> got(power.begin() + t * kMelBins, power.begin() + (t + 1) * kMelBins);
      std::vector<float> want(ref.begin(), ref.end());
      EXPECT_TRUE(test::close_in_norm("stft_n" + std::to_string(n) + "_t" + std::to_string(t), got,
                                      want, 1e-6));
    }
  }
  std::vector<float> tiny(200, 0.5f);
  std::vector<double> out(2 * kMelBins);
  EXPECT_THROW(stft_power(tiny.data(), 200, out.data()), Error);
}

TEST(LogMel, SlaneyScaleRoundTrips) {
  EXPECT_DOUBLE_EQ(hz_to_mel_slaney(1000.0), 15.0);  // the linear/log knee
  EXPECT_DOUBLE_EQ(hz_to_mel_slaney(200.0), 3.0);
  EXPECT_NEAR(hz_to_mel_slaney(6400.0), 15.0 + 27.0, 1e-12);  // 27 mels per factor 6.4
  for (double hz : {0.0, 40.0, 999.0, 1000.0, 2500.0, 8000.0}) {
    EXPECT_NEAR(mel_to_hz_slaney(hz_to_mel_slaney(hz)), hz, 1e-9 * (1 + hz));
  }
}

TEST(LogMel, FiltersMatchHuggingFace) {
  const std::string path = test::fixture_path("audio/mel_filters_hf.json");
  Json doc = read_json_file(path);
  for (int n_mels : {80, 128}) {
    const Json& rows = doc.at("banks").at(std::to_string(n_mels));
    ASSERT_EQ(rows.size(), static_cast<size_t>(n_mels));
    std::vector<float> ref(static_cast<size_t>(n_mels) * kMelBins, 0.0f);
    for (int m = 0; m < n_mels; ++m) {
      const int start = rows[m].at("start").get<int>();
      const auto w = rows[m].at("weights").get<std::vector<double>>();
      for (size_t i = 0; i < w.size(); ++i) ref[static_cast<size_t>(m) * kMelBins + start + i] = static_cast<float>(w[i]);
    }
    std::vector<float> got = mel_filters(n_mels);
    EXPECT_TRUE(test::close_in_norm("mel_filters_hf_" + std::to_string(n_mels), got, ref, 1e-6));
    EXPECT_TRUE(test::close_elementwise("mel_filters_hf_elem_" + std::to_string(n_mels), got.data(),
                                        ref.data(), got.size(), 1e-9, 1e-5));
  }
}

TEST(LogMel, MatchesHuggingFaceOnSyntheticSignals) {
  const Json idx = golden_index();
  const std::vector<float> chirp3 = test::chirp_signal(3.0, 1);   // padded to 30 s
  const std::vector<float> chirp31 = test::chirp_signal(31.0, 2);  // trimmed to 30 s
  int checked = 0;
  for (const Json& c : idx.at("cases")) {
    const std::string name = c.at("name").get<std::string>();
    if (name == "chirp3s") check_golden(c, chirp3);
    if (name == "chirp31s") check_golden(c, chirp31);
    checked += name == "chirp3s" || name == "chirp31s";
  }
  EXPECT_EQ(checked, 4);  // both signals at 80 and 128 mels
}

TEST(LogMel, PureToneLightsTheNearestFilter) {
  // A 1000 Hz tone must peak in the filter whose centre (edge m+1) is closest to 1000 Hz.
  const int n_mels = 80;
  std::vector<float> x(kMelWindowSamples);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * static_cast<float>(std::sin(2 * kPi * 1000.0 * i / 16000.0));
  std::vector<float> out(static_cast<size_t>(n_mels) * kMelWindowFrames);
  log_mel_window(x.data(), static_cast<int64_t>(x.size()), n_mels, out.data());
  const double lo = hz_to_mel_slaney(0), hi = hz_to_mel_slaney(8000);
  int best = 0;
  double best_d = 1e30;
  for (int m = 0; m < n_mels; ++m) {
    double d = std::abs(mel_to_hz_slaney(lo + (hi - lo) * (m + 1) / (n_mels + 1)) - 1000.0);
    if (d < best_d) best_d = d, best = m;
  }
  const int t = 1500;
  int argmax = 0;
  for (int m = 1; m < n_mels; ++m) {
    if (out[m * kMelWindowFrames + t] > out[argmax * kMelWindowFrames + t]) argmax = m;
  }
  EXPECT_EQ(argmax, best);
}

TEST(LogMel, SilenceIsTheFloor) {
  // All-zero power: log10(1e-10) = -10 everywhere, max - 8 = -18 does not bind, (-10 + 4) / 4.
  std::vector<float> out(80 * kMelWindowFrames);
  test::poison(out.data(), out.size() * sizeof(float));
  log_mel_window(nullptr, 0, 80, out.data());
  for (float v : out) ASSERT_FLOAT_EQ(v, -1.5f);
}

TEST(LogMel, BatchEqualsSingle) {
  auto rng = test::test_rng("logmel_batch");
  std::vector<std::vector<float>> sig = {test::random_vector(7, rng), test::random_vector(48000, rng),
                                         test::random_vector(kMelWindowSamples + 333, rng)};
  const int n_mels = 128;
  const size_t per = static_cast<size_t>(n_mels) * kMelWindowFrames;
  std::vector<const float*> ptrs;
  std::vector<int64_t> lens;
  for (auto& s : sig) ptrs.push_back(s.data()), lens.push_back(static_cast<int64_t>(s.size()));
  std::vector<float> batch(per * sig.size());
  test::poison(batch.data(), batch.size() * sizeof(float));
  log_mel_batch(ptrs.data(), lens.data(), static_cast<int>(sig.size()), n_mels, batch.data());
  for (size_t b = 0; b < sig.size(); ++b) {
    std::vector<float> one(per);
    log_mel_window(sig[b].data(), lens[b], n_mels, one.data());
    EXPECT_EQ(std::memcmp(one.data(), batch.data() + b * per, per * sizeof(float)), 0) << "window " << b;
  }
}

}  // namespace
}  // namespace flurry
