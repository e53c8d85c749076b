#include "runtime/dist/runner.h"

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <filesystem>
#include <sstream>
#include <unordered_set>

#include "runtime/check.h"
#include "runtime/device.h"
#include "runtime/dist/mpi_check.h"
#include "runtime/dist/blobs.h"
#include "runtime/dist/records.h"
#include "runtime/dist/session.h"
#include "runtime/log.h"

namespace fs = std::filesystem;

namespace flurry::dist {

#ifndef FLURRY_VERSION_STRING
#define FLURRY_VERSION_STRING "unknown"
#endif

std::string flurry_version() { return FLURRY_VERSION_STRING; }

std::string outputs_dir(const std::string& output_dir) { return output_dir + "/outputs"; }

std::string item_output_base(const RunnerOptions& opts, const WorkItem& item) {
  FLURRY_CHECK(!item.key.empty(), "item '" << item.id << "' has no output key (make items with collect_inputs, "
                                           "make_items or make_row_chunks)");
  const fs::path base = fs::path(outputs_dir(opts.output_dir)) / item.key;
  std::error_code ec;
  fs::create_directories(base.parent_path(), ec);
  FLURRY_CHECK(!ec, base.parent_path().string() << ": cannot create output folder: " << ec.message());
  return base.string();
}

namespace {

// Rank 0 decides; every rank throws the same error (or none).
void agree_on_error(const DistContext& ctx, std::string error) {
#if FLURRY_HAVE_MPI
  if (ctx.mpi_active() && ctx.size() > 1) {
    uint64_t n = error.size();
    MPI_CHECK(MPI_Bcast(&n, 1, MPI_UINT64_T, 0, ctx.world()));
    error.resize(n);
    if (n > 0) MPI_CHECK(MPI_Bcast(&error[0], static_cast<int>(n), MPI_CHAR, 0, ctx.world()));
  }
#else
  (void)ctx;
#endif
  if (!error.empty()) throw Error(error);
}

// FNV-1a over the ids and costs: every rank must be working on the same list.
[[maybe_unused]] uint64_t list_hash(const std::vector<WorkItem>& items) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& it : items) {
    for (unsigned char c : it.id) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  }
  return h ^ items.size();
}

bool has_earlier_output(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir + "/results.jsonl", ec)) return true;
  if (fs::is_directory(outputs_dir(dir), ec) && !fs::is_empty(outputs_dir(dir), ec)) return true;
  if (!fs::is_directory(shard_dir(dir), ec)) return false;
  for (const auto& e : fs::directory_iterator(shard_dir(dir), ec)) {
    if (e.path().extension() == ".jsonl" && e.file_size(ec) > 0) return true;
  }
  return false;
}

// For jobs with item data: whether a record's bytes are intact in its data shard (a full read and
// checksum, so each record is checked once per call site's pass). Null for jobs without data.
std::function<bool(const Json&)> data_check(const RunnerOptions& opts) {
  if (opts.data_output.empty()) return nullptr;
  auto memo = std::make_shared<std::map<std::pair<std::string, uint64_t>, bool>>();
  return [dir = opts.output_dir, memo](const Json& rec) {
    if (!rec.contains("data") || !rec["data"].is_object()) return !rec.contains("data");
    const auto key = std::make_pair(rec["data"].value("file", std::string()), rec["data"].value("offset", uint64_t{0}));
    const auto it = memo->find(key);
    if (it != memo->end()) return it->second;
    const bool ok = blob_intact(dir, rec);
    memo->emplace(key, ok);
    return ok;
  };
}

// Rank 0: prepares the output folder and returns the positions still to do.
std::vector<int64_t> prepare_output(const RunnerOptions& opts, const std::vector<WorkItem>& items,
                                    int64_t* resumed) {
  fs::create_directories(shard_dir(opts.output_dir));
  if (opts.overwrite) {
    for (const auto& e : fs::directory_iterator(shard_dir(opts.output_dir))) {
      if (e.path().extension() == ".jsonl" || e.path().extension() == ".bin") fs::remove(e.path());
    }
    if (!opts.data_output.empty()) fs::remove(opts.output_dir + "/" + opts.data_output);
    fs::remove(opts.output_dir + "/results.jsonl");
    fs::remove(opts.output_dir + "/manifest.json");
    fs::remove_all(outputs_dir(opts.output_dir));
  } else if (!opts.resume && has_earlier_output(opts.output_dir)) {
    FLURRY_FAIL(opts.output_dir << " already holds results of an earlier run: pass --resume to finish "
                                   "it, or --overwrite to start over");
  }
  std::unordered_set<std::string> done;
  if (opts.resume) {
    int64_t damaged = 0;
    const auto sound = data_check(opts);
    for (const auto& kv : load_records(opts.output_dir, sound)) {
      if (opts.retry_errors && kv.second["status"] != "ok") continue;
      // A job with binary outputs trusts an ok record only with its bytes intact in a data shard.
      if (sound && kv.second["status"] == "ok" && (!kv.second.contains("data") || !sound(kv.second))) {
        ++damaged;
        continue;
      }
      done.insert(kv.first);
    }
    if (damaged > 0) LOG_WARN("resume: " << damaged << " record(s) without intact data are done again");
  }
  std::vector<int64_t> pending;
  for (const auto& it : items) {
    if (done.count(it.id) == 0) pending.push_back(it.index);
  }
  *resumed = static_cast<int64_t>(items.size() - pending.size());
  if (opts.resume) {
    LOG_INFO("resume: " << *resumed << " of " << items.size() << " inputs already have a record, "
                        << pending.size() << " to do");
  }
  return pending;
}

