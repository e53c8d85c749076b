#include "runtime/dist/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "runtime/log.h"

namespace flurry::dist {

ProgressLine::ProgressLine(int64_t total_items, double total_work, std::string unit, double interval_s)
    : total_items_(total_items), total_work_(total_work), unit_(std::move(unit)),
      interval_s_(interval_s), tty_(::isatty(STDERR_FILENO) == 1), start_(Clock::now()),
      last_draw_(start_) {
  // A terminal can take frequent redraws; logs cannot.
  if (tty_ && interval_s_ > 0.5) interval_s_ = 0.5;
}

void ProgressLine::update(int64_t done, int64_t errors, double work) {
  done_ = done;
  errors_ = errors;
  work_ = work;
}

std::string ProgressLine::format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--";
  const long t = std::lround(s);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%ld:%02ld", t / 60, t % 60);
  }
  return buf;
}

std::string ProgressLine::render() const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double rate = elapsed > 0 ? work_ / elapsed : 0;
  // ETA from the work left, which the cost estimates make better than counting items.
  double eta = -1;
  if (rate > 0 && total_work_ > 0) {
    eta = std::max(0.0, total_work_ - work_) / rate;
  } else if (done_ > 0) {
    eta = elapsed / static_cast<double>(done_) * static_cast<double>(total_items_ - done_);
  }
  char buf[256];
  const double pct = total_items_ > 0 ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_items_) : 100.0;
  std::snprintf(buf, sizeof(buf), "%lld/%lld items (%.1f%%) | %.4g %s/s | elapsed %s | ETA %s | %lld error%s",
                static_cast<long long>(done_), static_cast<long long>(total_items_), pct, rate,
                unit_.c_str(), format_duration(elapsed).c_str(), format_duration(eta).c_str(),
                static_cast<long long>(errors_), errors_ == 1 ? "" : "s");
  return buf;
}

void ProgressLine::maybe_draw(bool force) {
  const auto now = Clock::now();
  if (!force && std::chrono::duration<double>(now - last_draw_).count() < interval_s_) return;
  last_draw_ = now;
  if (log_level() > LogLevel::Info) return;
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", render().c_str());
    std::fflush(stderr);
    drawn_ = true;
  } else {
    LOG_INFO("progress: " << render());
  }
}

void ProgressLine::finish() {
  if (tty_ && drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  if (log_level() <= LogLevel::Info) LOG_INFO("done: " << render());
}

}  // namespace flurry::dist
