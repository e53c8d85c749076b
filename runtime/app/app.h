// The start-up every flurry binary shares, so that flurry-whisper, flurry-embed and flurry-dlrm
// add only their own flags and a process function:
//
//   int main(int argc, char** argv) {
//     flurry::app::AppSpec spec;
//     spec.binary = "flurry-embed";
//     spec.description = "embed text with a BERT-style sentence encoder";
//     spec.cuda_backend = FLURRY_EMBED_GPU;               // whether this binary has a GPU path
//     EmbedFlags f;
//     spec.add_flags = [&](CLI::App& cli) { cli.add_option("--model", f.model, "..."); };
//     return flurry::app::run_app(argc, argv, spec, [&](flurry::app::AppContext& app) {
//       ...load the model once, collect inputs...
//       return flurry::dist::run_job(app.dist, app.runner, items, process_one);
//     });
//   }
//
// run_app does, in this order: logging from the environment; the DistContext (MPI or not); one
// CLI11 app named after the binary (its usage line says "flurry-embed") with the runner's flags,
// the common flags below and the model's; parsing; --log-level; --threads; SIGINT/SIGTERM
// handling; the device (--device, or cuda when the backend is built and a GPU is present); and,
// for cuda, this rank's GPU by node-local rank (DistContext::select_device). Any exception that
// escapes is printed as "<binary>: <message>" and gives exit status 2.
#pragma once

#include <CLI/CLI.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "runtime/dist/context.h"
#include "runtime/dist/inputs.h"
#include "runtime/dist/runner.h"

namespace flurry::app {

// Flags every binary has; the model's code reads them from AppContext::common.
struct CommonFlags {
  std::string device;          // "cpu", "cuda" or "" (choose)
  int batch_size = 0;          // 0: the binary's own default (AppSpec::default_batch_size)
  std::string max_gpu_memory;  // "20GiB", "512MiB", bytes; "" or "0": what the GPU has free
  std::string log_level = "info";
  int threads = 0;             // CPU threads of the reference path's BLAS (0: library default)
  bool dry_run = false;        // print the start-up's choices per rank and exit
};

struct AppSpec {
  std::string binary;       // "flurry-whisper": the usage line, log and error prefix, manifest
  std::string description;  // one line for --help
  bool cuda_backend = false;  // the binary was built with a GPU path for its model
  int default_batch_size = 1;
  std::string batch_size_help = "inputs processed together on the device";
  // Adds the model's flags to the parser (called before parsing).
  std::function<void(CLI::App&)> add_flags;
  // Rewrites argv before parsing (flurry-whisper accepts openai-whisper's underscore spellings).
  // Receives the arguments without argv[0], in order; returns them in order.
  std::function<std::vector<std::string>(std::vector<std::string>)> rewrite_args;
};

// What the process function gets: the rank's context, the parsed common flags and the runner's
// options (output folder, resume, ...) with binary and flags already filled in.
struct AppContext {
  dist::DistContext& dist;
  const AppSpec& spec;
  CommonFlags common;
  dist::InputSpec inputs;
  dist::RunnerOptions runner;
  std::string device;       // resolved: "cpu" or "cuda"
  int gpu = -1;             // this rank's CUDA ordinal for cuda, -1 for cpu
  size_t max_gpu_bytes = 0;  // parsed --max-gpu-memory (0: no bound)
  CLI::App* cli = nullptr;
};

using ProcessMain = std::function<int(AppContext&)>;

int run_app(int argc, char** argv, const AppSpec& spec, const ProcessMain& process);

// "20GiB", "512MiB", "20G", "1.5GB", "64k" or a byte count; "" or "0": 0 (no bound). `flag` names
// the flag in the error message.
size_t parse_bytes(const std::string& text, const std::string& flag = "--max-gpu-memory");

// --device: "cuda" or "cpu" as asked (cuda without a usable GPU is an error naming the reason), or
// when empty cuda if `backend_built` and `gpu_count` > 0, else cpu. `why_no_gpu` explains a zero.
std::string resolve_device(const std::string& requested, bool backend_built, int gpu_count,
                           const std::string& why_no_gpu, const std::string& binary);

// How many devices a CUDA_VISIBLE_DEVICES value exposes, as the CUDA runtime reads it: entries up
// to the first invalid one ("-1", an empty entry, garbage) count; unset (nullptr) means "all",
// returned as -1.
int visible_device_count(const char* cuda_visible_devices);

}  // namespace flurry::app
