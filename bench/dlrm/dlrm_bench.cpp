// dlrm_bench: flurry's side of the DLRM benchmark (bench/dlrm/README.md has the workload, the CLI and
// the JSON fields; run_bench.sh and report.py consume them).
//
// Per model (MLPerf DLRM Terabyte, the seed's food-truck model, optionally MLPerf DLRM-v2 / DCNv2):
// the config is built here, random fp16 weights are written from dlrm_weight_table(cfg) into a
// temporary folder and loaded by the product's own path (DlrmGpu::load: mapped checkpoint -> pinned
// staging -> device), the file is removed, and then for each batch size of the sweep a pool of
// batches with Zipf-distributed indices is generated and DlrmGpu::forward is timed over it.
//
// What a timed batch costs is what a caller of forward() pays: index validation and packing on the
// host, the H2D of dense features, offsets and indices, the device pass, the D2H of the logits and
// the wait for them. forward() is synchronous (it returns host logits), so a host clock around the
// call is the right clock; CUDA events would need the model's private stream and would leave out
// the host work. DlrmGpu exposes no forward without the logits' D2H (4 bytes per sample, 256 KiB
// at 65,536), so no such variant is reported; its stage timers split each batch into "stage" (host
// packing), "gpu" (H2D + device pass + D2H, waited for) and the rest (index validation, copy-out).
//
// Variants (each a JSON line): --graphs on,off (CUDA graphs of the device pass, switched on one
// loaded model), --outer-fusion on,off (the seed's outer interaction fused into the first top-MLP
// layer or materialised; one model loaded per setting; other interactions run once) and --modes
// forward,pipeline: "forward" times each synchronous forward() call, "pipeline" queues the pool's
// batches back to back with forward_async() (H2D of the next batch and D2H of the previous logits
// overlapping the current pass) and divides the wall time, final wait() included, by the batches.
//
// Human-readable lines go to stderr; stdout carries one JSON object per (model, batch size, variant).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "io/safetensors.h"
#include "models/common/weight_table.h"
#include "models/dlrm/config.h"
#include "models/dlrm/features.h"
#include "models/dlrm/gpu/model_gpu.h"
#include "models/dlrm/model.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/dtype.h"
#include "runtime/stage_timers.h"

