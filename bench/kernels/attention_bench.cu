// Attention micro-benchmark (bench/README.md has the convention).
//
// Encoder / prefill: flash_attention at Whisper large-v3's encoder shape (T = 1500, 20 heads of 64,
// batch 8..32, q/k/v read in place from the fused QKV buffer) and a BERT-base-like varlen batch,
// in TFLOP/s counting 4 B H T^2 64 (the two products; softmax not counted), against the cuBLASLt
// GEMM rate measured in the same run (8192^3, same dtype): the tensor-core ceiling.
// Decode: decode_attention (split-KV) over Whisper's decoder self-attention cache (448) and
// cross-attention K/V (1500), in GB/s counting K and V read once plus q and out, against a large
// cudaMemcpy device-to-device measured in the same run (bytes read + written): the HBM ceiling.
// Every timed call uses the next of several input sets, together at least 3x the L2 size.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "kernels/attention.cuh"
#include "kernels/decode_attention.cuh"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/cuda/stream.h"
#include "runtime/gemm.h"

namespace flurry {
namespace {

constexpr int kHd = 64;

struct Buffers {
  std::vector<void*> ptrs;
  ~Buffers() {
    for (void* p : ptrs) (void)cudaFree(p);
  }
  void* alloc(size_t bytes) {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, bytes));
    ptrs.push_back(p);
    return p;
  }
};

// Tensor-core ceiling: a large square GEMM through cuBLASLt, TFLOP/s.
double gemm_peak_tflops(DType t, const bench::Options& opt, cudaStream_t stream) {
  const int64_t n = 8192;
  const size_t es = dtype_size(t), mat = static_cast<size_t>(n * n) * es;
  const int sets = bench::rotation_sets(3 * mat);
  Buffers mem;
  std::vector<GemmArgs> args;
  for (int s = 0; s < sets; ++s) {
    GemmArgs g = gemm_dense(n, n, n, false, true, t, t);
    g.a = mem.alloc(mat);
    g.b = mem.alloc(mat);
    g.c = mem.alloc(mat);
    bench::fill_uniform_device(const_cast<void*>(g.a), static_cast<size_t>(n * n), t, 1.0f, 7u + s);
    bench::fill_uniform_device(const_cast<void*>(g.b), static_cast<size_t>(n * n), t, 0.02f, 11u + s);
    args.push_back(g);
  }
  GemmLt lt;
  void* ws = mem.alloc(GemmLt::kWorkspaceBytes);
  const bench::Timing tm = bench::time_cuda(stream, opt.warmup, opt.iters, [&](int i) {
    lt.run(args[i % sets], ws, GemmLt::kWorkspaceBytes, stream);
  });
  return bench::tflops(2.0 * n * n * n, tm.median_ms);
}

// HBM ceiling: a 1 GiB device-to-device copy, GB/s counting bytes read plus bytes written.
double copy_peak_gbps(const bench::Options& opt, cudaStream_t stream) {
  const size_t bytes = size_t{1} << 30;
  Buffers mem;
  void* src = mem.alloc(bytes);
  void* dst = mem.alloc(bytes);
  bench::fill_uniform_device(src, bytes / 2, DType::F16, 1.0f, 3u);
  const bench::Timing tm = bench::time_cuda(stream, opt.warmup, opt.iters, [&](int) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
  });
  return bench::gbps(2.0 * static_cast<double>(bytes), tm.median_ms);
}

struct EncCase {
  std::string name;
  int batch, seq, heads;
  bool varlen;  // cu_seqlens with lengths seq/2 .. seq instead of a padded batch
};

std::vector<EncCase> enc_cases() {
  return {{"whisper-l3-enc/B8", 8, 1500, 20, false},
          {"whisper-l3-enc/B16", 16, 1500, 20, false},
          {"whisper-l3-enc/B32", 32, 1500, 20, false},
          {"bge-base/varlen-B256-L<=256", 256, 256, 12, true}};
}

struct DecCase {
  std::string name;
  int batch, kv_len, heads;
  bool cross;  // fused [kv_len, 2 d] K/V per sequence, every sequence full length
};

