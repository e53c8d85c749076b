// Internal to runtime/dist: the running part of a job on one rank. Rank 0 owns the work queue and
// runs a coordinator thread that answers other ranks' requests over MPI, collects their progress
// reports, watches for silent (dead) ranks and draws the progress line; its own worker takes chunks
// from the queue directly. Other ranks ask rank 0 for chunks and report progress; a heartbeat
// thread keeps rank 0 informed while a long input is being processed. Every MPI call of a session
// happens under one lock per process, so MPI_THREAD_SERIALIZED suffices.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/dist/blobs.h"
#include "runtime/dist/records.h"
#include "runtime/dist/runner.h"
#include "runtime/dist/schedule.h"

namespace flurry::dist {

// What one rank did, gathered to rank 0 for the manifest.
struct RankStats {
  double ok = 0, errors = 0, work = 0;
  double busy_s = 0;    // time in the body not spent waiting for work
  double finish_s = 0;  // from the (barrier-aligned) start until the rank ran out of work
};

class Session final : public JobSession {
 public:
  // `pending`: positions still to do (meaningful on rank 0 only).
  Session(DistContext& ctx, const RunnerOptions& opts, const std::vector<WorkItem>& items,
          std::vector<int64_t> pending, ShardWriter& shard, BlobWriter* blobs = nullptr);
  ~Session() override;

  bool next(WorkItem* item) override;
  void complete(const WorkItem& item, const Json& fields) override;
  void complete_with_data(const WorkItem& item, const Json& fields, const void* data, size_t bytes) override;
  void fail(const WorkItem& item, const std::string& message) override;
  const DistContext& context() const override { return ctx_; }

  void start();
  // After the body returned on this rank; on rank 0 waits until every rank has run out of work.
  void stop();
  RankStats stats() const;

 private:
  using Clock = std::chrono::steady_clock;
  void record(const WorkItem& item, Json rec, bool ok, double work);
  std::vector<int64_t> take_report();
  std::vector<int64_t> request_remote_chunk();
  void coordinator_loop();
  void handle_message(int source, int tag, const std::vector<int64_t>& msg);
  void check_silent_ranks();
  void heartbeat_loop();
  void publish_held_snapshot();
  double since_start() const;

  DistContext& ctx_;
  const RunnerOptions& opts_;
  const std::vector<WorkItem>& items_;
  ShardWriter& shard_;
  BlobWriter* blobs_;
  Clock::time_point start_;

  // This rank's chunk in hand.
  std::mutex local_mutex_;
  std::deque<int64_t> local_;
  bool out_of_work_ = false;
  double wait_s_ = 0;
  double finish_s_ = 0;

  // Counts of this rank, and the report not yet sent to rank 0.
  mutable std::mutex report_mutex_;
  RankStats mine_;
  int64_t rep_ok_ = 0, rep_err_ = 0;
  double rep_work_ = 0;
  std::vector<int64_t> rep_done_;

  std::mutex mpi_mutex_;
  std::atomic<double> last_send_s_{0};
  std::atomic<bool> stopping_{false};
  std::thread thread_;  // coordinator (rank 0) or heartbeat (others)

  // Rank 0 only.
  std::unique_ptr<WorkQueue> queue_;
  std::mutex queue_mutex_;
  int64_t job_ok_ = 0, job_err_ = 0;
  double job_work_ = 0;
  std::vector<double> last_heard_s_;
  std::vector<bool> rank_done_;
  int remote_done_ = 0;
  std::atomic<bool> local_done_{false};
  bool held_dirty_ = true;
  std::string coordinator_error_;
};

}  // namespace flurry::dist
