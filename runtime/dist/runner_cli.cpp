#include "runtime/dist/runner_cli.h"

namespace flurry::dist {

void add_runner_flags(CLI::App& app, InputSpec& inputs, RunnerOptions& opts) {
  app.add_option("inputs", inputs.paths, "Input files, or directories searched recursively (see --glob)");
  app.add_option("--input-list", inputs.input_list, "File with one input path per line ('#' comments)");
  app.add_option("--glob", inputs.glob, "Pattern for file names taken from directories, e.g. '*.wav'")
      ->capture_default_str();
  app.add_option("--output-dir", opts.output_dir,
                 "Where shards/, results.jsonl and manifest.json go (shared by all nodes)")
      ->capture_default_str();
  app.add_flag("--resume", opts.resume, "Skip inputs that already have a record in --output-dir");
  app.add_flag("--overwrite", opts.overwrite, "Delete the results of an earlier run in --output-dir first");
  app.add_flag("--retry-errors", opts.retry_errors, "With --resume: process inputs that failed before again");
  app.add_option("--dead-rank-timeout", opts.dead_rank_timeout_s,
                 "Seconds without word from a rank after which the job stops and names it")
      ->capture_default_str();
}

nlohmann::json cli_flags_json(const CLI::App& app) {
  nlohmann::json j = nlohmann::json::object();
  for (const CLI::Option* opt : app.get_options()) {
    const std::string name = opt->get_name(false, true);
    if (name.empty() || name == "--help" || name == "-h") continue;
    const auto& res = opt->results();
    std::string key = opt->get_lnames().empty() ? name : opt->get_lnames().front();
    if (opt->get_lnames().empty() && !opt->get_snames().empty()) key = opt->get_snames().front();
    if (opt->get_type_size() == 0) {  // a flag
      j[key] = opt->count() > 0;
    } else if (opt->get_expected_max() > 1) {
      j[key] = res;
    } else if (!res.empty()) {
      j[key] = res.front();
    } else if (!opt->get_default_str().empty()) {
      j[key] = opt->get_default_str();
    }
  }
  return j;
}

}  // namespace flurry::dist
