// Shared test helpers: seeded random inputs, poisoned outputs, relative-norm comparison with
// per-dtype bounds, and a dump of the tensors when a comparison fails.
//
// Every test that draws random numbers takes its generator from test_rng(); the seed is printed
// once per process and FLURRY_SEED=<n> repeats a run exactly.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/dtype.h"

namespace flurry::test {

uint64_t test_seed();
// A generator seeded from test_seed() and `salt`, so tests do not share one stream of numbers.
std::mt19937_64 test_rng(const std::string& salt);

void fill_uniform(std::vector<float>& v, std::mt19937_64& rng, float lo = -1.0f, float hi = 1.0f);
void fill_normal(std::vector<float>& v, std::mt19937_64& rng, float mean = 0.0f, float stddev = 1.0f);
std::vector<float> random_vector(size_t n, std::mt19937_64& rng, float lo = -1.0f, float hi = 1.0f);
// Rounds every element through `t` (so the reference sees exactly what the kernel sees).
void round_inplace(std::vector<float>& v, DType t);

// Byte pattern 0xFF: a NaN in f32, f16 and bf16, so an element the kernel never wrote fails the
// finite check instead of passing as a plausible zero.
void poison(void* p, size_t bytes);

// Bound on ||out - ref|| / ||ref|| for results computed in `t` with fp32 accumulation.
double rel_norm_bound(DType t);
double rel_norm_error(const float* out, const float* ref, size_t n);

// Checks: every out element finite (catches poison), ||ref|| > 0 and finite, and the relative-norm
// error within `bound`. On failure writes <name>.out.f32 / <name>.ref.f32 (raw little-endian fp32)
// under FLURRY_DUMP_DIR (default: the system temp folder) and says where.
::testing::AssertionResult close_in_norm(const std::string& name, const float* out, const float* ref,
                                         size_t n, double bound);
inline ::testing::AssertionResult close_in_norm(const std::string& name, const std::vector<float>& out,
                                                const std::vector<float>& ref, double bound) {
  if (out.size() != ref.size()) {
    return ::testing::AssertionFailure() << name << ": size " << out.size() << " != " << ref.size();
  }
  return close_in_norm(name, out.data(), ref.data(), out.size(), bound);
}

// Element-wise |out - ref| <= atol + rtol * |ref|, reporting the worst element.
::testing::AssertionResult close_elementwise(const std::string& name, const float* out, const float* ref,
                                             size_t n, double atol, double rtol);

// An empty folder <temp>/flurry-<name>-<pid> (removed first when an earlier run left it).
std::string fresh_temp_dir(const std::string& name);

// Path under tests/fixtures and ../shared/data (empty string when the shared folder is absent).
std::string fixture_path(const std::string& relative);
std::string shared_data_path(const std::string& relative);

}  // namespace flurry::test

// Skips the current test with a one-line reason when no CUDA device is usable.
#define FLURRY_REQUIRE_GPU()                                                 \
  do {                                                                       \
    std::string flurry_gpu_why_;                                            \
    if (::flurry::cuda_device_count(&flurry_gpu_why_) == 0) {                \
      GTEST_SKIP() << "no GPU: " << flurry_gpu_why_;                         \
    }                                                                        \
  } while (0)

// For tests that need data `make models` fetches (real checkpoints, openai-whisper's assets):
// skips with the reason, except when FLURRY_REQUIRE_MODELS=1 (CI sets it after `make models`),
// where the absence is a failure, so that a broken fetch cannot turn the end-to-end tests into
// silent skips.
#define FLURRY_REQUIRE_MODEL_DATA(present, reason)                                             \
  do {                                                                                         \
    if (!(present)) {                                                                          \
      const char* flurry_req_ = std::getenv("FLURRY_REQUIRE_MODELS");                          \
      if (flurry_req_ != nullptr && std::string(flurry_req_) == "1") {                         \
        FAIL() << "required model data missing (FLURRY_REQUIRE_MODELS=1): " << reason;         \
      }                                                                                        \
      GTEST_SKIP() << reason;                                                                  \
    }                                                                                          \
  } while (0)
