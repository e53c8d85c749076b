// Helpers shared by the log-mel tests: reading the goldens of
// tests/fixtures/audio/make_mel_goldens.py and comparing runtime/ref/logmel's output with one case.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "runtime/check.h"
#include "runtime/ref/audio/logmel.h"
#include "tests/common/test_util.h"

namespace flurry::test {

// The features are compared by relative norm; HF computes its STFT in complex64, we in double
// (measured: ~4e-8; a symmetric instead of periodic Hann window already costs 1.1e-3).
constexpr double kFeatureBound = 1e-4;

inline std::vector<float> read_f32(const std::string& path, size_t count) {
  std::ifstream in(path, std::ios::binary);
  FLURRY_CHECK(in, path << ": cannot open");
  std::vector<float> v(count);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(float)));
  FLURRY_CHECK(in.gcount() == static_cast<std::streamsize>(count * sizeof(float)),
               path << ": expected " << count << " floats");
  return v;
}

inline Json golden_index() { return read_json_file(fixture_path("audio/mel_goldens.json")); }

// Compares log_mel_window on `signal` with one golden case of mel_goldens.json.
inline void check_golden(const Json& c, const std::vector<float>& signal) {
  const std::string name = c.at("name").get<std::string>();
  const int n_mels = c.at("n_mels").get<int>();
  SCOPED_TRACE(name + " n_mels=" + std::to_string(n_mels));
  const Json& sig = c.at("signal");
  ASSERT_EQ(static_cast<int64_t>(signal.size()), sig.at("samples").get<int64_t>());
  double sum = 0, sum_sq = 0;
  for (float v : signal) {
    sum += v;
    sum_sq += static_cast<double>(v) * v;
  }
  // The generator must reproduce the script's signal before the features can be compared.
  ASSERT_NEAR(sum, sig.at("sum").get<double>(), 1e-6 * (1 + std::abs(sum)) + 1e-6);
  ASSERT_NEAR(sum_sq, sig.at("sum_sq").get<double>(), 1e-7 * sum_sq);

  const size_t n_out = static_cast<size_t>(n_mels) * kMelWindowFrames;
  std::vector<float> out(n_out);
  poison(out.data(), out.size() * sizeof(float));
  log_mel_window(signal.data(), static_cast<int64_t>(signal.size()), n_mels, out.data());

  const auto frames = c.at("frames").get<std::vector<int>>();
  std::vector<float> ref = read_f32(fixture_path("audio/" + c.at("file").get<std::string>()),
                                    static_cast<size_t>(n_mels) * frames.size());
  std::vector<float> got(ref.size());
  for (int m = 0; m < n_mels; ++m) {
    for (size_t j = 0; j < frames.size(); ++j) {
      got[m * frames.size() + j] = out[static_cast<size_t>(m) * kMelWindowFrames + frames[j]];
    }
  }
  EXPECT_TRUE(close_in_norm("logmel_" + name + "_" + std::to_string(n_mels), got, ref, kFeatureBound));

  // Whole-output statistics cover the frames not stored.
  double mn = 1e30, mx = -1e30, mean = 0, sq = 0;
  for (float v : out) {
    ASSERT_TRUE(std::isfinite(v));
    mn = std::min(mn, static_cast<double>(v));
    mx = std::max(mx, static_cast<double>(v));
    mean += v;
    sq += static_cast<double>(v) * v;
  }
  mean /= static_cast<double>(n_out);
  const Json& st = c.at("stats");
  EXPECT_NEAR(mx, st.at("max").get<double>(), 1e-4);
  EXPECT_NEAR(mn, st.at("min").get<double>(), 1e-4);
  EXPECT_NEAR(mean, st.at("mean").get<double>(), 1e-5);
  EXPECT_NEAR(sq, st.at("sum_sq").get<double>(), 1e-5 * st.at("sum_sq").get<double>());
}

}  // namespace flurry::test
