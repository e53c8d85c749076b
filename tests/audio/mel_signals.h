// The deterministic test signals of tests/fixtures/audio/make_mel_goldens.py, reproduced in C++:
// a chirp with amplitude modulation plus splitmix64 noise, computed in double and rounded to fp32.
// The golden JSON stores each signal's sum and sum of squares to catch a mismatch here.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace flurry::test {

inline uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// See chirp_signal() in make_mel_goldens.py for the formula.
inline std::vector<float> chirp_signal(double seconds, uint64_t seed) {
  const double sr = 16000.0, pi = 3.14159265358979323846, f0 = 100.0, f1 = 7000.0;
  const int64_t n = static_cast<int64_t>(std::llround(seconds * sr));
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t h = splitmix64((seed << 32) + static_cast<uint64_t>(i));
    const double u = 2.0 * static_cast<double>(h >> 11) * std::ldexp(1.0, -53) - 1.0;
    const double t = static_cast<double>(i) / sr;
    const double phase = 2.0 * pi * (f0 * t + (f1 - f0) * t * t / (2.0 * seconds));
    const double v = 0.5 * std::sin(phase) * (0.6 + 0.4 * std::sin(2.0 * pi * 1.5 * t)) + 0.05 * u;
    x[static_cast<size_t>(i)] = static_cast<float>(v);
  }
  return x;
}

}  // namespace flurry::test
