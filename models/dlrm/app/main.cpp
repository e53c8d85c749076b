// flurry-dlrm: DLRM scoring, evaluation and top-k recommendations, alone or as one rank of an
// mpirun/srun job.
//
//   flurry-dlrm score --model DIR pairs.csv --output-dir out            # out/scores.csv
//   flurry-dlrm eval --model DIR test.csv --output-dir out              # + out/metrics.json
//   flurry-dlrm recommend --model DIR --customers c.csv --items i.csv --orders o.csv
//       --country US --items-not-ordered --top-k 3 --table RECOMMENDATIONS --output-dir out
//   mpirun -np 4 flurry-dlrm score --shard-tables ...     # each rank holds a quarter of the tables
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "models/dlrm/app/dlrm_job.h"
#include "models/dlrm/app/sharded_scorer.h"
#if FLURRY_DLRM_GPU
#include "models/dlrm/app/gpu_scorer.h"
#endif
#include "runtime/app/app.h"
#include "runtime/check.h"
#include "runtime/log.h"

namespace {

using namespace flurry;

struct Flags {
  std::string mode = "score";
  std::string model, spec, input_format = "auto";
  dlrm::ScoreOptions score;
  dlrm::RecommendOptions rec;
  std::vector<std::string> country, city, brand, where, match;
  std::string item_fields = "menu_item,truck_brand";
  std::string dtype = "float16";
  bool shard_tables = false;
};

std::vector<std::string> mode_word(std::vector<std::string> args) {
  if (!args.empty() && (args[0] == "score" || args[0] == "eval" || args[0] == "recommend")) args[0] = "--mode=" + args[0];
  return args;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(sep, start);
    const std::string part = s.substr(start, at == std::string::npos ? std::string::npos : at - start);
    if (!part.empty()) out.push_back(part);
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

void add_flags(CLI::App& cli, Flags& f) {
  cli.add_option("--mode", f.mode, "score (default), eval or recommend; also given as the first word")
      ->check(CLI::IsMember({"score", "eval", "recommend"}));
  cli.add_option("--model", f.model, "model folder: config.json, model.safetensors, features.json (default: $FLURRY_DLRM_MODEL)");
  cli.add_option("--spec", f.spec, "feature spec (training-time encoders); default: the model folder's features.json");
  cli.add_option("--input-format", f.input_format, "score/eval inputs: auto (by extension), csv, tsv, jsonl, criteo");
  cli.add_option("--id-field", f.score.id_field, "score/eval: column copied to scores.csv as the row id");
  cli.add_option("--label-field", f.score.label_field, "eval: the 0/1 label column (default: the spec's \"label\")");
  cli.add_option("--threshold", f.score.threshold, "eval: probability at or above which a row is predicted positive");
  cli.add_option("--chunk-rows", f.score.rows_per_chunk, "score/eval: rows per work unit handed to a rank")->check(CLI::PositiveNumber);
  cli.add_option("--customers", f.rec.customers, "recommend: customers table (CSV/TSV/JSONL), one recommendation row each");
  cli.add_option("--items", f.rec.items, "recommend: items table, the candidates");
  cli.add_option("--orders", f.rec.orders, "recommend: purchase history (customer id, item id[, truck id])");
  cli.add_option("--top-k", f.rec.top_k, "recommend: items per customer")->check(CLI::Range(1, 1000));
  cli.add_option("--country", f.country, "recommend: keep items whose country is one of these")->delimiter(',');
  cli.add_option("--city", f.city, "recommend: keep items whose city is one of these")->delimiter(',');
  cli.add_option("--truck-brand", f.brand, "recommend: keep items whose truck_brand is one of these")->delimiter(',');
  cli.add_option("--where", f.where, "recommend: COLUMN=V1,V2 keeps items whose COLUMN is one of the values (repeatable)");
  cli.add_option("--match", f.match,
                 "recommend: ITEM_COLUMN=CUSTOMER_COLUMN keeps items whose field equals the customer's, e.g. "
                 "country=country for the customer's own country (repeatable)");
  cli.add_flag("--items-not-ordered", f.rec.items_not_ordered, "recommend: leave out items the customer already ordered");
  cli.add_flag("--trucks-not-visited", f.rec.trucks_not_visited, "recommend: leave out trucks the customer already bought from");
  cli.add_option("--item-fields", f.item_fields, "recommend: item columns shown with each recommendation (comma-separated)");
  cli.add_option("--customer-id", f.rec.customer_id, "recommend: customer id column");
  cli.add_option("--item-id", f.rec.item_id, "recommend: item id column");
  cli.add_option("--truck-id", f.rec.truck_id, "recommend: truck id column");
  cli.add_option("--chunk-customers", f.rec.customers_per_chunk, "recommend: customers per work unit")->check(CLI::PositiveNumber);
  cli.add_option("--dtype", f.dtype, "cuda: weights and activations (fp32 accumulation)")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
  cli.add_flag("--shard-tables", f.shard_tables,
               "split the embedding tables over the ranks (greedy by bytes; the plan is logged and kept in "
               "manifest.json): each rank loads only its tables and pools them for every rank's batches, for "
               "tables larger than one GPU or host; results are identical to the unsharded run");
  cli.add_option("--sqlite", f.rec.sqlite, "recommend: SQLite database (default: OUTPUT_DIR/recommendations.sqlite)");
  cli.add_option("--table", f.rec.table, "recommend: SQLite table, replaced atomically");
}

int process(app::AppContext& app, Flags& f) {
  if (f.model.empty()) {
    if (const char* env = std::getenv("FLURRY_DLRM_MODEL")) f.model = env;
  }
  FLURRY_CHECK(!f.model.empty(), "no --model DIR given (a folder with config.json, model.safetensors, features.json)");
  StageTimers timers;
  dlrm::DlrmAssets assets;
  const int64_t batch = app.common.batch_size > 0 ? app.common.batch_size : 4096;
  std::unique_ptr<dlrm::Scorer> scorer_ptr;
  {
    ScopedStage st(&timers, "load");
    assets = dlrm::load_dlrm_assets(f.model, f.spec);
    if (app.device == "cpu") {
      if (f.shard_tables) {
        scorer_ptr = std::make_unique<dlrm::ShardedCpuScorer>(assets, app.dist);
      } else {
        scorer_ptr = std::make_unique<dlrm::CpuScorer>(assets);
      }
    } else {
#if FLURRY_DLRM_GPU
      dlrm::DlrmGpuOptions go;
      go.dtype = f.dtype == "float32" ? DType::F32 : (f.dtype == "bfloat16" ? DType::BF16 : DType::F16);
      go.max_batch = batch;
      go.max_gpu_memory = app.max_gpu_bytes;
      if (f.shard_tables) {
        scorer_ptr = std::make_unique<dlrm::ShardedGpuScorer>(assets, go, app.dist, &timers);
      } else {
        scorer_ptr = std::make_unique<dlrm::GpuScorer>(assets, go, &timers);
      }
#else
      FLURRY_FAIL("this flurry-dlrm was built without CUDA; use --device cpu");
#endif
    }
  }
  dlrm::Scorer& scorer = *scorer_ptr;
  LOG_INFO("model " << f.model << ": " << assets.cfg.num_dense() << " dense, " << assets.cfg.num_bags() << " bags, "
                    << dlrm::interaction_name(assets.cfg.interaction.type) << " interaction ("
                    << assets.cfg.interaction_out() << " wide); device " << scorer.device() << ", batch " << batch);
  if (f.mode == "recommend") {
    f.rec.batch = batch;
    if (!f.country.empty()) f.rec.where["country"] = f.country;
    if (!f.city.empty()) f.rec.where["city"] = f.city;
    if (!f.brand.empty()) f.rec.where["truck_brand"] = f.brand;
    for (const std::string& w : f.where) {
      const size_t eq = w.find('=');
      FLURRY_CHECK(eq != std::string::npos && eq > 0, "--where takes COLUMN=V1,V2, got '" << w << "'");
      f.rec.where[w.substr(0, eq)] = split(w.substr(eq + 1), ',');
    }
    for (const std::string& m : f.match) {
      const size_t eq = m.find('=');
      FLURRY_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < m.size(), "--match takes ITEM_COLUMN=CUSTOMER_COLUMN, got '" << m << "'");
      f.rec.match.emplace_back(m.substr(0, eq), m.substr(eq + 1));
    }
    f.rec.item_fields = split(f.item_fields, ',');
    return dlrm::run_recommend(app, assets, f.rec, scorer, &timers);
  }
  f.score.batch = batch;
  f.score.eval = f.mode == "eval";
  f.score.format = parse_text_format(f.input_format);
  return dlrm::run_score(app, assets, f.score, scorer, app.inputs.paths, &timers);
}

}  // namespace

int main(int argc, char** argv) {
  app::AppSpec spec;
  spec.binary = "flurry-dlrm";
  spec.description = "DLRM scoring, evaluation (AUC, precision, recall, log loss) and top-k recommendations";
  spec.default_batch_size = 4096;
  spec.batch_size_help = "pairs scored together";
  spec.rewrite_args = mode_word;
#if FLURRY_DLRM_GPU
  spec.cuda_backend = true;
#endif
  Flags f;
  spec.add_flags = [&](CLI::App& cli) { add_flags(cli, f); };
  return app::run_app(argc, argv, spec, [&](app::AppContext& a) { return process(a, f); });
}
