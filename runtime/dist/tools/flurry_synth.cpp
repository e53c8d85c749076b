// flurry-synth: the distributed runner with a simulated model, for tests and for trying a launcher
// (mpirun, srun) before a real job. Each input "costs" its cost estimate times --ms-per-unit of
// sleep and yields a deterministic result, so two runs of the same inputs give the same records.
//
//   flurry-synth --synthetic 200 --heavy 5 --heavy-factor 20 --output-dir out
//   mpirun -n 4 flurry-synth --synthetic 1000 --fail 3,17 --output-dir out
//   flurry-synth data/ --glob '*.wav' --output-dir out          (cost = file size, 1 ms per KiB)
//
// Fault injection: --fail LIST (indices whose processing throws flurry::InputError: error records),
// --fatal-at N (input N raises a fault that is not the input's: the rank stops, exit status 2),
// --crash-at N (the rank that gets input N kills itself with SIGKILL before processing it),
// --crash-rank R --crash-after S (rank R kills itself S seconds into the job, wherever it is),
// --crash-rank R --crash-after-items K (rank R dies as it starts its K-th input, K from 1).
#include <CLI/CLI.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <set>
#include <sstream>
#include <thread>

#include "runtime/check.h"
#include "runtime/dist/context.h"
#include "runtime/dist/runner.h"
#include "runtime/app/app.h"
#include "runtime/device.h"
#include "runtime/log.h"

namespace {

using flurry::dist::WorkItem;

std::set<int64_t> parse_index_list(const std::string& s) {
  std::set<int64_t> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    if (!tok.empty()) out.insert(std::stoll(tok));
  }
  return out;
}

// Ids "syn/000042"; every (n / heavy)-th item costs `factor`, the others 1.
std::vector<WorkItem> synthetic_items(int64_t n, int64_t heavy, double factor) {
  std::vector<std::string> ids;
  for (int64_t i = 0; i < n; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "syn/%06lld", static_cast<long long>(i));
    ids.emplace_back(buf);
  }
  const int64_t stride = heavy > 0 ? std::max<int64_t>(1, n / heavy) : 0;
  return flurry::dist::make_items(ids, [&](const std::string& id) {
    const int64_t i = std::stoll(id.substr(4));
    return (stride > 0 && i % stride == 0 && i / stride < heavy) ? factor : 1.0;
  });
}

// A deterministic "model output" of an id (FNV-1a), so reruns can be compared record by record.
uint64_t fake_value(const std::string& id) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : id) h = (h ^ c) * 1099511628211ull;
  return h % 1000003;
}

}  // namespace

int main(int argc, char** argv) {
  flurry::app::AppSpec spec;
  spec.binary = "flurry-synth";
  spec.description = "the distributed runner with a simulated model (tests, launcher checks)";
  spec.cuda_backend = flurry::cuda_built();  // no GPU work; --device cuda exercises rank -> GPU
  int64_t synthetic = 0, heavy = 0, crash_at = -1, crash_after_items = -1, started = 0, fatal_at = -1;
  double heavy_factor = 20, ms_per_unit = 1, crash_after = -1;
  int crash_rank = -1;
  std::string fail_list;
  double chunk_k = 2.0, progress_interval = 10;
  spec.add_flags = [&](CLI::App& app) {
    app.add_option("--synthetic", synthetic, "Make N synthetic inputs instead of reading paths");
    app.add_option("--heavy", heavy, "How many synthetic inputs are heavy");
    app.add_option("--heavy-factor", heavy_factor, "Cost of a heavy input (others cost 1)");
    app.add_option("--ms-per-unit", ms_per_unit, "Milliseconds of simulated work per unit of cost "
                                                 "(file inputs: one unit per KiB)");
    app.add_option("--fail", fail_list, "Comma-separated input indices that fail (input errors: error records)");
    app.add_option("--fatal-at", fatal_at, "Input index whose processing raises a fault that is not the input's "
                                           "(the rank must stop, exit status 2)");
    app.add_option("--crash-at", crash_at, "The rank that gets this input index dies (SIGKILL)");
    app.add_option("--crash-rank", crash_rank, "Rank that dies after --crash-after seconds");
    app.add_option("--crash-after", crash_after, "Seconds into the job at which --crash-rank dies");
    app.add_option("--crash-after-items", crash_after_items, "--crash-rank dies as it starts its K-th input");
    app.add_option("--chunk-k", chunk_k, "Guided scheduling divisor");
    app.add_option("--progress-interval", progress_interval, "Seconds between progress lines");
  };
  return flurry::app::run_app(argc, argv, spec, [&](flurry::app::AppContext& a) {
    flurry::dist::DistContext& ctx = a.dist;
    flurry::dist::RunnerOptions& opts = a.runner;
    opts.unit = "units";
    opts.model = "synthetic";
    opts.chunk_k = chunk_k;
    opts.progress_interval_s = progress_interval;
    std::vector<WorkItem> items;
    if (synthetic > 0) {
      items = synthetic_items(synthetic, heavy, heavy_factor);
    } else {
      items = flurry::dist::collect_inputs(
          a.inputs, [](const std::string& p) { return flurry::dist::byte_size_cost(p) / 1024.0; }, &ctx);
    }
    const std::set<int64_t> fail = parse_index_list(fail_list);
    if (crash_rank == ctx.rank() && crash_after >= 0) {
      std::thread([crash_after] {
        std::this_thread::sleep_for(std::chrono::duration<double>(crash_after));
        std::raise(SIGKILL);
      }).detach();
    }
    return flurry::dist::run_job(ctx, opts, items, [&](const WorkItem& it) {
      if (it.index == crash_at) std::raise(SIGKILL);
      if (crash_rank == ctx.rank() && ++started == crash_after_items) std::raise(SIGKILL);
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(it.cost * ms_per_unit));
      if (fail.count(it.index)) FLURRY_INPUT_FAIL("simulated failure of input " << it.index);
      FLURRY_CHECK(it.index != fatal_at, "simulated device fault at input " << it.index);
      if (synthetic == 0) {
        FILE* f = std::fopen(it.id.c_str(), "rb");  // a real input that cannot be opened fails
        FLURRY_INPUT_CHECK(f != nullptr, "cannot open " << it.id);
        std::fclose(f);
      }
      return nlohmann::json{{"value", fake_value(it.id)}, {"cost", it.cost}};
    });
  });
}
