// Shared pieces of the micro-benchmarks (bench/README.md has the convention): CUDA-event timing
// with warm-up and median, FLOP and byte rates, rotation among input sets so the L2 cache is not
// what is measured, the GPU's description, and a plain-text table.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace flurry::bench {

struct Options {
  int warmup = 10;         // untimed calls before timing (module load, plan building, clocks)
  int iters = 50;          // timed calls; the median is reported
  std::string filter;      // run only cases whose name contains this
  std::string dtype = "";  // benchmark-specific: restrict to one dtype when set
  bool csv = false;        // print CSV rows instead of the table
};
// Parses --warmup N --iters N --filter S --dtype S --csv --help. Exits on --help or a bad flag.
Options parse_options(int argc, char** argv, const char* what);

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  int iters = 0;
};
// Calls fn(i) `warmup` times untimed, then `iters` times each between two CUDA events on `stream`,
// and returns the median (and spread) of the per-call times. `i` counts calls from 0, so fn can
// rotate among input sets with i % sets.
Timing time_cuda(cudaStream_t stream, int warmup, int iters, const std::function<void(int)>& fn);

inline double tflops(double flops, double ms) { return ms > 0 ? flops / (ms * 1e-3) / 1e12 : 0.0; }
inline double gbps(double bytes, double ms) { return ms > 0 ? bytes / (ms * 1e-3) / 1e9 : 0.0; }

// "NVIDIA H100 80GB HBM3, 132 SMs, L2 50 MiB, CUDA 13.0, driver 13.0" for the current device.
std::string gpu_description();
size_t l2_cache_bytes();
// How many independent input sets of `bytes_per_set` to cycle through so that together they are at
// least `l2_multiple` times the L2 size (bounded by [min_sets, max_sets] and by free memory / 2).
int rotation_sets(size_t bytes_per_set, double l2_multiple = 3.0, int min_sets = 2, int max_sets = 64);

// Fills `n` device elements of dtype `t` at `p` with uniform values in [-scale, scale] (never
// zeros: zeros run faster than real data). A block of random values made once on the host is
// copied over the buffer; values repeat across blocks, which does not matter for timing.
void fill_uniform_device(void* p, size_t n, DType t, float scale, unsigned seed);

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(bool csv) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

std::string fmt(double v, int decimals);

}  // namespace flurry::bench
