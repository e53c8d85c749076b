// The jobs of flurry-dlrm over the runner: score (pairs in, logits and probabilities out), eval (the
// same with labels, then AUC / precision / recall / log loss) and recommend (per customer, the top k
// of a filtered candidate set of items). Each is exactly once across ranks and resumable; outputs
// are assembled in input order by the runner.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "io/text_rows.h"
#include "models/dlrm/config.h"
#include "models/dlrm/features.h"
#include "models/dlrm/model.h"
#include "runtime/app/app.h"
#include "runtime/stage_timers.h"

namespace flurry::dlrm {

// A model folder: config.json, model.safetensors and (unless given elsewhere) features.json.
struct DlrmAssets {
  std::string dir;
  DlrmConfig cfg;
  FeatureSpec spec;
  std::unique_ptr<Checkpoint> ck;
};
// Refuses a folder that lacks a file, a checkpoint that does not fit the config and a spec that does
// not fit the model, naming the reason, before any row is read.
DlrmAssets load_dlrm_assets(const std::string& dir, const std::string& spec_path);

// What turns a batch into logits: the CPU reference or the GPU model.
class Scorer {
 public:
  virtual ~Scorer() = default;
  virtual void score(const DlrmBatch& batch, float* logits) = 0;
  // Queued scoring for callers that issue many batches: logits[0 .. batch.n) are written by the
  // time wait() returns and must stay valid until then; `batch` may be reused as soon as this
  // returns. The GPU overlaps the copies of one batch with the pass of another (and the caller's
  // encoding of the next); the default scores at once.
  virtual void score_async(const DlrmBatch& batch, float* logits) { score(batch, logits); }
  virtual void wait() {}
  virtual const char* device() const = 0;
  // The k best candidates of each customer: `batch` holds customers x candidates pairs,
  // customer-major; valid (may be null) marks the pairs that may be recommended. top_logits /
  // top_index [customers, k]: descending logits, ties to the lower candidate index, -inf / -1 where
  // a customer has fewer than k valid candidates. The default scores every pair and ranks on the
  // host; the GPU keeps the scores on the device.
  virtual void topk(const DlrmBatch& batch, int64_t customers, int64_t candidates, const uint8_t* valid, int k,
                    float* top_logits, int32_t* top_index);
  // Called once on each rank when it has no work left, before the job ends (the runner's
  // after_last_item): a sharded scorer keeps joining the other ranks' exchange steps until every
  // rank is done (sharded_scorer.h). Nothing for the others.
  virtual void finish() {}
  // Manifest fields of the scorer (the shard plan), under "sharding"; null: none.
  virtual Json manifest() const { return Json(); }

 private:
  std::vector<float> logits_;
};

class CpuScorer : public Scorer {
 public:
  explicit CpuScorer(const DlrmAssets& a);
  void score(const DlrmBatch& batch, float* logits) override;
  const char* device() const override { return "cpu"; }

 private:
  DlrmModel model_;
  DlrmScratch scratch_;
};

struct ScoreOptions {
  TextFormat format = TextFormat::kAuto;
  std::string id_field;       // column copied to the output as the row's id ("<file>:<row>" without)
  bool eval = false;          // read the label column (the spec's "label" or label_field) too
  std::string label_field;
  double threshold = 0.5;     // eval: predicted positive when probability >= threshold
  int64_t rows_per_chunk = 8192;
  int64_t batch = 4096;       // pairs per forward
};

// OUTPUT_DIR/scores.csv (row,id,logit,probability[,label],error: input order, one line per input
// row; a bad row keeps its place with empty scores and the reason) and, with eval, metrics.json.
int run_score(app::AppContext& app, const DlrmAssets& a, const ScoreOptions& o, Scorer& scorer,
              const std::vector<std::string>& paths, StageTimers* timers);

struct RecommendOptions {
  std::string customers, items, orders;   // tables (CSV, TSV or JSONL)
  std::string customer_id = "customer_id", item_id = "menu_item_id", truck_id = "truck_id";
  std::string customer_city = "city";     // shown in the output
  std::map<std::string, std::vector<std::string>> where;  // item column -> accepted values
  // (item column, customer column): keep items whose field equals the customer's (e.g. the
  // customer's own country).
  std::vector<std::pair<std::string, std::string>> match;
  bool items_not_ordered = false;         // leave out what the customer already bought
  bool trucks_not_visited = false;        // leave out the trucks the customer already bought from
  std::vector<std::string> item_fields;   // item columns shown with each recommendation
  int top_k = 3;
  int64_t customers_per_chunk = 256;
  int64_t batch = 4096;                   // pairs per forward
  std::string sqlite;                     // "": OUTPUT_DIR/recommendations.sqlite
  std::string table = "RECOMMENDATIONS";
};

// OUTPUT_DIR/recommendations.jsonl (one line per customer, input order), recommendations.csv and
// the SQLite table (replaced atomically).
int run_recommend(app::AppContext& app, const DlrmAssets& a, const RecommendOptions& o, Scorer& scorer,
                  StageTimers* timers);

}  // namespace flurry::dlrm