namespace flurry::dlrm {
namespace {

using Clock = std::chrono::steady_clock;
using OJson = nlohmann::ordered_json;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---- models -----------------------------------------------------------------------------------

// MLPerf DLRM Terabyte (facebookresearch/dlrm, Criteo 1TB with --max-ind-range=40000000): rows of
// the 26 categorical features' tables, C1..C26.
constexpr int64_t kTerabyteRows[26] = {39884406, 39043,    17289,   7420,   20263, 3,     7120,     1543,     63,
                                       38532951, 2953546,  403346,  10,     2208,  11938, 155,      4,        976,
                                       14,       39979771, 25641295, 39664984, 585935, 12972, 108, 36};
// MLPerf DLRM-v2 (TorchRec DLRM-DCNv2 on the multi-hot Criteo 1TB): rows and indices per sample.
constexpr int64_t kV2Rows[26] = {40000000, 39060,    17295,    7424,     20265, 3,     7122,   1543,  63,
                                 40000000, 3067956,  405282,   10,       2209,  11938, 155,    4,     976,
                                 14,       40000000, 40000000, 40000000, 590152, 12973, 108, 36};
constexpr int kV2Hotness[26] = {3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1};

struct ModelSpec {
  std::string name;
  DlrmConfig cfg;
  std::vector<int> hotness;  // indices per sample of each bag
  std::vector<int64_t> full_rows;  // table rows before the caps
  int64_t row_cap = 0;             // every table's rows are min(full_rows, row_cap)
};

// Rows after --max-rows and the table budget: each table min(rows, cap), the cap the largest value
// <= max_rows whose tables fit `budget_bytes` at `bytes_per_row` (bench/peers/torch_dlrm_peer.py
// applies the same rule, so both sides build the same tables).
int64_t row_cap(const std::vector<int64_t>& rows, int64_t max_rows, double budget_bytes, int64_t bytes_per_row) {
  const auto bytes_at = [&](int64_t cap) {
    double b = 0;
    for (int64_t r : rows) b += static_cast<double>(std::min(r, cap)) * static_cast<double>(bytes_per_row);
    return b;
  };
  if (bytes_at(max_rows) <= budget_bytes) return max_rows;
  int64_t lo = 1, hi = max_rows;  // bytes_at(lo) fits (assumed), bytes_at(hi) does not
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (bytes_at(mid) <= budget_bytes ? lo : hi) = mid;
  }
  return lo;
}

std::vector<std::string> names(const char* prefix, int first, int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(prefix + std::to_string(first + i));
  return v;
}

// 26 tables C1..C26 of dim 128, one sum bag each, 13 dense features I1..I13.
DlrmConfig criteo_base(const int64_t* rows, int64_t max_rows, double budget_bytes, int64_t* cap) {
  DlrmConfig c;
  c.dense_features = names("I", 1, 13);
  std::vector<int64_t> full(rows, rows + 26);
  *cap = row_cap(full, max_rows, budget_bytes, 128 * 2);
  for (int t = 0; t < 26; ++t) {
    const std::string n = "C" + std::to_string(t + 1);
    c.tables.push_back(TableConfig{n, std::min(rows[t], *cap), 128});
    c.bags.push_back(BagConfig{n, t, Pooling::kSum, {n}});
  }
  c.bottom_mlp = {512, 256, 128};
  return c;
}

ModelSpec make_model(const std::string& name, int64_t max_rows, double budget_bytes) {
  ModelSpec m;
  m.name = name;
  if (name == "terabyte") {
    m.cfg = criteo_base(kTerabyteRows, max_rows, budget_bytes, &m.row_cap);
    m.cfg.interaction.type = InteractionType::kDot;
    m.cfg.interaction.pairs = Pairs::kStrictLower;
    m.cfg.interaction.include_dense = true;
    m.cfg.top_mlp = {1024, 1024, 512, 256, 1};  // input 128 + 27*26/2 = 479
    m.hotness.assign(26, 1);
    m.full_rows.assign(kTerabyteRows, kTerabyteRows + 26);
  } else if (name == "dcnv2") {
    m.cfg = criteo_base(kV2Rows, max_rows, budget_bytes, &m.row_cap);
    m.cfg.interaction.type = InteractionType::kDcnV2;
    m.cfg.interaction.layers = 3;
    m.cfg.interaction.rank = 512;
    m.cfg.top_mlp = {1024, 1024, 512, 256, 1};  // input 27 * 128 = 3456
    m.hotness.assign(kV2Hotness, kV2Hotness + 26);
    m.full_rows.assign(kV2Rows, kV2Rows + 26);
  } else if (name == "seed") {
    // The food-truck seed: nine label-encoded features pooled by one sum bag over one shared table.
    DlrmConfig& c = m.cfg;
    c.dense_features = {"sale_price", "age", "avg_monthly_purchase", "avg_weekly_purchase", "avg_yearly_purchase"};
    c.tables.push_back(TableConfig{"shared", 142, 128});
    c.bags.push_back(BagConfig{"food", 0, Pooling::kSum,
                               {"menu_item", "menu_type", "truck_brand", "item_category", "item_subcategory", "city",
                                "country", "gender", "marital_status"}});
    c.bottom_mlp = {256, 128};
    c.interaction.type = InteractionType::kOuter;
    c.interaction.pairs = Pairs::kUpperWithDiag;  // 256 * 257 / 2 = 32,896 products
    c.top_mlp = {128, 128, 1};                    // input 128 + 32,896 = 33,024
    m.hotness = {9};
    m.full_rows = {142};
    m.row_cap = 142;
  } else {
    FLURRY_FAIL("dlrm_bench: unknown model '" << name << "' (terabyte, seed, dcnv2)");
  }
  // Through the config's own JSON validation, so the bench cannot run a config the product refuses.
  m.cfg = dlrm_config_from_json(dlrm_config_to_json(m.cfg), "dlrm_bench " + name);
  return m;
}

// Multiply-adds x 2 of one sample: MLPs and cross layers (GEMMs) plus the interaction's products.
double flops_per_sample(const DlrmConfig& c) {
  double f = 0;
  int64_t in = c.num_dense();
  for (int64_t w : c.bottom_mlp) {
    f += 2.0 * static_cast<double>(in * w);
    in = w;
  }
  const int64_t n = 1 + c.num_bags(), d = c.embedding_dim();
  switch (c.interaction.type) {
    case InteractionType::kDot: f += 2.0 * static_cast<double>(DlrmConfig::pair_count(c.interaction.pairs, n) * d); break;
    case InteractionType::kOuter: f += static_cast<double>(DlrmConfig::pair_count(c.interaction.pairs, c.concat_width())); break;
    case InteractionType::kDcnV2:
      f += static_cast<double>(c.interaction.layers) * 2.0 * 2.0 * static_cast<double>(c.concat_width() * c.interaction.rank);
      break;
    case InteractionType::kCat: break;
  }
  in = c.interaction_out();
  for (int64_t w : c.top_mlp) {
    f += 2.0 * static_cast<double>(in * w);
    in = w;
  }
  return f;
}

// ---- workload ---------------------------------------------------------------------------------

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A counter-based uniform stream in [0, 1) (53 bits).
struct Uniform {
  uint64_t key, counter = 0;
  explicit Uniform(uint64_t k) : key(k) {}
  double operator()() { return static_cast<double>(splitmix64(key + counter++) >> 11) * (1.0 / 9007199254740992.0); }
};

// Zipf over ranks 1..n, P(k) ~ k^-s, by rejection-inversion (Hörmann and Derflinger, "Rejection-
// inversion to generate variates from monotone discrete distributions", 1996), as Apache Commons
// RNG's RejectionInversionZipfSampler: O(1) per draw and no table, so 40M-row tables cost nothing.
class Zipf {
 public:
  Zipf(int64_t n, double s) : n_(n), s_(s) {
    h_x1_ = h_integral(1.5) - 1.0;
    h_n_ = h_integral(static_cast<double>(n) + 0.5);
    sq_ = 2.0 - h_integral_inverse(h_integral(2.5) - h(2.0));
  }
  int64_t operator()(Uniform& u) const {
    if (n_ <= 1) return 1;
    for (;;) {
      const double v = h_n_ + u() * (h_x1_ - h_n_);
      const double x = h_integral_inverse(v);
      int64_t k = static_cast<int64_t>(x + 0.5);
      k = std::clamp<int64_t>(k, 1, n_);
      const double kd = static_cast<double>(k);
      if (kd - x <= sq_ || v >= h_integral(kd + 0.5) - h(kd)) return k;
    }
  }

