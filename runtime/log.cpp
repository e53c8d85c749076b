#include "runtime/log.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "runtime/check.h"

namespace flurry {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
std::mutex g_log_mutex;

char level_letter(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return 'D';
    case LogLevel::Info: return 'I';
    case LogLevel::Warn: return 'W';
    case LogLevel::Error: return 'E';
    case LogLevel::Off: break;
  }
  return '?';
}
}  // namespace

LogLevel log_level() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }
void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }

LogLevel parse_log_level(const std::string& name) {
  std::string s = name;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "debug") return LogLevel::Debug;
  if (s == "info") return LogLevel::Info;
  if (s == "warn" || s == "warning") return LogLevel::Warn;
  if (s == "error") return LogLevel::Error;
  if (s == "off" || s == "quiet") return LogLevel::Off;
  FLURRY_FAIL("unknown log level '" << name << "' (expected debug, info, warn, error or off)");
}

void init_logging_from_env() {
  if (const char* env = std::getenv("FLURRY_LOG_LEVEL")) set_log_level(parse_log_level(env));
}

void log_message(LogLevel level, const std::string& text) {
  // One fprintf per line under a mutex so lines from reader and writer threads never interleave.
  std::lock_guard<std::mutex> lock(g_log_mutex);
  const int rank = process_rank();
  if (rank >= 0) {
    std::fprintf(stderr, "[flurry r%d %c] %s\n", rank, level_letter(level), text.c_str());
  } else {
    std::fprintf(stderr, "[flurry %c] %s\n", level_letter(level), text.c_str());
  }
}

}  // namespace flurry
