#include "bench/bench_util.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/stream.h"

namespace flurry::bench {

Options parse_options(int argc, char** argv, const char* what) {
  Options o;
  auto need = [&](int i) {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s needs a value\n", argv[0], argv[i]);
      std::exit(2);
    }
    return argv[i + 1];
  };
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (!std::strcmp(a, "--warmup")) {
      o.warmup = std::atoi(need(i++));
    } else if (!std::strcmp(a, "--iters")) {
      o.iters = std::max(1, std::atoi(need(i++)));
    } else if (!std::strcmp(a, "--filter")) {
      o.filter = need(i++);
    } else if (!std::strcmp(a, "--dtype")) {
      o.dtype = need(i++);
    } else if (!std::strcmp(a, "--csv")) {
      o.csv = true;
    } else if (!std::strcmp(a, "--help") || !std::strcmp(a, "-h")) {
      std::printf("%s\n\nusage: %s [--warmup N] [--iters N] [--filter SUBSTRING] [--dtype f16|bf16|f32] "
                  "[--csv]\n  --warmup N   untimed calls first (default 10)\n"
                  "  --iters N    timed calls; the median is reported (default 50)\n"
                  "  --filter S   only cases whose name contains S\n"
                  "  --dtype T    only this operand dtype\n  --csv        CSV instead of a table\n",
                  what, argv[0]);
      std::exit(0);
    } else {
      std::fprintf(stderr, "%s: unknown flag %s (try --help)\n", argv[0], a);
      std::exit(2);
    }
  }
  return o;
}

Timing time_cuda(cudaStream_t stream, int warmup, int iters, const std::function<void(int)>& fn) {
  int call = 0;
  for (int i = 0; i < warmup; ++i) fn(call++);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  // One event pair per call, all recorded before any is read, so reading does not stall the queue.
  std::vector<Event> starts, ends;
  starts.reserve(static_cast<size_t>(iters));
  ends.reserve(static_cast<size_t>(iters));
  for (int i = 0; i < iters; ++i) {
    starts.emplace_back();
    ends.emplace_back();
  }
  for (int i = 0; i < iters; ++i) {
    starts[i].record(stream);
    fn(call++);
    ends[i].record(stream);
  }
  std::vector<double> ms(static_cast<size_t>(iters));
  for (int i = 0; i < iters; ++i) ms[i] = ends[i].elapsed_ms_since(starts[i]);
  std::sort(ms.begin(), ms.end());
  Timing t;
  t.iters = iters;
  t.min_ms = ms.front();
  t.max_ms = ms.back();
  t.median_ms = iters % 2 ? ms[iters / 2] : 0.5 * (ms[iters / 2 - 1] + ms[iters / 2]);
  return t;
}

std::string gpu_description() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  int rt = 0, drv = 0;
  CUDA_CHECK(cudaRuntimeGetVersion(&rt));
  CUDA_CHECK(cudaDriverGetVersion(&drv));
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s, sm_%d%d, %d SMs, L2 %.0f MiB, %.0f GiB, CUDA runtime %d.%d, driver %d.%d",
                p.name, p.major, p.minor, p.multiProcessorCount, p.l2CacheSize / 1048576.0,
                p.totalGlobalMem / 1073741824.0, rt / 1000, (rt % 1000) / 10, drv / 1000,
                (drv % 1000) / 10);
  return buf;
}

size_t l2_cache_bytes() {
  int dev = 0, l2 = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  return static_cast<size_t>(l2);
}

int rotation_sets(size_t bytes_per_set, double l2_multiple, int min_sets, int max_sets) {
  const double want = l2_multiple * static_cast<double>(l2_cache_bytes());
  int sets = static_cast<int>(want / std::max<double>(1.0, static_cast<double>(bytes_per_set))) + 1;
  sets = std::clamp(sets, min_sets, max_sets);
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const size_t fit = free_b / 2 / std::max<size_t>(1, bytes_per_set);
  return std::max(1, std::min(sets, static_cast<int>(std::min<size_t>(fit, 1 << 20))));
}

void fill_uniform_device(void* p, size_t n, DType t, float scale, unsigned seed) {
  const size_t block = std::min<size_t>(n, size_t{1} << 22);
  std::vector<float> v(block);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  for (float& x : v) {
    x = d(rng);
    if (x == 0.0f) x = scale * 0.5f;
  }
  const size_t es = dtype_size(t);
  std::vector<unsigned char> host(block * es);
  convert_from_f32(v.data(), host.data(), block, t);
  for (size_t off = 0; off < n; off += block) {
    const size_t cnt = std::min(block, n - off);
    CUDA_CHECK(cudaMemcpy(static_cast<unsigned char*>(p) + off * es, host.data(), cnt * es,
                          cudaMemcpyHostToDevice));
  }
}

std::string fmt(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

void Table::print(bool csv) const {
  if (csv) {
    auto line = [](const std::vector<std::string>& r) {
      for (size_t i = 0; i < r.size(); ++i) std::printf("%s%s", i ? "," : "", r[i].c_str());
      std::printf("\n");
    };
    line(header_);
    for (const auto& r : rows_) line(r);
    return;
  }
  std::vector<size_t> w(header_.size());
  for (size_t i = 0; i < header_.size(); ++i) w[i] = header_[i].size();
  for (const auto& r : rows_) {
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::printf("|");
    for (size_t i = 0; i < w.size(); ++i) {
      std::printf(" %*s |", static_cast<int>(w[i]), i < r.size() ? r[i].c_str() : "");
    }
    std::printf("\n");
  };
  line(header_);
  std::printf("|");
  for (size_t i = 0; i < w.size(); ++i) std::printf("%s|", std::string(w[i] + 2, '-').c_str());
  std::printf("\n");
  for (const auto& r : rows_) line(r);
  std::fflush(stdout);
}

}  // namespace flurry::bench
