// embed_bench: flurry's side of the sentence-embedding benchmark (bench/embed/run_bench.sh). The
// product's GPU path (BertGpu::encode: length-sorted varlen batches under a token budget, fused
// pooling + L2 normalise, H2D of the ids and D2H of the vectors included) over passages with a
// realistic token-length distribution, for the all-MiniLM-L6-v2 shape and a bert-base shape, with
// random weights written from the weight table (the work does not depend on the values).
//
//   embed_bench [--models minilm,base] [--passages N] [--max-tokens T] [--max-batch B] [--dtype f16|bf16]
//               [--graphs on|off|both] [--seed S] [--quick]
//
// Lengths (tokens, [CLS]/[SEP] included, max_seq_length 256): 45% of passages are truncated to the
// cap (256), the rest normal(150, 60) clamped to [8, 255] — MS MARCO / Wikipedia passages under
// MiniLM's 256-token truncation. Prints one JSON line per model on stdout: tokens/s, passages/s,
// the mean length, and GPU milliseconds per stage (a second, event-timed pass, which runs eagerly).
//
// --graphs: on (default, the product's setting) replays each batch shape's CUDA graph; off launches
// the same padded kernels one by one; both measures each model both ways, the graphs-off line
// marked "framework": "flurry-no-graphs" (report.py compares the "flurry" line with the peer).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "models/bert/gpu/bert_gpu.h"
#include "models/bert/model.h"
#include "models/common/weight_table.h"
#include "runtime/check.h"
#include "runtime/device.h"

namespace fs = std::filesystem;

namespace {

using namespace flurry;

struct Args {
  std::vector<std::string> models = {"minilm", "base"};
  int64_t passages = 200000;
  int64_t max_tokens = 0;
  int max_batch = 0;
  DType dtype = DType::F16;
  uint64_t seed = 1;
  bool quick = false;
  std::vector<bool> graphs = {true};  // --graphs on | off | both
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    const size_t e = s.find(',', b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      FLURRY_CHECK(i + 1 < argc, k << " needs a value");
      return argv[++i];
    };
    if (k == "--models") {
      a.models = split(next());
    } else if (k == "--passages") {
      a.passages = std::stoll(next());
    } else if (k == "--max-tokens") {
      a.max_tokens = std::stoll(next());
    } else if (k == "--max-batch") {
      a.max_batch = std::stoi(next());
    } else if (k == "--dtype") {
      const std::string t = next();
      FLURRY_CHECK(t == "f16" || t == "bf16", "--dtype f16 or bf16");
      a.dtype = t == "bf16" ? DType::BF16 : DType::F16;
    } else if (k == "--graphs") {
      const std::string g = next();
      FLURRY_CHECK(g == "on" || g == "off" || g == "both", "--graphs on, off or both");
      a.graphs = g == "both" ? std::vector<bool>{true, false} : std::vector<bool>{g == "on"};
    } else if (k == "--seed") {
      a.seed = std::stoull(next());
    } else if (k == "--quick") {
      a.quick = true;
    } else {
      std::fprintf(stderr, "usage: embed_bench [--models minilm,base] [--passages N] [--max-tokens T] "
                           "[--max-batch B] [--dtype f16|bf16] [--graphs on|off|both] [--seed S] [--quick]\n");
      std::exit(k == "--help" || k == "-h" ? 0 : 2);
    }
  }
  if (a.quick) a.passages = std::min<int64_t>(a.passages, 5000);
  return a;
}

bert::BertConfig shape(const std::string& name) {
  bert::BertConfig c;
  c.vocab_size = 30522;
  c.max_position_embeddings = 512;
  c.type_vocab_size = 2;
  c.layer_norm_eps = 1e-12f;
  if (name == "minilm") {  // all-MiniLM-L6-v2
    c.hidden_size = 384;
    c.num_hidden_layers = 6;
    c.num_attention_heads = 12;
    c.intermediate_size = 1536;
  } else if (name == "base") {  // bert-base / bge-base / e5-base
    c.hidden_size = 768;
    c.num_hidden_layers = 12;
    c.num_attention_heads = 12;
    c.intermediate_size = 3072;
  } else {
    FLURRY_FAIL("unknown model shape '" << name << "' (minilm, base)");
  }
  return c;
}

std::vector<std::vector<int32_t>> passages(int64_t n, uint64_t seed, int64_t vocab) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution at_cap(0.45);
  std::normal_distribution<double> len(150.0, 60.0);
  std::uniform_int_distribution<int32_t> tok(1000, static_cast<int32_t>(vocab - 1));
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(n));
  for (auto& s : out) {
    int n_tok = 256;
    if (!at_cap(rng)) n_tok = static_cast<int>(std::min(255.0, std::max(8.0, std::round(len(rng)))));
    s.resize(static_cast<size_t>(n_tok));
    for (auto& t : s) t = tok(rng);
    s.front() = 101;  // [CLS]
    s.back() = 102;   // [SEP]
  }
  return out;
}