 private:
  static double helper1(double x) { return std::abs(x) > 1e-8 ? std::log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x)); }
  static double helper2(double x) { return std::abs(x) > 1e-8 ? std::expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x)); }
  double h(double x) const { return std::exp(-s_ * std::log(x)); }
  double h_integral(double x) const {
    const double lx = std::log(x);
    return helper2((1.0 - s_) * lx) * lx;
  }
  double h_integral_inverse(double x) const {
    const double t = std::max(x * (1.0 - s_), -1.0);
    return std::exp(helper1(t) * x);
  }
  int64_t n_;
  double s_, h_x1_ = 0, h_n_ = 0, sq_ = 0;
};

// Rank k (1 = most frequent) to a row: a fixed bijection of [0, rows) (2654435761 is a prime larger
// than any table), so the hot rows are spread over the table as hashed ids are, not packed at its
// start.
int64_t rank_to_row(int64_t k, int64_t rows) {
  return static_cast<int64_t>((static_cast<uint64_t>(k - 1) * 2654435761ull) % static_cast<uint64_t>(rows));
}

// One batch of n samples: dense uniform in [0, 1), bag b holds hotness[b] Zipf(alpha) indices per
// sample, bag-major CSR (features.h). Bags are drawn on `threads` threads; values depend on
// (seed, batch key, bag, element) only.
DlrmBatch make_batch(const ModelSpec& m, int64_t n, double alpha, uint64_t key, int threads) {
  const DlrmConfig& c = m.cfg;
  const int64_t bags = c.num_bags();
  DlrmBatch b;
  b.n = n;
  b.dense.resize(static_cast<size_t>(n * c.num_dense()));
  Uniform ud(splitmix64(key ^ 0xD5A61266F0C9392Cull));
  for (float& v : b.dense) v = static_cast<float>(ud());
  b.offsets.resize(static_cast<size_t>(bags * n + 1));
  std::vector<int64_t> base(static_cast<size_t>(bags) + 1, 0);
  for (int64_t g = 0; g < bags; ++g) base[static_cast<size_t>(g) + 1] = base[static_cast<size_t>(g)] + n * m.hotness[static_cast<size_t>(g)];
  FLURRY_CHECK(base.back() < (int64_t{1} << 31), "dlrm_bench: " << base.back() << " indices exceed int32 offsets");
  b.indices.resize(static_cast<size_t>(base.back()));
  for (int64_t g = 0; g < bags; ++g) {
    const int64_t h = m.hotness[static_cast<size_t>(g)];
    for (int64_t i = 0; i <= n; ++i) {
      if (i < n || g + 1 == bags) b.offsets[static_cast<size_t>(g * n + i)] = static_cast<int32_t>(base[static_cast<size_t>(g)] + i * h);
    }
  }
  const auto fill = [&](int64_t g) {
    const int64_t rows = c.tables[static_cast<size_t>(c.bags[static_cast<size_t>(g)].table)].rows;
    const Zipf z(rows, alpha);
    Uniform u(splitmix64(key + 0x632BE59BD9B4E019ull * static_cast<uint64_t>(g + 1)));
    for (int64_t p = base[static_cast<size_t>(g)]; p < base[static_cast<size_t>(g) + 1]; ++p) {
      b.indices[static_cast<size_t>(p)] = static_cast<int32_t>(rank_to_row(z(u), rows));
    }
  };
  std::vector<std::thread> pool;
  const int use = static_cast<int>(std::min<int64_t>(std::max(threads, 1), bags));
  for (int t = 0; t < use; ++t) {
    pool.emplace_back([&, t] {
      for (int64_t g = t; g < bags; g += use) fill(g);
    });
  }
  for (std::thread& th : pool) th.join();
  return b;
}

// ---- command line -----------------------------------------------------------------------------

const char* kUsage =
    "dlrm_bench: DLRM forward throughput on one GPU (bench/dlrm/README.md)\n"
    "  --models L            comma list of terabyte, seed, dcnv2 (default terabyte,seed)\n"
    "  --batch-sizes L       samples per forward() call (default 4096,16384,65536)\n"
    "  --max-rows N          cap on any table's rows (default 40000000)\n"
    "  --table-budget-gb G   cap on one model's fp16 tables in GB (1e9 B), by lowering the row cap\n"
    "                        (default 60: MLPerf Terabyte's 48 GB and DLRM-v2's 52 GB fit)\n"
    "  --alpha A             Zipf exponent of the indices (default 1.05)\n"
    "  --seed N              seed of the weights and the batches (default 0)\n"
    "  --dtype T             f16 (default) or bf16: weights and activations on the device\n"
    "  --graphs L            comma list of on, off: CUDA graphs of the device pass (default on,off)\n"
    "  --outer-fusion L      comma list of auto, on, off: the outer interaction fused into the first\n"
    "                        top layer, for models that have one (default on,off)\n"
    "  --modes L             comma list of forward (synchronous calls), pipeline (forward_async back\n"
    "                        to back, one wait) (default forward,pipeline)\n"
    "  --pool N              distinct batches per size, used in turn (default 4)\n"
    "  --warmup N            untimed forward() calls per size (default 5)\n"
    "  --min-iters N         timed calls per size, at least (default 20)\n"
    "  --min-time-s S        and at least this long (default 2)\n"
    "  --max-iters N         at most (default 100000)\n"
    "  --check N             compare N samples with the CPU reference when the tables are small\n"
    "                        (< 2 GB as fp32; default 64, 0: off)\n"
    "  --tmp-dir DIR         where the random checkpoint is written (default: /dev/shm when it has\n"
    "                        room, else $TMPDIR or /tmp); removed once the weights are loaded\n"
    "  --threads N           threads for the checkpoint and the batches (default: hardware)\n"
    "  --quick               smoke run: --max-rows 20000 --batch-sizes 256,2048 --pool 2 --warmup 1\n"
    "                        --min-iters 3 --min-time-s 0 (explicit flags override it)\n"
    "  --dry-run             no GPU: build the models and one batch per size, print their JSON\n"
    "                        description, and (small tables) run the CPU reference on a batch\n"
    "  --help                this text\n"
    "stdout: one JSON object per (model, batch size); stderr: human-readable progress.\n";