std::vector<RankStats> gather_stats(const DistContext& ctx, const RankStats& mine,
                                    std::vector<std::string>* hosts) {
  std::vector<RankStats> all{mine};
  hosts->assign(1, ctx.hostname());
#if FLURRY_HAVE_MPI
  if (ctx.mpi_active() && ctx.size() > 1) {
    const double v[5] = {mine.ok, mine.errors, mine.work, mine.busy_s, mine.finish_s};
    std::vector<double> buf(5 * static_cast<size_t>(ctx.size()));
    MPI_CHECK(MPI_Gather(v, 5, MPI_DOUBLE, buf.data(), 5, MPI_DOUBLE, 0, ctx.world()));
    char name[64] = {0};
    std::snprintf(name, sizeof(name), "%s", ctx.hostname().c_str());
    std::vector<char> names(64 * static_cast<size_t>(ctx.size()));
    MPI_CHECK(MPI_Gather(name, 64, MPI_CHAR, names.data(), 64, MPI_CHAR, 0, ctx.world()));
    all.assign(static_cast<size_t>(ctx.size()), RankStats{});
    hosts->assign(static_cast<size_t>(ctx.size()), "");
    for (size_t r = 0; r < all.size(); ++r) {
      all[r] = RankStats{buf[5 * r], buf[5 * r + 1], buf[5 * r + 2], buf[5 * r + 3], buf[5 * r + 4]};
      (*hosts)[r] = std::string(&names[64 * r], strnlen(&names[64 * r], 64));
    }
  }
#endif
  return all;
}

// Every rank's string at rank 0 (others get an empty vector).
std::vector<std::string> gather_strings(const DistContext& ctx, const std::string& mine) {
  std::vector<std::string> all{mine};
#if FLURRY_HAVE_MPI
  if (ctx.mpi_active() && ctx.size() > 1) {
    const int n = static_cast<int>(mine.size());
    std::vector<int> sizes(static_cast<size_t>(ctx.size())), displs(static_cast<size_t>(ctx.size()));
    MPI_CHECK(MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, ctx.world()));
    int total = 0;
    for (size_t r = 0; r < sizes.size(); ++r) {
      displs[r] = total;
      total += sizes[r];
    }
    std::vector<char> buf(static_cast<size_t>(std::max(total, 1)));
    MPI_CHECK(MPI_Gatherv(mine.data(), n, MPI_CHAR, buf.data(), sizes.data(), displs.data(), MPI_CHAR, 0,
                          ctx.world()));
    all.clear();
    if (ctx.is_root()) {
      for (size_t r = 0; r < sizes.size(); ++r) all.emplace_back(buf.data() + displs[r], static_cast<size_t>(sizes[r]));
    }
  }
#else
  (void)ctx;
#endif
  return all;
}