// One model shape, with graphs on or off; `stages`: also the event-timed pass.
nlohmann::ordered_json run_model(const Args& a, const std::string& name, const std::string& tmp, bool graphs,
                                 bool stages) {
  const bert::BertConfig c = shape(name);
  const std::string dir = tmp + "/" + name;
  fs::create_directories(dir);
  auto t0 = std::chrono::steady_clock::now();
  models::write_random_checkpoint(bert::bert_weight_table(c), dir + "/model.safetensors", {a.seed, DType::F16, 4});
  const Checkpoint ck = Checkpoint::open(dir);
  bert::BertGpuOptions o;
  o.dtype = a.dtype;
  o.max_tokens = a.max_tokens;
  o.max_batch = a.max_batch;
  o.max_seq_len = 256;
  o.pooling = bert::Pooling::kMean;
  o.normalize = true;
  o.use_graphs = graphs;
  auto gpu = bert::BertGpu::create(c, ck, o);
  const auto seqs = passages(a.passages, a.seed + 7, c.vocab_size);
  int64_t tokens = 0;
  for (const auto& s : seqs) tokens += static_cast<int64_t>(s.size());
  std::vector<float> out(seqs.size() * static_cast<size_t>(c.hidden_size));
  const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Warm-up: cuBLASLt heuristics and module load for the shapes of the first batches.
  const std::vector<std::vector<int32_t>> warm(seqs.begin(), seqs.begin() + std::min<int64_t>(a.passages, 4096));
  gpu->encode(warm, out.data());
  gpu->reset_stage_times();
  t0 = std::chrono::steady_clock::now();
  gpu->encode(seqs, out.data());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const bert::BertGpuStageTimes run = gpu->stage_times();
  const size_t captured = gpu->graphs();
  const int64_t max_tokens = gpu->max_tokens();
  const int max_batch = gpu->max_batch();

  // Second pass with events between the stages (eager launches; a few microseconds per batch).
  bert::BertGpuStageTimes st;
  if (stages) {
    bert::BertGpuOptions timed = o;
    timed.time_stages = true;
    gpu.reset();
    auto gpu_t = bert::BertGpu::create(c, ck, timed);
    gpu_t->encode(warm, out.data());
    gpu_t->reset_stage_times();
    gpu_t->encode(seqs, out.data());
    st = gpu_t->stage_times();
  }

  nlohmann::ordered_json j;
  j["framework"] = graphs || a.graphs.size() == 1 ? "flurry" : "flurry-no-graphs";
  j["model"] = name;
  j["dtype"] = dtype_name(a.dtype);
  j["hidden"] = c.hidden_size;
  j["layers"] = c.num_hidden_layers;
  j["heads"] = c.num_attention_heads;
  j["passages"] = a.passages;
  j["tokens"] = tokens;
  j["mean_len"] = static_cast<double>(tokens) / static_cast<double>(std::max<int64_t>(a.passages, 1));
  j["max_tokens"] = max_tokens;
  j["max_batch"] = max_batch;
  j["seconds"] = secs;
  j["tokens_per_s"] = static_cast<double>(tokens) / secs;
  j["passages_per_s"] = static_cast<double>(a.passages) / secs;
  j["batches"] = run.batches;
  j["graphs"] = graphs;
  j["graphs_captured"] = captured;
  j["graph_batches"] = run.graph_batches;
  j["padded_tokens"] = run.padded_tokens;  // rows the kernels ran over: tokens + bucket padding
  if (stages) {
    j["stage_ms"] = {{"h2d", st.h2d_ms}, {"embed", st.embed_ms}, {"attention", st.attention_ms},
                     {"ffn", st.ffn_ms}, {"pool", st.pool_ms}, {"d2h", st.d2h_ms}};
  }
  j["setup_s"] = setup_s;
  j["gpu"] = bench::gpu_description();
  fs::remove_all(dir);
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    std::string why;
    FLURRY_CHECK(cuda_device_count(&why) > 0, "no usable GPU: " << why);
    const std::string tmp = (fs::temp_directory_path() / ("flurry-embed-bench-" + std::to_string(::getpid()))).string();
    fs::create_directories(tmp);
    for (const std::string& m : a.models) {
      for (const bool graphs : a.graphs) {
        const nlohmann::ordered_json j = run_model(a, m, tmp, graphs, /*stages=*/graphs == a.graphs.front());
        std::printf("%s\n", j.dump().c_str());
        std::fflush(stdout);
        std::fprintf(stderr, "%s (graphs %s): %.3g tokens/s, %.0f passages/s (%lld passages, mean %.1f tokens)\n",
                     m.c_str(), graphs ? "on" : "off", j["tokens_per_s"].get<double>(),
                     j["passages_per_s"].get<double>(), static_cast<long long>(a.passages),
                     j["mean_len"].get<double>());
      }
    }
    fs::remove_all(tmp);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "embed_bench: %s\n", e.what());
    return 1;
  }
}
