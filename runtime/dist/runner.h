// The distributed job runner: every model binary hands it a list of inputs and a function that
// processes one input, and gets dynamic load balancing over all ranks, one output shard per rank,
// crash-safe resume, a progress line, and the merged results.jsonl + manifest.json.
//
// How a binary uses it (flurry-whisper, flurry-embed, flurry-dlrm):
//
//   int main(int argc, char** argv) {
//     flurry::dist::DistContext ctx(&argc, &argv);       // MPI or not, rank, local rank
//     CLI::App app{"flurry-whisper: transcribe audio"};
//     flurry::dist::InputSpec inputs;
//     flurry::dist::RunnerOptions opts;
//     flurry::dist::add_runner_flags(app, inputs, opts);  // runner_cli.h: paths, --output-dir, ...
//     ...model flags...
//     CLI11_PARSE(app, argc, argv);
//     ctx.select_device();
//     opts.binary = "flurry-whisper"; opts.model = model_dir; opts.unit = "audio s";
//     opts.flags = flurry::dist::cli_flags_json(app);
//     auto items = flurry::dist::collect_inputs(inputs, audio_duration_seconds, &ctx);
//     Model model = load(...);                             // once per rank
//     return flurry::dist::run_job(ctx, opts, items, [&](const flurry::dist::WorkItem& it) {
//       return transcribe(model, it.id);                   // result fields, or throw flurry::Error
//     });
//   }
//
// Pipelined binaries (reader threads feeding GPU batches, a writer thread) use run_job_session()
// instead and pull items with JobSession::next() from any thread, reporting each result with
// complete() or fail() from any thread.
//
// What the runner guarantees:
//   - Rank 0 hands out work largest-cost first in shrinking chunks (schedule.h); rank 0 works too.
//   - Each rank appends records to OUTPUT_DIR/shards/rank-K.jsonl, one line per input, so a kill at
//     any moment loses at most the inputs in flight; --resume skips every input that has a record.
//   - An input whose processing throws flurry::InputError (the input's own fault) becomes
//     {"status": "error", "error": ...} and the job goes on. Anything else (flurry::Error from a
//     CUDA/MPI/library check or a broken invariant, any other exception) is not the input's fault:
//     the rank says which item it held and why, and the job stops with exit status 2 (MPI_Abort
//     under a launcher). The records written so far stay; --resume redoes only what is missing.
//     The test hook FLURRY_TEST_FATAL_AT=<index> raises such a fault at that input.
//   - Per-item output files (transcripts, ...) go under OUTPUT_DIR/outputs/ by the item's key
//     (item_output_base), so same-named inputs in two folders never overwrite each other, and
//     --overwrite removes them with the rest.
//   - A rank that dies: under mpirun the job is brought down and rank 0 prints what every rank held;
//     with launchers that do not, rank 0 notices the silence after dead_rank_timeout_s and stops
//     the job naming the rank and its items.
//   - At the end rank 0 writes OUTPUT_DIR/results.jsonl (input order, every input exactly once) and
//     OUTPUT_DIR/manifest.json, both atomically. run_job returns 0 when every input is ok, 1 when
//     any failed (the same value on every rank).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/dist/context.h"
#include "runtime/dist/inputs.h"
#include "runtime/stage_timers.h"

namespace flurry::dist {

using Json = nlohmann::json;

struct RunnerOptions {
  std::string output_dir = "flurry-out";
  bool resume = false;        // skip inputs that already have a record under output_dir
  bool overwrite = false;     // start over: remove earlier shards and results first
  bool retry_errors = false;  // with resume: process inputs whose record is an error again
  std::string unit = "bytes";  // unit of WorkItem::cost and of the throughput ("audio s", "tokens")
  std::string binary;          // "flurry-whisper"
  std::string model;           // checkpoint path or name
  std::string version;         // defaults to the flurry version
  Json flags = Json::object();  // the command line, for the manifest
  Json extra = Json::object();  // more manifest fields from the binary (device, dtype, batch plan)
  // Result field that holds the work an input really took in `unit` (e.g. "duration"); when empty
  // or absent from a result, the item's cost counts as its work.
  std::string work_key;
  double chunk_k = 2.0;          // chunk = remaining cost / (chunk_k * ranks)
  int sync_every = 1;            // fsync the shard every N records (1: every record)
  double progress_interval_s = 10;  // between plain progress lines when stderr is not a terminal
  double heartbeat_s = 2;           // how often a busy rank tells rank 0 it is alive
  double dead_rank_timeout_s = 120;  // silence after which rank 0 declares a rank dead
  // Binary per-item outputs (blobs.h): when set, items may come with bytes (complete_with_data,
  // ProcessDataFn) and rank 0 assembles them in input order into OUTPUT_DIR/<data_output>, after
  // data_header(total bytes) (e.g. a .npy header). The data shards are fsynced every
  // data_sync_bytes rather than per item.
  std::string data_output;
  // Stage timers the binary fills (load, audio, mel, encode, decode, ...); when set, each rank logs
  // its summary at the end and manifest.json gets "stages" (all ranks summed) and per-rank stages.
  StageTimers* timers = nullptr;
  std::function<std::string(uint64_t)> data_header;
  int64_t data_sync_bytes = 64ll << 20;
  // run_job only: called on each rank once next() has said there is no more work for it, still
  // inside the session (rank 0 keeps serving the others' requests meanwhile). For jobs whose items
  // take part in collectives across ranks (flurry-dlrm --shard-tables), so that a rank out of work
  // keeps joining them until every rank is done. A throw stops the rank like an item's fault.
  std::function<void()> after_last_item;
};

using ProcessFn = std::function<Json(const WorkItem&)>;
// For jobs with binary outputs: fills `data` with the item's bytes and returns its record fields.
using ProcessDataFn = std::function<Json(const WorkItem&, std::vector<char>* data)>;

// The per-rank view of a running job, for pipelined binaries. All methods are thread-safe.
class JobSession {
 public:
  virtual ~JobSession() = default;
  // The next input for this rank; blocks while rank 0 is asked for more; false when the job has
  // no work left for this rank.
  virtual bool next(WorkItem* item) = 0;
  // Records the result of an input this rank got from next(). `fields` must be a JSON object.
  virtual void complete(const WorkItem& item, const Json& fields) = 0;
  // The same with the item's bytes (needs RunnerOptions::data_output); the bytes reach the data
  // shard before the record does.
  virtual void complete_with_data(const WorkItem& item, const Json& fields, const void* data, size_t bytes) = 0;
  virtual void fail(const WorkItem& item, const std::string& message) = 0;
  virtual const DistContext& context() const = 0;
};

using SessionFn = std::function<void(JobSession&)>;

// Collective: every rank calls it with the same items (collect_inputs guarantees that).
int run_job(DistContext& ctx, const RunnerOptions& opts, const std::vector<WorkItem>& items,
            const ProcessFn& process);
int run_job_session(DistContext& ctx, const RunnerOptions& opts, const std::vector<WorkItem>& items,
                    const SessionFn& body);
int run_job(DistContext& ctx, const RunnerOptions& opts, const std::vector<WorkItem>& items,
            const ProcessDataFn& process);

// OUTPUT_DIR/outputs/<item.key>: the path, without extension, of an item's own output files; its
// folder is created. The writer adds ".txt", ".srt", ... .
std::string item_output_base(const RunnerOptions& opts, const WorkItem& item);
std::string outputs_dir(const std::string& output_dir);

// The flurry version string for manifests ("0.1.0").
std::string flurry_version();

}  // namespace flurry::dist