struct Args {
  std::vector<std::string> models = {"terabyte", "seed"};
  std::vector<int64_t> batches = {4096, 16384, 65536};
  int64_t max_rows = 40000000;
  double budget_gb = 60.0, alpha = 1.05, min_time_s = 2.0;
  uint64_t seed = 0;
  DType dtype = DType::F16;
  std::vector<bool> graphs = {true, false};
  std::vector<OuterFusion> fusions = {OuterFusion::kOn, OuterFusion::kOff};
  std::vector<std::string> modes = {"forward", "pipeline"};
  int pool = 4, warmup = 5, min_iters = 20, max_iters = 100000, check = 64, threads = 0;
  std::string tmp_dir;
  bool quick = false, dry_run = false;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr, "dlrm_bench: %s\n%s", why.c_str(), kUsage);
  std::exit(2);
}

long long parse_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (end == v.c_str() || *end != '\0' || n < 0) usage_error(flag + " wants a non-negative integer, not '" + v + "'");
  return n;
}

double parse_real(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (end == v.c_str() || *end != '\0' || !(x >= 0)) usage_error(flag + " wants a non-negative number, not '" + v + "'");
  return x;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick") {  // first, so that explicit flags override it
      a.quick = true;
      a.max_rows = 20000;
      a.batches = {256, 2048};
      a.pool = 2;
      a.warmup = 1;
      a.min_iters = 3;
      a.min_time_s = 0;
    }
  }
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(f + " needs a value");
      return argv[++i];
    };
    if (f == "--help" || f == "-h") {
      std::printf("%s", kUsage);
      std::exit(0);
    } else if (f == "--quick") {
    } else if (f == "--dry-run") {
      a.dry_run = true;
    } else if (f == "--models") {
      a.models = split(value());
    } else if (f == "--batch-sizes") {
      a.batches.clear();
      for (const std::string& s : split(value())) a.batches.push_back(parse_int(f, s));
    } else if (f == "--max-rows") {
      a.max_rows = parse_int(f, value());
    } else if (f == "--table-budget-gb") {
      a.budget_gb = parse_real(f, value());
    } else if (f == "--alpha") {
      a.alpha = parse_real(f, value());
    } else if (f == "--seed") {
      a.seed = static_cast<uint64_t>(parse_int(f, value()));
    } else if (f == "--dtype") {
      const std::string t = value();
      if (t != "f16" && t != "bf16") usage_error("--dtype takes f16 or bf16");
      a.dtype = t == "f16" ? DType::F16 : DType::BF16;
    } else if (f == "--graphs") {
      a.graphs.clear();
      for (const std::string& g : split(value())) {
        if (g != "on" && g != "off") usage_error("--graphs takes a list of on, off");
        a.graphs.push_back(g == "on");
      }
    } else if (f == "--outer-fusion") {
      a.fusions.clear();
      for (const std::string& g : split(value())) {
        if (g != "auto" && g != "on" && g != "off") usage_error("--outer-fusion takes a list of auto, on, off");
        a.fusions.push_back(parse_outer_fusion(g));
      }
    } else if (f == "--modes") {
      a.modes = split(value());
      for (const std::string& g : a.modes) {
        if (g != "forward" && g != "pipeline") usage_error("--modes takes a list of forward, pipeline");
      }
    } else if (f == "--pool") {
      a.pool = static_cast<int>(parse_int(f, value()));
    } else if (f == "--warmup") {
      a.warmup = static_cast<int>(parse_int(f, value()));
    } else if (f == "--min-iters") {
      a.min_iters = static_cast<int>(parse_int(f, value()));
    } else if (f == "--min-time-s") {
      a.min_time_s = parse_real(f, value());
    } else if (f == "--max-iters") {
      a.max_iters = static_cast<int>(parse_int(f, value()));
    } else if (f == "--check") {
      a.check = static_cast<int>(parse_int(f, value()));
    } else if (f == "--tmp-dir") {
      a.tmp_dir = value();
    } else if (f == "--threads") {
      a.threads = static_cast<int>(parse_int(f, value()));
    } else {
      usage_error("unknown flag '" + f + "'");
    }
  }
  if (a.models.empty()) usage_error("--models is empty");
  if (a.batches.empty()) usage_error("--batch-sizes is empty");
  if (a.graphs.empty() || a.fusions.empty() || a.modes.empty()) usage_error("--graphs, --outer-fusion and --modes need a value");
  for (int64_t n : a.batches) {
    if (n < 1) usage_error("batch sizes must be >= 1");
  }
  if (a.max_rows < 1) usage_error("--max-rows must be >= 1");
  if (a.pool < 1) a.pool = 1;
  if (a.min_iters < 1) a.min_iters = 1;
  if (a.max_iters < a.min_iters) a.max_iters = a.min_iters;
  if (a.threads <= 0) a.threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 64);
  return a;
}

