// Levelled logging to stderr with a rank prefix: "[flurry r3 I] message".
#pragma once

#include <sstream>
#include <string>

namespace flurry {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

LogLevel log_level();
void set_log_level(LogLevel level);
// Accepts debug|info|warn|warning|error|off (any case); throws flurry::Error otherwise.
LogLevel parse_log_level(const std::string& name);
// FLURRY_LOG_LEVEL in the environment sets the starting level; called once by each binary's main.
void init_logging_from_env();
void log_message(LogLevel level, const std::string& text);

}  // namespace flurry

#define FLURRY_LOG(level, msg)                                                    \
  do {                                                                            \
    if (::flurry::LogLevel::level >= ::flurry::log_level()) {                     \
      std::ostringstream flurry_log_os_;                                          \
      flurry_log_os_ << msg;                                                      \
      ::flurry::log_message(::flurry::LogLevel::level, flurry_log_os_.str());     \
    }                                                                             \
  } while (0)

#define LOG_DEBUG(msg) FLURRY_LOG(Debug, msg)
#define LOG_INFO(msg) FLURRY_LOG(Info, msg)
#define LOG_WARN(msg) FLURRY_LOG(Warn, msg)
#define LOG_ERROR(msg) FLURRY_LOG(Error, msg)
