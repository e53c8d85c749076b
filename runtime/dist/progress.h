// The one progress line of a job, drawn by rank 0 from counts that every rank reports: items done
// of total, rate in the job's unit, ETA and errors so far. On a terminal the line is redrawn in
// place (\r); otherwise a plain log line every `interval_s` seconds, so that logs of batch jobs
// stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace flurry::dist {

class ProgressLine {
 public:
  ProgressLine(int64_t total_items, double total_work, std::string unit, double interval_s);

  // Cumulative figures of the whole job so far.
  void update(int64_t done, int64_t errors, double work);
  // Draws when the interval has passed (or always with force); safe to call often.
  void maybe_draw(bool force = false);
  // The final line (and a newline after the redrawn one on a terminal).
  void finish();

  // "1:02:03" / "4:05" / "--" for an unknown ETA.
  static std::string format_duration(double seconds);
  std::string render() const;

 private:
  using Clock = std::chrono::steady_clock;
  int64_t total_items_;
  double total_work_;
  std::string unit_;
  double interval_s_;
  bool tty_;
  int64_t done_ = 0;
  int64_t errors_ = 0;
  double work_ = 0;
  Clock::time_point start_;
  Clock::time_point last_draw_;
  bool drawn_ = false;
};

}  // namespace flurry::dist
