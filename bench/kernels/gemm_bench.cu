// GEMM micro-benchmark at the shapes the three models run (bench/README.md has the convention).
//
// For each layer: gemm_gpu with the layer's epilogue ("fused"), the same GEMM with cuBLASLt's
// plain epilogue-free call and the default heuristic's first choice ("plain", the ceiling the
// epilogue should not lower), and plain followed by bias_act ("unfused", what fusion saves).
// Weights are stored [out, in] as checkpoints hold them (trans_b). Each timed call uses the next of
// several input sets, together several times the L2 size, so the cache is not what is measured.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "runtime/cuda/gemm_gpu.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/cuda/stream.h"
#include "runtime/gemm.h"

namespace flurry {
namespace {

struct Layer {
  const char* model;
  const char* name;
  int64_t m, n, k;
  Epilogue epilogue;
};

std::vector<Layer> layers() {
  std::vector<Layer> v;
  // Whisper large-v3 encoder (d_model 1280, 1500 frames per 30 s window, FFN 5120).
  for (int64_t batch : {1, 8}) {
    const int64_t m = 1500 * batch;
    v.push_back({"whisper-l3-enc", "qkv", m, 3840, 1280, Epilogue::Bias});
    v.push_back({"whisper-l3-enc", "attn_out", m, 1280, 1280, Epilogue::Bias});
    v.push_back({"whisper-l3-enc", "fc1", m, 5120, 1280, Epilogue::BiasGeluErf});
    v.push_back({"whisper-l3-enc", "fc2", m, 1280, 5120, Epilogue::Bias});
  }
  // all-MiniLM-L6-v2 (hidden 384, FFN 1536), M = tokens in the batch.
  for (int64_t tokens : {4096, 32768}) {
    v.push_back({"minilm-l6", "q/k/v/o", tokens, 384, 384, Epilogue::Bias});
    v.push_back({"minilm-l6", "ffn_up", tokens, 1536, 384, Epilogue::BiasGeluErf});
    v.push_back({"minilm-l6", "ffn_down", tokens, 384, 1536, Epilogue::Bias});
  }
  // DLRM (MLPerf Criteo config) top-MLP layer, 16k samples.
  v.push_back({"dlrm", "top_mlp_1024", 16384, 1024, 1024, Epilogue::BiasRelu});
  return v;
}

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

struct Result {
  bench::Timing fused, plain, unfused;
};

Result run_layer(GemmLt& lt, const Layer& L, DType t, const bench::Options& opt, void* ws,
                 cudaStream_t stream, int* sets_out) {
  const size_t es = dtype_size(t);
  const size_t a_b = L.m * L.k * es, w_b = L.n * L.k * es, c_b = L.m * L.n * es, bias_b = L.n * es;
  const int sets = bench::rotation_sets(a_b + w_b + c_b + bias_b);
  *sets_out = sets;
  Buffers mem;
  std::vector<GemmArgs> args;
  for (int s = 0; s < sets; ++s) {
    GemmArgs g = gemm_dense(L.m, L.n, L.k, false, true, t, t);
    void* a = mem.alloc(a_b);
    void* w = mem.alloc(w_b);
    void* bias = mem.alloc(bias_b);
    g.a = a;
    g.b = w;
    g.c = mem.alloc(c_b);
    g.bias = bias;
    g.epilogue = L.epilogue;
    // Unit-scale activations and weights ~ 1/sqrt(k), as trained layers have.
    bench::fill_uniform_device(a, L.m * L.k, t, 1.0f, 17u + s);
    bench::fill_uniform_device(w, L.n * L.k, t, 1.7f / std::sqrt(static_cast<float>(L.k)), 29u + s);
    bench::fill_uniform_device(bias, L.n, t, 0.1f, 31u + s);
    args.push_back(g);
  }
  const size_t ws_b = GemmLt::kWorkspaceBytes;
  Result r;
  r.fused = bench::time_cuda(stream, opt.warmup, opt.iters, [&](int i) {
    gemm_gpu(lt, args[i % sets], ws, ws_b, stream);
  });
  r.plain = bench::time_cuda(stream, opt.warmup, opt.iters, [&](int i) {
    GemmArgs g = args[i % sets];
    g.epilogue = Epilogue::None;
    g.bias = nullptr;
    lt.run(g, ws, ws_b, stream);
  });
  r.unfused = bench::time_cuda(stream, opt.warmup, opt.iters, [&](int i) {
    GemmArgs g = args[i % sets];
    g.epilogue = Epilogue::None;
    g.bias = nullptr;
    lt.run(g, ws, ws_b, stream);
    BiasActArgs post;
    post.c = g.c;
    post.bias = args[i % sets].bias;
    post.type = t;
    post.rows = g.m;
    post.cols = g.n;
    post.ldc = g.ldc;
    post.epilogue = L.epilogue;
    bias_act(post, stream);
  });
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return r;
}

int bench_main(int argc, char** argv) {
  const bench::Options opt = bench::parse_options(
      argc, argv, "gemm_bench: cuBLASLt GEMM + epilogues at Whisper / MiniLM / DLRM shapes");
  std::printf("# gemm_bench on %s\n# warmup %d, median of %d, CUDA events, rotating input sets\n",
              bench::gpu_description().c_str(), opt.warmup, opt.iters);
  std::vector<DType> types = {DType::BF16, DType::F16};
  if (!opt.dtype.empty()) types = {parse_dtype(opt.dtype)};

  GemmLt lt;
  Stream stream;
  void* ws = nullptr;
  CUDA_CHECK(cudaMalloc(&ws, GemmLt::kWorkspaceBytes));
  bench::Table table({"case", "dtype", "M", "N", "K", "epilogue", "sets", "fused ms", "TFLOP/s",
                      "plain ms", "plain TFLOP/s", "plain/fused", "unfused ms"});
  for (DType t : types) {
    for (const Layer& L : layers()) {
      const std::string name = std::string(L.model) + "/" + L.name + "/M" + std::to_string(L.m);
      if (!opt.filter.empty() && name.find(opt.filter) == std::string::npos) continue;
      int sets = 0;
      const Result r = run_layer(lt, L, t, opt, ws, stream, &sets);
      const double flops = 2.0 * static_cast<double>(L.m) * L.n * L.k;
      table.add({name, dtype_name(t), std::to_string(L.m), std::to_string(L.n), std::to_string(L.k),
                 epilogue_name(L.epilogue), std::to_string(sets), bench::fmt(r.fused.median_ms, 4),
                 bench::fmt(bench::tflops(flops, r.fused.median_ms), 1), bench::fmt(r.plain.median_ms, 4),
                 bench::fmt(bench::tflops(flops, r.plain.median_ms), 1),
                 bench::fmt(r.plain.median_ms / r.fused.median_ms, 3), bench::fmt(r.unfused.median_ms, 4)});
    }
  }
  (void)cudaFree(ws);
  table.print(opt.csv);
  return 0;
}

}  // namespace
}  // namespace flurry

int main(int argc, char** argv) {
  try {
    return flurry::bench_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gemm_bench: %s\n", e.what());
    return 1;
  }
}