std::string iso_time(std::time_t t) {
  char buf[32];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct MergeResult {
  int64_t ok = 0, errors = 0, missing = 0;
};

// Rank 0, after every shard is closed: results.jsonl in input order, each input exactly once.
MergeResult write_results(const RunnerOptions& opts, const std::vector<WorkItem>& items) {
  auto records = load_records(opts.output_dir, data_check(opts));
  MergeResult m;
  std::vector<nlohmann::ordered_json> lines;
  lines.reserve(items.size());
  for (const auto& it : items) {
    auto found = records.find(it.id);
    nlohmann::ordered_json line;
    line["index"] = it.index;
    line["id"] = it.id;
    if (found == records.end()) {
      // Cannot happen unless a shard was lost; say so rather than drop the input.
      ++m.missing;
      line["status"] = "error";
      line["error"] = "no result was recorded for this input (shard lost?); rerun with --resume";
    } else {
      const Json& rec = found->second;
      line["status"] = rec["status"];
      if (rec.contains("error")) line["error"] = rec["error"];
      for (auto f = rec.begin(); f != rec.end(); ++f) {
        if (f.key() == "index" || f.key() == "id" || f.key() == "status" || f.key() == "error") continue;
        line[f.key()] = f.value();
      }
    }
    (line["status"] == "ok" ? m.ok : m.errors) += 1;
    lines.push_back(std::move(line));
  }
  if (!opts.data_output.empty()) {
    const uint64_t bytes = merge_blobs(opts.output_dir, opts.data_output, opts.data_header, lines);
    LOG_INFO(opts.data_output << ": " << bytes << " bytes of item data in input order");
  }
  std::string out;
  for (const auto& line : lines) {
    out += line.dump(-1, ' ', false, Json::error_handler_t::replace);
    out += '\n';
  }
  write_file_atomic(opts.output_dir + "/results.jsonl", out);
  return m;
}

void write_manifest(const DistContext& ctx, const RunnerOptions& opts, const std::vector<WorkItem>& items,
                    const MergeResult& m, int64_t resumed, double wall_s, std::time_t started,
                    const std::vector<RankStats>& ranks, const std::vector<std::string>& hosts,
                    const std::vector<std::string>& stages) {
  nlohmann::ordered_json j;
  j["binary"] = opts.binary;
  j["model"] = opts.model;
  j["inputs"] = items.size();
  j["ok"] = m.ok;
  j["errors"] = m.errors;
  j["resumed"] = resumed;
  j["processed_this_run"] = static_cast<int64_t>(items.size()) - resumed;
  j["started_at"] = iso_time(started);
  j["finished_at"] = iso_time(std::time(nullptr));
  j["wall_s"] = wall_s;
  double work = 0;
  for (const auto& r : ranks) work += r.work;
  j["unit"] = opts.unit;
  j["work"] = work;
  j["throughput"] = {{"value", wall_s > 0 ? work / wall_s : 0.0}, {"unit", opts.unit + "/s"}};
  j["ranks"] = ctx.size();
  j["launcher"] = ctx.launcher();
  nlohmann::ordered_json per_rank = nlohmann::ordered_json::array();
  for (size_t r = 0; r < ranks.size(); ++r) {
    per_rank.push_back({{"rank", r}, {"host", hosts[r]}, {"items", static_cast<int64_t>(ranks[r].ok + ranks[r].errors)},
                        {"errors", static_cast<int64_t>(ranks[r].errors)}, {"work", ranks[r].work}, {"busy_s", ranks[r].busy_s},
                        {"finish_s", ranks[r].finish_s}});
  }
  if (opts.timers != nullptr) {
    StageTimers all;
    for (size_t r = 0; r < stages.size() && r < per_rank.size(); ++r) {
      const Json one = Json::parse(stages[r], nullptr, false);
      all.merge_json(one);
      per_rank[r]["stages"] = one;
    }
    j["stages"] = all.to_json();
  }
  j["per_rank"] = per_rank;
  j["versions"] = {{"flurry", opts.version.empty() ? flurry_version() : opts.version},
                   {"mpi", mpi_library_version()},
                   {"cuda_built", cuda_built()}};
  j["flags"] = opts.flags;
  for (auto it = opts.extra.begin(); it != opts.extra.end(); ++it) j[it.key()] = it.value();
  write_file_atomic(opts.output_dir + "/manifest.json", j.dump(2) + "\n");
}

// A fault that is not an input's: say what and where, keep every record written, end the job.
[[noreturn]] void stop_rank(const DistContext& ctx, const RunnerOptions& opts, const std::string& item,
                            const std::string& what) {
  LOG_ERROR("rank " << ctx.rank() << " stopped" << (item.empty() ? "" : " on input '" + item + "'") << ": "
                    << what << ". This is not a fault of the input; records already written are kept in "
                    << opts.output_dir << ": run again with --resume to do the rest");
  ctx.abort(2);
}

int64_t fatal_test_index() {
  const char* v = std::getenv("FLURRY_TEST_FATAL_AT");
  return (v != nullptr && *v != '\0') ? std::atoll(v) : -1;
}

int bcast_status(const DistContext& ctx, int status) {
#if FLURRY_HAVE_MPI
  if (ctx.mpi_active() && ctx.size() > 1) MPI_CHECK(MPI_Bcast(&status, 1, MPI_INT, 0, ctx.world()));
#else
  (void)ctx;
#endif
  return status;
}

}  // namespace

int run_job_session(DistContext& ctx, const RunnerOptions& opts, const std::vector<WorkItem>& items,
                    const SessionFn& body) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::time_t started = std::time(nullptr);
  for (size_t i = 0; i < items.size(); ++i) {
    FLURRY_CHECK(items[i].index == static_cast<int64_t>(i),
                 "item " << i << " ('" << items[i].id << "') has index " << items[i].index
                         << ": items must be numbered by position (use collect_inputs or make_items)");
  }
