#include "tests/common/test_util.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>

namespace flurry::test {

uint64_t test_seed() {
  static uint64_t seed = [] {
    uint64_t s;
    if (const char* env = std::getenv("FLURRY_SEED")) {
      s = std::strtoull(env, nullptr, 10);
    } else {
      std::random_device rd;
      s = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    }
    std::printf("[flurry test] seed = %llu (set FLURRY_SEED=%llu to repeat)\n",
                static_cast<unsigned long long>(s), static_cast<unsigned long long>(s));
    std::fflush(stdout);
    return s;
  }();
  return seed;
}

std::mt19937_64 test_rng(const std::string& salt) {
  return std::mt19937_64(test_seed() ^ std::hash<std::string>{}(salt));
}

void fill_uniform(std::vector<float>& v, std::mt19937_64& rng, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  for (float& x : v) x = d(rng);
}

void fill_normal(std::vector<float>& v, std::mt19937_64& rng, float mean, float stddev) {
  std::normal_distribution<float> d(mean, stddev);
  for (float& x : v) x = d(rng);
}

std::vector<float> random_vector(size_t n, std::mt19937_64& rng, float lo, float hi) {
  std::vector<float> v(n);
  fill_uniform(v, rng, lo, hi);
  return v;
}

void round_inplace(std::vector<float>& v, DType t) {
  for (float& x : v) x = round_to(t, x);
}

void poison(void* p, size_t bytes) { std::memset(p, 0xFF, bytes); }

double rel_norm_bound(DType t) {
  switch (t) {
    case DType::F32: return 1e-5;
    case DType::F16: return 1e-2;
    case DType::BF16: return 1e-2;
    default: return 0.0;
  }
}

double rel_norm_error(const float* out, const float* ref, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(out[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

namespace {
std::string dump(const std::string& name, const float* out, const float* ref, size_t n) {
  namespace fs = std::filesystem;
  const char* env = std::getenv("FLURRY_DUMP_DIR");
  fs::path dir = env ? fs::path(env) : fs::temp_directory_path() / "flurry-test-dumps";
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::string safe = name;
  for (char& c : safe) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  }
  const fs::path o = dir / (safe + ".out.f32"), r = dir / (safe + ".ref.f32");
  std::ofstream(o, std::ios::binary).write(reinterpret_cast<const char*>(out), n * sizeof(float));
  std::ofstream(r, std::ios::binary).write(reinterpret_cast<const char*>(ref), n * sizeof(float));
  return " [tensors dumped to " + o.string() + " and " + r.string() + "]";
}
}  // namespace

::testing::AssertionResult close_in_norm(const std::string& name, const float* out, const float* ref,
                                         size_t n, double bound) {
  double ref_norm = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(out[i])) {
      return ::testing::AssertionFailure() << name << ": output element " << i << " of " << n
                                           << " is " << out[i] << " (unwritten or overflow)"
                                           << dump(name, out, ref, n);
    }
    if (!std::isfinite(ref[i])) {
      return ::testing::AssertionFailure() << name << ": reference element " << i << " is " << ref[i];
    }
    ref_norm += static_cast<double>(ref[i]) * ref[i];
  }
  if (n == 0 || !(ref_norm > 0.0)) {
    return ::testing::AssertionFailure() << name << ": reference norm is zero (n=" << n
                                         << "): a comparison against nothing proves nothing";
  }
  const double err = rel_norm_error(out, ref, n);
  if (err > bound) {
    return ::testing::AssertionFailure() << name << ": relative norm error " << err << " > bound "
                                         << bound << dump(name, out, ref, n);
  }
  return ::testing::AssertionSuccess() << name << ": relative norm error " << err;
}

::testing::AssertionResult close_elementwise(const std::string& name, const float* out, const float* ref,
                                             size_t n, double atol, double rtol) {
  size_t worst = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(out[i])) {
      return ::testing::AssertionFailure() << name << ": output element " << i << " is " << out[i]
                                           << dump(name, out, ref, n);
    }
    const double diff = std::fabs(static_cast<double>(out[i]) - ref[i]);
    const double excess = diff - (atol + rtol * std::fabs(static_cast<double>(ref[i])));
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  if (worst_excess > 0.0) {
    return ::testing::AssertionFailure() << name << ": element " << worst << " out=" << out[worst]
                                         << " ref=" << ref[worst] << " exceeds atol " << atol
                                         << " + rtol " << rtol << " * |ref|" << dump(name, out, ref, n);
  }
  return ::testing::AssertionSuccess();
}

std::string fixture_path(const std::string& relative) {
  return std::string(FLURRY_TEST_SOURCE_DIR) + "/tests/fixtures/" + relative;
}

std::string shared_data_path(const std::string& relative) {
  namespace fs = std::filesystem;
  const char* env = std::getenv("FLURRY_SHARED_DATA");
  fs::path base = env ? fs::path(env) : fs::path(FLURRY_TEST_SOURCE_DIR) / ".." / "shared" / "data";
  fs::path p = base / relative;
  std::error_code ec;
  return fs::exists(p, ec) ? p.lexically_normal().string() : std::string();
}

std::string fresh_temp_dir(const std::string& name) {
  const std::filesystem::path d =
      std::filesystem::temp_directory_path() / ("flurry-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

}  // namespace flurry::test
