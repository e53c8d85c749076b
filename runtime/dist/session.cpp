#include "runtime/dist/session.h"

#include <unistd.h>

#include <csignal>
#include <cstring>

#include "runtime/check.h"
#include "runtime/dist/mpi_check.h"
#include "runtime/dist/progress.h"
#include "runtime/log.h"

namespace flurry::dist {

namespace {

constexpr int kTagRequest = 7101;  // worker -> 0: report, then wants a chunk
constexpr int kTagReport = 7102;   // worker -> 0: report only (progress, heartbeat)
constexpr int kTagChunk = 7103;    // 0 -> worker: positions; empty means no more work
constexpr int kReportHeader = 3;   // ok delta, error delta, work delta (double bits)

int64_t double_bits(double d) {
  int64_t b;
  std::memcpy(&b, &d, sizeof(b));
  return b;
}
[[maybe_unused]] double bits_double(int64_t b) {
  double d;
  std::memcpy(&d, &b, sizeof(d));
  return d;
}

// What rank 0 prints when mpirun (or srun) ends the job with a signal, typically after another
// rank died: the items every rank held. Two buffers so the handler never reads one being written.
constexpr size_t kSnapshotBytes = 8192;
char g_snapshot[2][kSnapshotBytes];
std::atomic<int> g_snapshot_current{-1};
struct sigaction g_old_term, g_old_int;

extern "C" void flurry_dist_on_signal(int sig) {
  const int cur = g_snapshot_current.load();
  if (cur >= 0) {
    const char* s = g_snapshot[cur];
    ssize_t unused = ::write(STDERR_FILENO, s, std::strlen(s));
    (void)unused;
  }
  // Die of the same signal, so that the launcher sees what happened.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

Session::Session(DistContext& ctx, const RunnerOptions& opts, const std::vector<WorkItem>& items,
                 std::vector<int64_t> pending, ShardWriter& shard, BlobWriter* blobs)
    : ctx_(ctx), opts_(opts), items_(items), shard_(shard), blobs_(blobs), start_(Clock::now()) {
  if (ctx_.is_root()) {
    queue_ = std::make_unique<WorkQueue>(&items_, std::move(pending), ctx_.size(), opts_.chunk_k);
    last_heard_s_.assign(static_cast<size_t>(ctx_.size()), 0.0);
    rank_done_.assign(static_cast<size_t>(ctx_.size()), false);
  }
}

Session::~Session() {
  stopping_ = true;
  local_done_ = true;
  if (thread_.joinable()) thread_.join();
}

double Session::since_start() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

void Session::start() {
  start_ = Clock::now();
  if (ctx_.is_root()) {
    struct sigaction sa {};
    sa.sa_handler = flurry_dist_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &g_old_term);
    sigaction(SIGINT, &sa, &g_old_int);
    publish_held_snapshot();
    thread_ = std::thread([this] { coordinator_loop(); });
  } else {
    thread_ = std::thread([this] { heartbeat_loop(); });
  }
}

void Session::stop() {
  local_done_ = true;
  if (!ctx_.is_root()) stopping_ = true;
  if (thread_.joinable()) thread_.join();
  if (ctx_.is_root()) {
    g_snapshot_current = -1;
    sigaction(SIGTERM, &g_old_term, nullptr);
    sigaction(SIGINT, &g_old_int, nullptr);
    if (!coordinator_error_.empty()) {
      // The other ranks wait on rank 0: end them all rather than leave them hanging.
      LOG_ERROR("work dispatcher failed: " << coordinator_error_);
      ctx_.abort(2);
    }
  }
}

RankStats Session::stats() const {
  std::lock_guard<std::mutex> lock(report_mutex_);
  RankStats s = mine_;
  s.finish_s = finish_s_;
  s.busy_s = std::max(0.0, (finish_s_ > 0 ? finish_s_ : since_start()) - wait_s_);
  return s;
}

bool Session::next(WorkItem* item) {
  std::lock_guard<std::mutex> lock(local_mutex_);
  while (local_.empty() && !out_of_work_) {
    const auto t0 = Clock::now();
    std::vector<int64_t> chunk;
    if (ctx_.is_root()) {
      std::lock_guard<std::mutex> q(queue_mutex_);
      chunk = queue_->next_chunk(0);
      held_dirty_ = true;
    } else {
      chunk = request_remote_chunk();
    }
    wait_s_ += std::chrono::duration<double>(Clock::now() - t0).count();
    if (chunk.empty()) {
      out_of_work_ = true;
      finish_s_ = since_start();
    }
    local_.insert(local_.end(), chunk.begin(), chunk.end());
  }
  if (local_.empty()) return false;
  *item = items_[static_cast<size_t>(local_.front())];
  local_.pop_front();
  return true;
}

void Session::complete(const WorkItem& item, const Json& fields) {
  FLURRY_CHECK(fields.is_object() || fields.is_null(),
               "result of '" << item.id << "' must be a JSON object, got " << fields.type_name());
  Json rec = Json::object();
  double work = item.cost;
  if (fields.is_object()) {
    rec = fields;
    if (!opts_.work_key.empty() && fields.contains(opts_.work_key) && fields[opts_.work_key].is_number()) {
      work = fields[opts_.work_key].get<double>();
    }
  }
  rec["status"] = "ok";
  record(item, std::move(rec), true, work);
}

void Session::complete_with_data(const WorkItem& item, const Json& fields, const void* data, size_t bytes) {
  FLURRY_CHECK(blobs_ != nullptr, "complete_with_data: the job has no data output (RunnerOptions::data_output)");
  FLURRY_CHECK(fields.is_object() || fields.is_null(), "result fields of '" << item.id << "' must be an object");
  Json with = fields.is_object() ? fields : Json::object();
  FLURRY_CHECK(!with.contains("data"), "result field 'data' of '" << item.id << "' is reserved for the runner");
  // The bytes first: a record on disk always points at bytes that were written before it.
  with["data"] = blobs_->append(data, bytes, blob_shard_name(ctx_.rank()));
  complete(item, with);
}

void Session::fail(const WorkItem& item, const std::string& message) {
  Json rec = Json::object();
  rec["status"] = "error";
  rec["error"] = message;
  record(item, std::move(rec), false, 0.0);
}

void Session::record(const WorkItem& item, Json rec, bool ok, double work) {
  rec["index"] = item.index;
  rec["id"] = item.id;
  rec["rank"] = ctx_.rank();
  shard_.append(rec);  // on disk before anyone is told the item is done
  {
    std::lock_guard<std::mutex> lock(report_mutex_);
    (ok ? mine_.ok : mine_.errors) += 1;
    mine_.work += work;
    (ok ? rep_ok_ : rep_err_) += 1;
    rep_work_ += work;
    rep_done_.push_back(item.index);
  }
  if (ctx_.is_root()) {
    std::lock_guard<std::mutex> q(queue_mutex_);
    queue_->finished(0, {item.index});
    (ok ? job_ok_ : job_err_) += 1;
    job_work_ += work;
    held_dirty_ = true;
    std::lock_guard<std::mutex> r(report_mutex_);
    rep_ok_ = rep_err_ = 0;
    rep_work_ = 0;
    rep_done_.clear();
  }
}

std::vector<int64_t> Session::take_report() {
  std::lock_guard<std::mutex> lock(report_mutex_);
  std::vector<int64_t> msg{rep_ok_, rep_err_, double_bits(rep_work_)};
  msg.insert(msg.end(), rep_done_.begin(), rep_done_.end());
  rep_ok_ = rep_err_ = 0;
  rep_work_ = 0;
  rep_done_.clear();
  return msg;
}

}  // namespace flurry::dist

namespace flurry::dist {

void Session::publish_held_snapshot() {
  if (!held_dirty_) return;
  held_dirty_ = false;
  std::string text = "[flurry r0 E] job interrupted; output so far is resumable with --resume --output-dir " +
                     opts_.output_dir + "\n";
  for (int r = 0; r < ctx_.size(); ++r) {
    const auto held = queue_->held_by(r);
    if (!held.empty()) text += "[flurry r0 E]   " + describe_held(items_, r, held, 6) + "\n";
  }
  if (text.size() >= kSnapshotBytes) text.resize(kSnapshotBytes - 1);
  const int next_buf = g_snapshot_current.load() == 0 ? 1 : 0;
  std::memcpy(g_snapshot[next_buf], text.c_str(), text.size() + 1);
  g_snapshot_current = next_buf;
}

void Session::coordinator_loop() {
  ProgressLine progress(static_cast<int64_t>(queue_->total_items()), queue_->total_cost(), opts_.unit,
                        opts_.progress_interval_s);
  const int remote = ctx_.size() - 1;
  try {
    while (!(local_done_ && remote_done_ >= remote)) {
      bool got = false;
#if FLURRY_HAVE_MPI
      if (remote > 0) {
        std::vector<int64_t> msg;
        MPI_Status st;
        int flag = 0;
        {
          std::lock_guard<std::mutex> lock(mpi_mutex_);
          MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, ctx_.world(), &flag, &st));
          if (flag) {
            int n = 0;
            MPI_CHECK(MPI_Get_count(&st, MPI_INT64_T, &n));
            msg.resize(static_cast<size_t>(n));
            MPI_CHECK(MPI_Recv(msg.data(), n, MPI_INT64_T, st.MPI_SOURCE, st.MPI_TAG, ctx_.world(),
                               MPI_STATUS_IGNORE));
          }
        }
        if (flag) {
          handle_message(st.MPI_SOURCE, st.MPI_TAG, msg);
          got = true;
        }
        check_silent_ranks();
      }
#endif
      {
        std::lock_guard<std::mutex> q(queue_mutex_);
        progress.update(job_ok_ + job_err_, job_err_, job_work_);
        publish_held_snapshot();
      }
      progress.maybe_draw();
      if (!got) std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  } catch (const std::exception& e) {
    coordinator_error_ = e.what();
  }
  {
    std::lock_guard<std::mutex> q(queue_mutex_);
    progress.update(job_ok_ + job_err_, job_err_, job_work_);
  }
  progress.finish();
}

void Session::handle_message(int source, int tag, const std::vector<int64_t>& msg) {
#if FLURRY_HAVE_MPI
  FLURRY_CHECK(msg.size() >= static_cast<size_t>(kReportHeader) && source > 0 && source < ctx_.size(),
               "malformed message of " << msg.size() << " words from rank " << source);
  last_heard_s_[static_cast<size_t>(source)] = since_start();
  std::vector<int64_t> chunk;
  {
    std::lock_guard<std::mutex> q(queue_mutex_);
    job_ok_ += msg[0];
    job_err_ += msg[1];
    job_work_ += bits_double(msg[2]);
    queue_->finished(source, std::vector<int64_t>(msg.begin() + kReportHeader, msg.end()));
    if (tag == kTagRequest) chunk = queue_->next_chunk(source);
    held_dirty_ = true;
  }
  if (tag != kTagRequest) return;
  {
    std::lock_guard<std::mutex> lock(mpi_mutex_);
    MPI_CHECK(MPI_Send(chunk.data(), static_cast<int>(chunk.size()), MPI_INT64_T, source, kTagChunk,
                       ctx_.world()));
  }
  if (chunk.empty()) {
    rank_done_[static_cast<size_t>(source)] = true;
    ++remote_done_;
  }
#else
  (void)source;
  (void)tag;
  (void)msg;
#endif
}

// A rank that has not been heard from for dead_rank_timeout_s is dead or hung (launchers that do
// not end the job when a process dies leave the others waiting forever otherwise).
void Session::check_silent_ranks() {
  const double now = since_start();
  for (int r = 1; r < ctx_.size(); ++r) {
    if (rank_done_[static_cast<size_t>(r)]) continue;
    const double silent = now - last_heard_s_[static_cast<size_t>(r)];
    if (silent <= opts_.dead_rank_timeout_s) continue;
    std::string held;
    {
      std::lock_guard<std::mutex> q(queue_mutex_);
      held = describe_held(items_, r, queue_->held_by(r));
    }
    LOG_ERROR("rank " << r << " has been silent for " << static_cast<int>(silent)
                      << " s (dead_rank_timeout " << opts_.dead_rank_timeout_s << " s): " << held
                      << "; stopping the job. Rerun with --resume to finish it.");
    ctx_.abort(3);
  }
}

std::vector<int64_t> Session::request_remote_chunk() {
#if FLURRY_HAVE_MPI
  std::vector<int64_t> report = take_report();
  {
    std::lock_guard<std::mutex> lock(mpi_mutex_);
    MPI_CHECK(MPI_Send(report.data(), static_cast<int>(report.size()), MPI_INT64_T, 0, kTagRequest,
                       ctx_.world()));
    last_send_s_ = since_start();
  }
  // Poll rather than block in MPI_Recv, so the heartbeat thread can take the lock meanwhile.
  const double asked = since_start();
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mpi_mutex_);
      int flag = 0;
      MPI_Status st;
      MPI_CHECK(MPI_Iprobe(0, kTagChunk, ctx_.world(), &flag, &st));
      if (flag) {
        int n = 0;
        MPI_CHECK(MPI_Get_count(&st, MPI_INT64_T, &n));
        std::vector<int64_t> chunk(static_cast<size_t>(n));
        MPI_CHECK(MPI_Recv(chunk.data(), n, MPI_INT64_T, 0, kTagChunk, ctx_.world(), MPI_STATUS_IGNORE));
        // Rank 0 stops listening to a rank once it has none left: no heartbeat after this.
        if (chunk.empty()) stopping_ = true;
        return chunk;
      }
    }
    if (since_start() - asked > opts_.dead_rank_timeout_s) {
      LOG_ERROR("rank 0 has not answered a work request for " << static_cast<int>(opts_.dead_rank_timeout_s)
                                                              << " s; stopping the job");
      ctx_.abort(3);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
#else
  FLURRY_FAIL("remote work request in a build without MPI");
#endif
}

void Session::heartbeat_loop() {
#if FLURRY_HAVE_MPI
  // Reports finished items every ~0.05 s (progress) and at least every heartbeat_s (liveness).
  const double progress_every = std::min(0.05, opts_.heartbeat_s);
  while (!stopping_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const double now = since_start();
    const double quiet = now - last_send_s_.load();
    bool have_news;
    {
      std::lock_guard<std::mutex> lock(report_mutex_);
      have_news = !rep_done_.empty();
    }
    if (!(have_news && quiet >= progress_every) && quiet < opts_.heartbeat_s) continue;
    // try_lock: never delay the worker's own chunk request for a report.
    std::unique_lock<std::mutex> lock(mpi_mutex_, std::try_to_lock);
    if (!lock.owns_lock() || stopping_) continue;
    std::vector<int64_t> report = take_report();
    MPI_CHECK(MPI_Send(report.data(), static_cast<int>(report.size()), MPI_INT64_T, 0, kTagReport,
                       ctx_.world()));
    last_send_s_ = now;
  }
#endif
}

}  // namespace flurry::dist