// ---- the random checkpoint ----------------------------------------------------------------------

// A folder for one model's random checkpoint, removed when the weights are on the device.
class TempCheckpoint {
 public:
  TempCheckpoint(const Args& a, const ModelSpec& m) {
    const models::WeightTable table = dlrm_weight_table(m.cfg);
    const size_t need = models::table_bytes(table, DType::F16, 256) + (size_t{64} << 20);
    dir_ = pick_dir(a.tmp_dir, need) /
           ("flurry_dlrm_bench_" + m.name + "_" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::create_directories(dir_);
    models::write_random_checkpoint(table, (dir_ / "model.safetensors").string(), {a.seed, DType::F16, a.threads});
  }
  ~TempCheckpoint() { remove(); }
  TempCheckpoint(const TempCheckpoint&) = delete;
  TempCheckpoint& operator=(const TempCheckpoint&) = delete;
  void remove() {
    if (dir_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
  std::string dir() const { return dir_.string(); }

 private:
  // --tmp-dir, else /dev/shm when it has room (no disk traffic; 48 GB of tables write at memory
  // speed), else $TMPDIR or /tmp; refused when the folder has less than `need` free.
  static std::filesystem::path pick_dir(const std::string& wanted, size_t need) {
    std::vector<std::filesystem::path> tries;
    if (!wanted.empty()) {
      tries.push_back(wanted);
    } else {
      tries.push_back("/dev/shm");
      tries.push_back(std::filesystem::temp_directory_path());
    }
    for (const std::filesystem::path& p : tries) {
      std::error_code ec;
      const std::filesystem::space_info s = std::filesystem::space(p, ec);
      if (!ec && s.available >= need) return p;
    }
    FLURRY_FAIL("dlrm_bench: no folder with " << need / 1e9 << " GB free for the random checkpoint (tried "
                                              << tries.front().string() << (tries.size() > 1 ? " and " + tries.back().string() : "")
                                              << "); use --tmp-dir, or lower --max-rows / --table-budget-gb");
  }
  std::filesystem::path dir_;
};

// ---- timing -----------------------------------------------------------------------------------

struct Result {
  int64_t batch = 0, iters = 0;
  double wall_s = 0, median_ms = 0, mean_ms = 0, min_ms = 0, max_ms = 0;
  double stage_ms = 0, gpu_ms = 0;  // per batch, from the model's stage timers
  double workload_s = 0;
  int64_t indices_per_batch = 0;
};

double stage_seconds(const nlohmann::json& j, const char* name) {
  return j.contains(name) ? j[name].value("seconds", 0.0) : 0.0;
}

// The pipeline: the pool's batches queued back to back with forward_async, one wait() at the end;
// every figure per batch is the wall time over the batches.
Result time_pipeline(DlrmGpu& gpu, const std::vector<DlrmBatch>& pool, const Args& a, std::vector<float>& logits) {
  Result r;
  r.batch = pool.front().n;
  r.indices_per_batch = static_cast<int64_t>(pool.front().indices.size());
  for (int i = 0; i < a.warmup; ++i) gpu.forward_async(pool[static_cast<size_t>(i) % pool.size()], logits.data());
  gpu.wait();
  StageTimers timers;
  gpu.set_timers(&timers);
  const auto t0 = Clock::now();
  for (size_t i = 0;; ++i) {
    const int64_t done = static_cast<int64_t>(i);
    if (done >= a.max_iters || (done >= a.min_iters && seconds_since(t0) >= a.min_time_s)) break;
    gpu.forward_async(pool[i % pool.size()], logits.data());  // the logits of every batch land in one buffer
    r.iters = done + 1;
  }
  gpu.wait();
  r.wall_s = seconds_since(t0);
  gpu.set_timers(nullptr);
  r.mean_ms = r.median_ms = r.min_ms = r.max_ms = r.wall_s * 1e3 / static_cast<double>(r.iters);
  const nlohmann::json tj = timers.to_json();
  r.stage_ms = stage_seconds(tj, "dlrm_stage") * 1e3 / static_cast<double>(r.iters);
  r.gpu_ms = stage_seconds(tj, "dlrm_gpu") * 1e3 / static_cast<double>(r.iters);
  return r;
}

Result time_batches(DlrmGpu& gpu, const std::vector<DlrmBatch>& pool, const Args& a, std::vector<float>& logits) {
  Result r;
  r.batch = pool.front().n;
  r.indices_per_batch = static_cast<int64_t>(pool.front().indices.size());
  for (int i = 0; i < a.warmup; ++i) gpu.forward(pool[static_cast<size_t>(i) % pool.size()], logits.data());
  StageTimers timers;
  gpu.set_timers(&timers);
  std::vector<double> ms;
  const auto t0 = Clock::now();
  for (size_t i = 0;; ++i) {
    const int64_t done = static_cast<int64_t>(ms.size());
    if (done >= a.max_iters || (done >= a.min_iters && seconds_since(t0) >= a.min_time_s)) break;
    const auto t = Clock::now();
    gpu.forward(pool[i % pool.size()], logits.data());
    ms.push_back(seconds_since(t) * 1e3);
  }
  r.wall_s = seconds_since(t0);
  gpu.set_timers(nullptr);
  r.iters = static_cast<int64_t>(ms.size());
  double sum = 0;
  for (double v : ms) sum += v;
  r.mean_ms = sum / static_cast<double>(ms.size());
  std::sort(ms.begin(), ms.end());
  r.median_ms = ms[ms.size() / 2];
  r.min_ms = ms.front();
  r.max_ms = ms.back();
  const nlohmann::json tj = timers.to_json();
  r.stage_ms = stage_seconds(tj, "dlrm_stage") * 1e3 / static_cast<double>(r.iters);
  r.gpu_ms = stage_seconds(tj, "dlrm_gpu") * 1e3 / static_cast<double>(r.iters);
  return r;
}

// The first `count` samples of `b` through the CPU reference against the device logits; fills the
// check fields of `out`. Skipped (and said so) when the tables are too large for an fp32 host copy.
bool check_against_cpu(const ModelSpec& m, const Checkpoint& ck, DlrmGpu& gpu, const DlrmBatch& b, int count,
                       OJson* out) {
  double rows = 0;
  for (const TableConfig& t : m.cfg.tables) rows += static_cast<double>(t.rows * t.dim);
  if (count <= 0 || rows * 4 > 2e9) {
    (*out)["check"] = count <= 0 ? "off" : "skipped (tables > 2 GB as fp32)";
    return true;
  }
  const int64_t n = std::min<int64_t>(count, b.n);
  DlrmBatch s;
  s.n = n;
  s.dense.assign(b.dense.begin(), b.dense.begin() + n * m.cfg.num_dense());
  s.offsets.push_back(0);
  for (int64_t g = 0; g < m.cfg.num_bags(); ++g) {
    for (int64_t i = 0; i < n; ++i) {
      const int32_t lo = b.offsets[static_cast<size_t>(g * b.n + i)], hi = b.offsets[static_cast<size_t>(g * b.n + i + 1)];
      s.indices.insert(s.indices.end(), b.indices.begin() + lo, b.indices.begin() + hi);
      s.offsets.push_back(static_cast<int32_t>(s.indices.size()));
    }
  }
  const DlrmModel cpu = load_dlrm_cpu(m.cfg, ck);
  DlrmScratch scratch;
  std::vector<float> ref(static_cast<size_t>(n)), got(static_cast<size_t>(n));
  dlrm_forward(cpu, s, scratch, ref.data());
  gpu.forward(s, got.data());
  double num = 0, den = 0, max_abs = 0;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(got[static_cast<size_t>(i)]) - ref[static_cast<size_t>(i)];
    finite = finite && std::isfinite(got[static_cast<size_t>(i)]);
    num += d * d;
    den += static_cast<double>(ref[static_cast<size_t>(i)]) * ref[static_cast<size_t>(i)];
    max_abs = std::max(max_abs, std::abs(d));
  }
  const double rel = den > 0 ? std::sqrt(num / den) : (num > 0 ? 1.0 : 0.0);
  // fp16/bf16 activations with fp32 accumulation against the fp32 reference on the same fp16
  // weights: a relative norm error of a few 1e-3 is expected; 3e-2 is the bound (STYLE.md).
  const bool ok = finite && den > 0 && rel <= 3e-2;
  (*out)["check"] = ok ? "ok" : "FAIL";
  (*out)["check_samples"] = n;
  (*out)["check_rel_err"] = rel;
  (*out)["check_max_abs_err"] = max_abs;
  return ok;
}

// ---- one model --------------------------------------------------------------------------------

OJson model_json(const ModelSpec& m, const Args& a) {
  const DlrmConfig& c = m.cfg;
  double rows = 0, emb_bytes_per_sample = 0;
  int64_t idx_per_sample = 0;
  for (const TableConfig& t : c.tables) rows += static_cast<double>(t.rows);
  for (size_t g = 0; g < c.bags.size(); ++g) {
    idx_per_sample += m.hotness[g];
    emb_bytes_per_sample += static_cast<double>(m.hotness[g] * c.tables[static_cast<size_t>(c.bags[g].table)].dim) * 2.0;
  }
  OJson j;
  j["tables"] = c.tables.size();
  j["bags"] = c.bags.size();
  j["table_rows_total"] = static_cast<int64_t>(rows);
  double full = 0;
  for (int64_t r : m.full_rows) full += static_cast<double>(r);
  j["table_rows_uncapped"] = static_cast<int64_t>(full);
  j["row_cap"] = m.row_cap;
  j["embedding_bytes"] = static_cast<int64_t>(rows * static_cast<double>(c.embedding_dim()) * static_cast<double>(dtype_size(a.dtype)));
  j["indices_per_sample"] = idx_per_sample;
  j["interaction"] = interaction_name(c.interaction.type);
  j["bottom_mlp"] = c.bottom_mlp;
  j["top_mlp"] = c.top_mlp;
  j["top_in"] = c.interaction_out();
  j["flops_per_sample"] = flops_per_sample(c);
  j["embedding_bytes_per_sample"] = emb_bytes_per_sample;  // rows gathered, at 2 B per value
  // What forward() copies host -> device per sample: dense (converted to the model dtype, rows
  // padded to 8), one offset per bag, the indices (int32).
  j["h2d_bytes_per_sample"] = static_cast<double>((c.num_dense() + 7) / 8 * 8 * 2 + 4 * c.num_bags() + 4 * idx_per_sample);
  return j;
}

// One JSON line (stdout) and one human line (stderr) for a timed (model, batch size, variant).
void print_result(const std::string& name, const Args& a, const std::string& device, const Result& r,
                  const DlrmGpu& gpu, const OJson& setup, const OJson& check, const OJson& desc, const OJson& variant) {
  const double pairs_per_s = static_cast<double>(r.iters * r.batch) / r.wall_s;
  OJson j;
  j["framework"] = "flurry";
  j["model"] = name;
  for (auto it = variant.begin(); it != variant.end(); ++it) j[it.key()] = it.value();
  j["batch"] = r.batch;
  j["pairs_per_s"] = pairs_per_s;
  j["ms_per_batch"] = r.median_ms;
  j["ms_per_batch_mean"] = r.mean_ms;
  j["ms_per_batch_min"] = r.min_ms;
  j["ms_per_batch_max"] = r.max_ms;
  j["batches"] = r.iters;
  j["wall_s"] = r.wall_s;
  j["time_ms_per_batch"] = {{"stage", r.stage_ms},
                            {"gpu", r.gpu_ms},
                            {"other", std::max(0.0, r.mean_ms - r.stage_ms - r.gpu_ms)}};
  j["timed"] = variant["variant"] == "pipeline"
                   ? "host clock around the pool's forward_async() calls and the final wait(), per batch"
                   : "host clock around forward(): validation + packing, H2D of inputs, device pass, D2H of logits";
  j["d2h_free_variant"] = "none (DlrmGpu has no forward without the logits' D2H)";
  j["dtype"] = dtype_name(a.dtype);
  j["device"] = device;
  j["zipf_alpha"] = a.alpha;
  j["seed"] = a.seed;
  j["pool"] = a.pool;
  j["indices_per_batch"] = r.indices_per_batch;
  j["workload_s"] = r.workload_s;
  j["device_bytes"] = gpu.device_bytes();
  j["setup_s"] = setup;
  for (auto it = check.begin(); it != check.end(); ++it) j[it.key()] = it.value();
  for (auto it = desc.begin(); it != desc.end(); ++it) j[it.key()] = it.value();
  std::fprintf(stderr,
               "[%s] batch %lld %s graphs %s fusion %s: %.2f M pairs/s, %.3f ms/batch median (stage %.3f, gpu %.3f), "
               "%lld batches\n",
               name.c_str(), static_cast<long long>(r.batch), variant["variant"].get<std::string>().c_str(),
               variant["graphs"].get<bool>() ? "on" : "off", variant["outer_fused"].get<bool>() ? "fused" : "materialised",
               pairs_per_s / 1e6, r.median_ms, r.stage_ms, r.gpu_ms, static_cast<long long>(r.iters));
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

// Builds, loads and times one model over the batch sizes; prints a JSON line per size. Returns
// false when the CPU check failed.
bool run_model(const std::string& name, const Args& a, const std::string& device) {
  const ModelSpec m = make_model(name, a.max_rows, a.budget_gb * 1e9);
  const OJson desc = model_json(m, a);
  std::fprintf(stderr, "[%s] %lld tables, %.1f M rows (cap %lld), %.2f GB of %s tables; %s interaction, top in %lld\n",
               name.c_str(), static_cast<long long>(m.cfg.tables.size()), desc["table_rows_total"].get<double>() / 1e6,
               static_cast<long long>(m.row_cap), desc["embedding_bytes"].get<double>() / 1e9, dtype_name(a.dtype),
               interaction_name(m.cfg.interaction.type), static_cast<long long>(m.cfg.interaction_out()));

  DlrmGpuOptions opt;
  opt.dtype = a.dtype;
  opt.max_batch = *std::max_element(a.batches.begin(), a.batches.end());
  // One model per outer-fusion setting (the interaction buffers differ); other interactions: one.
  const std::vector<OuterFusion> fusions =
      m.cfg.interaction.type == InteractionType::kOuter ? a.fusions : std::vector<OuterFusion>{OuterFusion::kAuto};
  size_t need = 0;
  for (OuterFusion f : fusions) {
    opt.outer_fusion = f;
    need += DlrmGpu::device_bytes(m.cfg, opt);
  }
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  FLURRY_CHECK(need < free_b, "dlrm_bench: " << name << " needs " << need / 1e9 << " GB of device memory, " << free_b / 1e9
                                             << " GB free; lower --table-budget-gb, --max-rows or the largest batch");

  std::vector<std::unique_ptr<DlrmGpu>> gpus;
  OJson setup;
  bool ok = true;
  std::vector<float> logits(static_cast<size_t>(opt.max_batch));
  std::vector<OJson> checks;
  {
    auto t = Clock::now();
    TempCheckpoint folder(a, m);
    setup["checkpoint_s"] = seconds_since(t);
    t = Clock::now();
    const Checkpoint ck = Checkpoint::open(folder.dir());
    const DlrmBatch probe = make_batch(m, std::min<int64_t>(std::max(a.check, 1), opt.max_batch), a.alpha,
                                       splitmix64(a.seed ^ 0xC0FFEEull), a.threads);
    for (OuterFusion f : fusions) {
      opt.outer_fusion = f;
      gpus.push_back(std::make_unique<DlrmGpu>());
      DlrmGpu& gpu = *gpus.back();
      gpu.load(m.cfg, ck, opt);
      setup["load_s"] = seconds_since(t);
      std::fprintf(stderr, "[%s] random fp16 checkpoint written in %.1f s, loaded in %.1f s (%.2f GB on the device)\n",
                   name.c_str(), setup["checkpoint_s"].get<double>(), setup["load_s"].get<double>(),
                   gpu.device_bytes() / 1e9);
      OJson check;
      ok = check_against_cpu(m, ck, gpu, probe, a.check, &check) && ok;
      std::fprintf(stderr, "[%s] outer fusion %s: CPU reference check: %s\n", name.c_str(), outer_fusion_name(f),
                   check.dump().c_str());
      checks.push_back(check);
    }
  }  // the checkpoint is unmapped and its folder removed here

  for (int64_t n : a.batches) {
    const auto tw = Clock::now();
    std::vector<DlrmBatch> pool;
    for (int p = 0; p < a.pool; ++p) {
      const uint64_t key = splitmix64(a.seed * 1000003ull + static_cast<uint64_t>(n) * 131ull + static_cast<uint64_t>(p));
      pool.push_back(make_batch(m, n, a.alpha, key, a.threads));
    }
    const double workload_s = seconds_since(tw);
    for (size_t gi = 0; gi < gpus.size(); ++gi) {
      for (bool graphs : a.graphs) {
        for (const std::string& mode : a.modes) {
          DlrmGpu& gpu = *gpus[gi];
          gpu.set_use_graphs(graphs);
          OJson variant = {{"variant", mode},
                           {"graphs", graphs},
                           {"outer_fusion", outer_fusion_name(fusions[gi])},
                           {"outer_fused", gpu.outer_fused()}};
          Result r = mode == "pipeline" ? time_pipeline(gpu, pool, a, logits) : time_batches(gpu, pool, a, logits);
          r.workload_s = workload_s;
          variant["graphs_captured"] = gpu.graphs();
          print_result(name, a, device, r, gpu, setup, checks[gi], desc, variant);
        }
      }
    }
  }
  return ok;
}

// --dry-run: everything but the device, so the models, the batches and the checkpoint can be
// checked on a machine without a GPU.
void dry_run_model(const std::string& name, const Args& a) {
  const ModelSpec m = make_model(name, a.max_rows, a.budget_gb * 1e9);
  OJson j = model_json(m, a);
  j["model"] = name;
  for (int64_t n : a.batches) {
    const auto t = Clock::now();
    const DlrmBatch b = make_batch(m, n, a.alpha, splitmix64(a.seed + static_cast<uint64_t>(n)), a.threads);
    // Share of the first bag's indices that hit its most frequent row (rank 1 maps to row 0).
    const int64_t h = m.hotness.front();
    int64_t row0 = 0;
    for (int64_t p = 0; p < n * h; ++p) row0 += b.indices[static_cast<size_t>(p)] == 0;
    j["batches"].push_back({{"batch", n},
                            {"indices", b.indices.size()},
                            {"offsets", b.offsets.size()},
                            {"last_offset", b.offsets.back()},
                            {"bag0_row0_share", static_cast<double>(row0) / static_cast<double>(n * h)},
                            {"make_s", seconds_since(t)}});
  }
  double rows = 0;
  for (const TableConfig& tc : m.cfg.tables) rows += static_cast<double>(tc.rows * tc.dim);
  if (rows * 4 <= 2e9 && a.check > 0) {
    TempCheckpoint folder(a, m);
    const Checkpoint ck = Checkpoint::open(folder.dir());
    const DlrmModel cpu = load_dlrm_cpu(m.cfg, ck);
    const DlrmBatch b = make_batch(m, a.check, a.alpha, splitmix64(a.seed ^ 0xC0FFEEull), a.threads);
    DlrmScratch scratch;
    std::vector<float> ref(static_cast<size_t>(b.n));
    dlrm_forward(cpu, b, scratch, ref.data());
    double mean = 0, sq = 0;
    for (float v : ref) {
      mean += v / static_cast<double>(b.n);
      sq += static_cast<double>(v) * v / static_cast<double>(b.n);
    }
    j["cpu_reference"] = {{"samples", b.n}, {"logit_mean", mean}, {"logit_std", std::sqrt(std::max(0.0, sq - mean * mean))}};
  }
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

int bench_main(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  if (a.dry_run) {
    for (const std::string& name : a.models) dry_run_model(name, a);
    return 0;
  }
  cudaDeviceProp prop{};
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  std::fprintf(stderr, "device: %s\n", bench::gpu_description().c_str());
  bool ok = true;
  for (const std::string& name : a.models) ok = run_model(name, a, prop.name) && ok;
  if (!ok) std::fprintf(stderr, "dlrm_bench: a CPU reference check failed (the 'check' field)\n");
  return ok ? 0 : 3;
}

}  // namespace
}  // namespace flurry::dlrm

int main(int argc, char** argv) {
  try {
    return flurry::dlrm::bench_main(argc, argv);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "dlrm_bench: %s\n", e.what());
    return 1;
  }
}
