// The command-line flags every flurry binary shares, for CLI11 apps (needs CLI11, which is what
// FLURRY_HAVE_CLI11 says). Adds:
//   inputs (positional)      files or directories
//   --input-list FILE        one path per line
//   --glob PATTERN           file names to take from directories (default "*")
//   --output-dir DIR         shards, results.jsonl, manifest.json (default flurry-out)
//   --resume / --overwrite / --retry-errors
//   --dead-rank-timeout S    silence after which rank 0 declares a rank dead
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "runtime/dist/inputs.h"
#include "runtime/dist/runner.h"

namespace flurry::dist {

void add_runner_flags(CLI::App& app, InputSpec& inputs, RunnerOptions& opts);

// The parsed command line as {"flag": value}, for RunnerOptions::flags (the manifest).
nlohmann::json cli_flags_json(const CLI::App& app);

}  // namespace flurry::dist