#if FLURRY_HAVE_MPI
  if (ctx.mpi_active() && ctx.size() > 1) {
    const uint64_t h = list_hash(items);
    uint64_t lo = h, hi = h;
    MPI_CHECK(MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, ctx.world()));
    MPI_CHECK(MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, ctx.world()));
    FLURRY_CHECK(lo == hi, "ranks see different input lists; collect inputs with collect_inputs(..., &ctx)");
  }
#endif
  std::vector<int64_t> pending;
  int64_t resumed = 0;
  std::string error;
  if (ctx.is_root()) {
    try {
      pending = prepare_output(opts, items, &resumed);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree_on_error(ctx, error);
  // The folder exists now; each rank appends to its own shard (on a filesystem all nodes share).
  fs::create_directories(shard_dir(opts.output_dir));
  ShardWriter shard(shard_path(opts.output_dir, ctx.rank()), opts.sync_every);
  std::unique_ptr<BlobWriter> blobs;
  if (!opts.data_output.empty()) {
    blobs = std::make_unique<BlobWriter>(shard_dir(opts.output_dir) + "/" + blob_shard_name(ctx.rank()),
                                         opts.data_sync_bytes);
  }
  ctx.barrier();  // aligned start: per-rank finish times are comparable

  Session session(ctx, opts, items, std::move(pending), shard, blobs.get());
  session.start();
  try {
    body(session);
  } catch (const std::exception& e) {
    stop_rank(ctx, opts, "", e.what());
  }
  session.stop();
  if (blobs) blobs->sync();  // the bytes before the records: both durable before the merge
  shard.sync();
  std::vector<std::string> hosts;
  const auto stats = gather_stats(ctx, session.stats(), &hosts);
  std::vector<std::string> stages;
  if (opts.timers != nullptr) {
    if (!opts.timers->empty()) LOG_INFO("rank " << ctx.rank() << " stages: " << opts.timers->summary());
    stages = gather_strings(ctx, opts.timers->to_json().dump());
  }
  ctx.barrier();  // every shard is complete on disk before rank 0 reads them

  int status = 0;
  if (ctx.is_root()) {
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const MergeResult m = write_results(opts, items);
    write_manifest(ctx, opts, items, m, resumed, wall, started, stats, hosts, stages);
    LOG_INFO(items.size() << " inputs: " << m.ok << " ok, " << m.errors << " error(s)"
                          << (resumed > 0 ? ", " + std::to_string(resumed) + " from an earlier run" : "")
                          << "; results in " << opts.output_dir << "/results.jsonl");
    if (m.missing > 0) LOG_ERROR(m.missing << " input(s) have no record; rerun with --resume");
    status = m.errors > 0 ? 1 : 0;
  }
  return bcast_status(ctx, status);
}

namespace {

// The per-input loop of both run_job forms: the fatal-fault test hook, an InputError becomes the
// input's error record, anything else is not the input's fault and stops the rank (going on would
// turn every remaining input into an error record; --resume finishes instead).
int run_items(DistContext& ctx, const RunnerOptions& opts, const std::vector<WorkItem>& items,
              const std::function<void(JobSession&, const WorkItem&)>& one) {
  const int64_t fatal_at = fatal_test_index();
  return run_job_session(ctx, opts, items, [&](JobSession& s) {
    WorkItem item;
    while (s.next(&item)) {
      try {
        if (item.index == fatal_at) FLURRY_FAIL("injected fatal fault (FLURRY_TEST_FATAL_AT=" << fatal_at << ")");
        one(s, item);
      } catch (const InputError& e) {
        s.fail(item, e.what());
      } catch (const std::exception& e) {
        stop_rank(ctx, opts, item.id, e.what());
      }
    }
    if (opts.after_last_item) opts.after_last_item();
  });
}

}  // namespace

int run_job(DistContext& ctx, const RunnerOptions& opts, const std::vector<WorkItem>& items,
            const ProcessFn& process) {
  return run_items(ctx, opts, items, [&](JobSession& s, const WorkItem& it) { s.complete(it, process(it)); });
}

int run_job(DistContext& ctx, const RunnerOptions& opts, const std::vector<WorkItem>& items,
            const ProcessDataFn& process) {
  FLURRY_CHECK(!opts.data_output.empty(), "run_job with item data needs RunnerOptions::data_output");
  std::vector<char> data;
  return run_items(ctx, opts, items, [&](JobSession& s, const WorkItem& it) {
    data.clear();
    const Json fields = process(it, &data);
    s.complete_with_data(it, fields, data.data(), data.size());
  });
}

}  // namespace flurry::dist
