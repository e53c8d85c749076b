#include "runtime/app/app.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/check.h"
#include "runtime/dist/runner_cli.h"
#include "runtime/log.h"

#if FLURRY_HAVE_BLAS
extern "C" void openblas_set_num_threads(int num_threads);
#endif

namespace flurry::app {

namespace {

// The interrupt message, formatted before the handler is installed: a handler may only write().
char g_interrupt_message[256];

extern "C" void flurry_app_on_signal(int sig) {
  ssize_t unused = ::write(STDERR_FILENO, g_interrupt_message, std::strlen(g_interrupt_message));
  (void)unused;
  // Die of the same signal so the launcher (mpirun, srun, a shell) sees what happened.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_signal_handlers(const std::string& binary) {
  std::snprintf(g_interrupt_message, sizeof(g_interrupt_message),
                "%s: interrupted; every record already written is kept: run again with --resume to "
                "finish\n",
                binary.c_str());
  struct sigaction sa {};
  sa.sa_handler = flurry_app_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void add_common_flags(CLI::App& cli, const AppSpec& spec, CommonFlags& c) {
  cli.add_option("--device", c.device,
                 spec.cuda_backend ? "cuda or cpu (the reference path); default: cuda when a GPU is present, else cpu"
                                   : "cpu (this binary was built without the CUDA backend)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cli.add_option("--batch-size,--batch_size", c.batch_size, spec.batch_size_help)
      ->check(CLI::PositiveNumber);
  cli.add_option("--max-gpu-memory,--max_gpu_memory", c.max_gpu_memory,
                 "cuda: upper bound on the device memory the run takes, e.g. 20GiB, 512MiB or bytes; "
                 "default: what the GPU has free");
  cli.add_option("--threads", c.threads, "CPU threads for the reference path's matrix products (0: library default)")
      ->check(CLI::NonNegativeNumber);
  cli.add_option("--log-level,--log_level", c.log_level, "debug, info, warn, error or off");
  cli.add_flag("--dry-run,--dry_run", c.dry_run,
               "start up (ranks, device, this rank's GPU), print one line per rank and exit without "
               "loading the model or touching --output-dir");
}

}  // namespace

size_t parse_bytes(const std::string& text, const std::string& flag) {
  if (text.empty()) return 0;
  size_t used = 0;
  double v = 0.0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    FLURRY_FAIL(flag << " '" << text << "': expected a size such as 20GiB, 512MiB or a byte count");
  }
  std::string unit = text.substr(used);
  for (char& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  double scale = 0.0;
  if (unit.empty() || unit == "b") {
    scale = 1.0;
  } else if (unit == "k" || unit == "kb" || unit == "kib") {
    scale = 1024.0;
  } else if (unit == "m" || unit == "mb" || unit == "mib") {
    scale = 1024.0 * 1024.0;
  } else if (unit == "g" || unit == "gb" || unit == "gib") {
    scale = 1024.0 * 1024.0 * 1024.0;
  } else if (unit == "t" || unit == "tb" || unit == "tib") {
    scale = 1024.0 * 1024.0 * 1024.0 * 1024.0;
  } else {
    FLURRY_FAIL(flag << " '" << text << "': unknown unit '" << unit << "' (use B, KiB, MiB, GiB or TiB)");
  }
  FLURRY_CHECK(v >= 0.0 && v * scale < 1.8e19, flag << " '" << text << "' is out of range");
  return static_cast<size_t>(v * scale);
}

std::string resolve_device(const std::string& requested, bool backend_built, int gpu_count,
                           const std::string& why_no_gpu, const std::string& binary) {
  const std::string why = !backend_built ? "this " + binary + " was built without the CUDA backend" : why_no_gpu;
  const bool gpu = backend_built && gpu_count > 0;
  if (requested == "cuda") {
    FLURRY_CHECK(gpu, "--device cuda: " << why << "; use --device cpu");
    return "cuda";
  }
  if (requested == "cpu") return "cpu";
  FLURRY_CHECK(requested.empty(), "--device '" << requested << "': expected cpu or cuda");
  LOG_INFO("device " << (gpu ? "cuda (a GPU is present)" : "cpu (" + why + ")") << "; --device overrides");
  return gpu ? "cuda" : "cpu";
}

int visible_device_count(const char* value) {
  if (value == nullptr) return -1;
  int n = 0;
  const char* p = value;
  for (;;) {
    const char* end = std::strchr(p, ',');
    std::string entry(p, end ? static_cast<size_t>(end - p) : std::strlen(p));
    // Surrounding blanks are tolerated; an entry is an ordinal or a GPU-/MIG- UUID.
    entry.erase(0, entry.find_first_not_of(" \t"));
    entry.erase(entry.find_last_not_of(" \t") + 1);
    const bool ordinal = !entry.empty() && std::all_of(entry.begin(), entry.end(), [](char ch) {
      return std::isdigit(static_cast<unsigned char>(ch)) != 0;
    });
    const bool uuid = entry.rfind("GPU-", 0) == 0 || entry.rfind("MIG-", 0) == 0;
    if (!ordinal && !uuid) break;  // the runtime stops at the first invalid entry
    ++n;
    if (end == nullptr) break;
    p = end + 1;
  }
  return n;
}

int run_app(int argc, char** argv, const AppSpec& spec, const ProcessMain& process) {
  init_logging_from_env();
  try {
    dist::DistContext ctx(&argc, &argv);
    CLI::App cli{spec.binary + ": " + spec.description, spec.binary};
    cli.option_defaults()->always_capture_default();  // --help shows every default
    AppContext app{ctx, spec, CommonFlags{}, dist::InputSpec{}, dist::RunnerOptions{}, "", -1, 0, &cli};
    app.common.batch_size = spec.default_batch_size;
    dist::add_runner_flags(cli, app.inputs, app.runner);
    add_common_flags(cli, spec, app.common);
    if (spec.add_flags) spec.add_flags(cli);
    std::vector<std::string> args(argv + 1, argv + argc);
    if (spec.rewrite_args) args = spec.rewrite_args(std::move(args));
    std::reverse(args.begin(), args.end());  // CLI11's vector parse takes the arguments reversed
    try {
      cli.parse(args);
    } catch (const CLI::ParseError& e) {
      return cli.exit(e);
    }
    set_log_level(parse_log_level(app.common.log_level));
#if FLURRY_HAVE_BLAS
    if (app.common.threads > 0) openblas_set_num_threads(app.common.threads);
#endif
    install_signal_handlers(spec.binary);
    app.max_gpu_bytes = parse_bytes(app.common.max_gpu_memory);  // validated on every device
    std::string why;
    const int gpus = spec.cuda_backend ? dist::usable_gpu_count(&why) : 0;
    app.device = resolve_device(app.common.device, spec.cuda_backend, gpus, why, spec.binary);
    // Every rank drives its own GPU: node-local rank modulo the devices this node shows it.
    if (app.device == "cuda") app.gpu = ctx.select_device();
    app.runner.binary = spec.binary;
    app.runner.flags = dist::cli_flags_json(cli);
    app.runner.extra["device"] = app.device;
    if (app.common.dry_run) {
      // One line per rank, in rank order as far as stdout allows: what this start-up chose.
      std::printf("%s rank %d/%d local %d/%d host %s device %s gpu %d\n", spec.binary.c_str(), ctx.rank(),
                  ctx.size(), ctx.local_rank(), ctx.local_size(), ctx.hostname().c_str(), app.device.c_str(),
                  app.gpu);
      std::fflush(stdout);
      return 0;
    }
    return process(app);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", spec.binary.c_str(), e.what());
    return 2;
  }
}

}  // namespace flurry::app
