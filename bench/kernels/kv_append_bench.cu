// K/V cache append micro-benchmark (bench/README.md has the convention): one decoder layer's
// append of every live sequence's new key and value rows at Whisper large-v3's shape (d = 1280,
// 448-row slots, new K/V at columns d and 2d of the fused QKV rows), by
//   kernel   one kv_append launch (kernels/kv_append.cuh, what the decoder runs), and
//   memcpy2d one cudaMemcpy2DAsync per sequence for K and one for V (the path it replaced),
// for 1 .. 232 sequences (the 640-clip run's slot count) bringing one token each at scattered
// positions, slots in order. Reports the time per layer call and, for the kernel, GB/s counting the
// rows read and written. The events bracket the whole enqueue, so the memcpy2d time includes the
// gaps the GPU waits while the host issues 2 x batch API calls. The cache is 232 x 448 x 1280 x 2
// bytes x 2 = 532 MB, beyond the L2; the few new rows are not, which is also how the decoder meets
// them.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "kernels/kv_append.cuh"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/stream.h"

namespace flurry {
namespace {

constexpr int64_t kD = 1280;
constexpr int kMaxLen = 448;
constexpr int kSlots = 232;

struct DeviceMem {
  void* p = nullptr;
  explicit DeviceMem(size_t bytes) { CUDA_CHECK(cudaMalloc(&p, bytes)); }
  ~DeviceMem() { (void)cudaFree(p); }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
};

void run_case(int batch, DType t, const bench::Options& opt, cudaStream_t stream, bench::Table& table) {
  const size_t es = dtype_size(t);
  const size_t cache_bytes = static_cast<size_t>(kSlots) * kMaxLen * kD * es;
  DeviceMem k(cache_bytes), v(cache_bytes), qkv(static_cast<size_t>(batch) * 3 * kD * es),
      index(static_cast<size_t>(3 * batch + 1) * 4);
  bench::fill_uniform_device(qkv.p, static_cast<size_t>(batch) * 3 * kD, t, 1.0f, 5u);
  std::mt19937 rng(7u);
  std::vector<int32_t> host(static_cast<size_t>(3 * batch + 1));
  for (int b = 0; b < batch; ++b) {
    host[static_cast<size_t>(b)] = b;                                                    // slot
    host[static_cast<size_t>(batch + b)] = static_cast<int32_t>(rng() % (kMaxLen - 1));  // position
    host[static_cast<size_t>(2 * batch + b)] = b;                                        // row start
  }
  host[static_cast<size_t>(3 * batch)] = batch;
  CUDA_CHECK(cudaMemcpy(index.p, host.data(), host.size() * 4, cudaMemcpyHostToDevice));
  const int32_t* dix = static_cast<const int32_t*>(index.p);

  KvAppendArgs a;
  a.k_src = static_cast<char*>(qkv.p) + kD * es;
  a.v_src = static_cast<char*>(qkv.p) + 2 * kD * es;
  a.src_ld = 3 * kD;
  a.k_cache = k.p;
  a.v_cache = v.p;
  a.cache_ld = kD;
  a.slot_stride = int64_t{kMaxLen} * kD;
  a.slots = kSlots;
  a.max_len = kMaxLen;
  a.width = kD;
  a.type = t;
  a.batch = batch;
  a.seq_slots = dix;
  a.seq_positions = dix + batch;
  a.row_starts = dix + 2 * batch;
  a.max_new = 1;
  const bench::Timing kt = bench::time_cuda(stream, opt.warmup, opt.iters, [&](int) { kv_append(a, stream); });

  const size_t row = static_cast<size_t>(kD) * es;
  const bench::Timing mt = bench::time_cuda(stream, opt.warmup, opt.iters, [&](int) {
    for (int part = 1; part <= 2; ++part) {
      char* cache = static_cast<char*>(part == 1 ? k.p : v.p);
      const char* src = static_cast<const char*>(qkv.p) + part * row;
      for (int b = 0; b < batch; ++b) {
        const size_t pos = static_cast<size_t>(host[static_cast<size_t>(batch + b)]);
        const size_t dst = (static_cast<size_t>(b) * kMaxLen + pos) * row;
        CUDA_CHECK(cudaMemcpy2DAsync(cache + dst, row, src + static_cast<size_t>(b) * 3 * row, 3 * row, row, 1,
                                     cudaMemcpyDeviceToDevice, stream));
      }
    }
  });
  const double bytes = 2.0 * 2.0 * static_cast<double>(batch) * static_cast<double>(row);  // K and V, read + write
  const std::string name = "decode_step_b" + std::to_string(batch);
  table.add({name, dtype_name(t), "kernel", bench::fmt(kt.median_ms * 1e3, 2),
             bench::fmt(bench::gbps(bytes, kt.median_ms), 1), bench::fmt(mt.median_ms / kt.median_ms, 1)});
  table.add({name, dtype_name(t), "memcpy2d", bench::fmt(mt.median_ms * 1e3, 2),
             bench::fmt(bench::gbps(bytes, mt.median_ms), 1), "1.0"});
}

int bench_main(int argc, char** argv) {
  const bench::Options opt = bench::parse_options(
      argc, argv,
      "kv_append_bench: one decoder layer's K/V append for 1..232 sequences at Whisper large-v3's "
      "shape, one kv_append launch against one cudaMemcpy2DAsync per sequence for K and V");
  std::printf("# kv_append_bench on %s\n# warmup %d, median of %d, CUDA events\n", bench::gpu_description().c_str(),
              opt.warmup, opt.iters);
  std::vector<DType> types = {DType::F16};
  if (!opt.dtype.empty()) types = {parse_dtype(opt.dtype)};
  Stream stream;
  bench::Table table({"case", "dtype", "path", "us/layer", "GB/s", "speed-up"});
  for (DType t : types) {
    for (int batch : {1, 8, 64, 128, 232}) {
      if (!opt.filter.empty() && std::to_string(batch).find(opt.filter) == std::string::npos) continue;
      run_case(batch, t, opt, stream, table);
    }
  }
  table.print(opt.csv);
  return 0;
}

}  // namespace
}  // namespace flurry

int main(int argc, char** argv) {
  try {
    return flurry::bench_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kv_append_bench: %s\n", e.what());
    return 1;
  }
}