std::vector<DecCase> dec_cases() {
  return {{"whisper-l3-dec/self448/B1", 1, 448, 20, false},
          {"whisper-l3-dec/self448/B5", 5, 448, 20, false},
          {"whisper-l3-dec/self448/B32", 32, 448, 20, false},
          {"whisper-l3-dec/cross1500/B1", 1, 1500, 20, true},
          {"whisper-l3-dec/cross1500/B5", 5, 1500, 20, true},
          {"whisper-l3-dec/cross1500/B32", 32, 1500, 20, true}};
}

void run_encoder(const EncCase& c, DType t, const bench::Options& opt, cudaStream_t stream,
                 double peak, bench::Table& table) {
  const int64_t d = int64_t{c.heads} * kHd;
  std::vector<int32_t> cu(static_cast<size_t>(c.batch) + 1, 0);
  double sq_sum = 0;  // sum of T_b^2
  for (int b = 0; b < c.batch; ++b) {
    const int len = c.varlen ? c.seq / 2 + (b * 7919) % (c.seq / 2 + 1) : c.seq;
    cu[static_cast<size_t>(b) + 1] = cu[static_cast<size_t>(b)] + len;
    sq_sum += static_cast<double>(len) * len;
  }
  const int64_t tokens = cu.back();
  const size_t es = dtype_size(t);
  const size_t qkv_b = static_cast<size_t>(tokens * 3 * d) * es, out_b = static_cast<size_t>(tokens * d) * es;
  const int sets = bench::rotation_sets(qkv_b + out_b);
  Buffers mem;
  void* dcu = mem.alloc(cu.size() * sizeof(int32_t));
  CUDA_CHECK(cudaMemcpy(dcu, cu.data(), cu.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  std::vector<FlashAttentionArgs> args;
  for (int s = 0; s < sets; ++s) {
    char* qkv = static_cast<char*>(mem.alloc(qkv_b));
    bench::fill_uniform_device(qkv, static_cast<size_t>(tokens * 3 * d), t, 2.0f, 41u + s);
    FlashAttentionArgs a;
    a.q = qkv;
    a.k = qkv + d * es;
    a.v = qkv + 2 * d * es;
    a.out = mem.alloc(out_b);
    a.q_ld = a.k_ld = a.v_ld = 3 * d;
    a.out_ld = d;
    a.type = t;
    a.heads = c.heads;
    a.batch = c.batch;
    a.q_len = a.kv_len = c.seq;
    if (c.varlen) {
      a.cu_seqlens_q = a.cu_seqlens_k = static_cast<const int32_t*>(dcu);
    }
    a.scale = 0.125f;
    args.push_back(a);
  }
  const bench::Timing tm = bench::time_cuda(stream, opt.warmup, opt.iters,
                                            [&](int i) { flash_attention(args[i % sets], stream); });
  const double flops = 4.0 * c.heads * sq_sum * kHd;
  const double tf = bench::tflops(flops, tm.median_ms);
  table.add({c.name, dtype_name(t), std::to_string(sets), bench::fmt(tm.median_ms, 4),
             bench::fmt(tf, 1) + " TFLOP/s", bench::fmt(peak, 1) + " TFLOP/s",
             bench::fmt(100.0 * tf / peak, 1), "-"});
}

void run_decode(const DecCase& c, DType t, const bench::Options& opt, cudaStream_t stream,
                double peak, bench::Table& table) {
  const int64_t d = int64_t{c.heads} * kHd;
  const size_t es = dtype_size(t);
  const int64_t kv_ld = c.cross ? 2 * d : d;
  const size_t cache_elems = static_cast<size_t>(int64_t{c.batch} * c.kv_len * kv_ld);
  const size_t q_b = static_cast<size_t>(c.batch * d) * es;
  const size_t set_b = (c.cross ? 1 : 2) * cache_elems * es + 2 * q_b;
  const int sets = bench::rotation_sets(set_b);
  Buffers mem;
  std::vector<DecodeAttentionArgs> args;
  int splits = 0;
  for (int s = 0; s < sets; ++s) {
    DecodeAttentionArgs a;
    char* k = static_cast<char*>(mem.alloc(cache_elems * es));
    bench::fill_uniform_device(k, cache_elems, t, 2.0f, 53u + s);
    a.k = k;
    if (c.cross) {
      a.v = k + d * es;
    } else {
      void* v = mem.alloc(cache_elems * es);
      bench::fill_uniform_device(v, cache_elems, t, 1.0f, 59u + s);
      a.v = v;
    }
    void* q = mem.alloc(q_b);
    bench::fill_uniform_device(q, static_cast<size_t>(c.batch * d), t, 2.0f, 61u + s);
    a.q = q;
    a.out = mem.alloc(q_b);
    a.q_ld = a.out_ld = d;
    a.k_ld = a.v_ld = kv_ld;
    a.k_batch_stride = a.v_batch_stride = int64_t{c.kv_len} * kv_ld;
    a.type = t;
    a.batch = c.batch;
    a.heads = c.heads;
    a.q_len = 1;
    a.kv_len = c.kv_len;
    a.causal = !c.cross;
    a.scale = 0.125f;
    a.workspace_bytes = decode_attention_workspace_bytes(a);
    a.workspace = a.workspace_bytes ? mem.alloc(a.workspace_bytes) : nullptr;
    splits = decode_attention_splits(a);
    args.push_back(a);
  }
  const bench::Timing tm = bench::time_cuda(stream, opt.warmup, opt.iters,
                                            [&](int i) { decode_attention(args[i % sets], stream); });
  // K and V of every (sequence, head) read once; q read, out written.
  const double bytes = 2.0 * c.batch * c.kv_len * d * es + 2.0 * static_cast<double>(q_b);
  const double gb = bench::gbps(bytes, tm.median_ms);
  table.add({c.name, dtype_name(t), std::to_string(sets), bench::fmt(tm.median_ms, 4),
             bench::fmt(gb, 0) + " GB/s", bench::fmt(peak, 0) + " GB/s",
             bench::fmt(100.0 * gb / peak, 1), std::to_string(splits)});
}

int bench_main(int argc, char** argv) {
  const bench::Options opt = bench::parse_options(
      argc, argv,
      "attention_bench: flash attention (Whisper large-v3 encoder, BERT varlen) in TFLOP/s against "
      "the cuBLASLt GEMM rate, and split-KV decode attention (Whisper decoder self/cross) in GB/s "
      "against a device-to-device copy, all measured in the same run");
  std::printf("# attention_bench on %s\n# warmup %d, median of %d, CUDA events, rotating input sets\n",
              bench::gpu_description().c_str(), opt.warmup, opt.iters);
  std::vector<DType> types = {DType::BF16, DType::F16};
  if (!opt.dtype.empty()) types = {parse_dtype(opt.dtype)};
  Stream stream;
  const double copy_peak = copy_peak_gbps(opt, stream);
  std::printf("# ceiling: cudaMemcpy D2D %.0f GB/s (read + write)\n", copy_peak);
  bench::Table table({"case", "dtype", "sets", "ms", "rate", "ceiling", "% ceiling", "splits"});
  for (DType t : types) {
    const double gemm_peak = gemm_peak_tflops(t, opt, stream);
    std::printf("# ceiling: cuBLASLt %s GEMM 8192^3 %.1f TFLOP/s\n", dtype_name(t), gemm_peak);
    for (const EncCase& c : enc_cases()) {
      if (!opt.filter.empty() && c.name.find(opt.filter) == std::string::npos) continue;
      run_encoder(c, t, opt, stream, gemm_peak, table);
    }
    for (const DecCase& c : dec_cases()) {
      if (!opt.filter.empty() && c.name.find(opt.filter) == std::string::npos) continue;
      run_decode(c, t, opt, stream, copy_peak, table);
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
    std::fprintf(stderr, "attention_bench: %s\n", e.what());
    return 1;
  }
}
