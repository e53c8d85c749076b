// Stage timers: wall time and calls per named stage (load, audio, mel, encode, decode, ...), so a
// run reports where its time went (a log line per rank, "stages" in manifest.json), and an NVTX
// range per timed scope, so an Nsight Systems profile reads like the code. Thread-safe; stages run
// on several threads add up (their sum can exceed the wall time).
//
//   flurry::StageTimers timers;
//   { flurry::ScopedStage s(&timers, "encode"); encode(...); }
//   timers.to_json();   // {"encode": {"seconds": 1.25, "calls": 3}}
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace flurry {

class StageTimers {
 public:
  void add(const std::string& stage, double seconds, int64_t calls = 1);
  // Adds every stage of `j` (the to_json() form of another rank or thread).
  void merge_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
  // "load 1.20 s, encode 5.10 s (12 calls), ..." in the order the stages were first seen.
  std::string summary() const;
  bool empty() const;

 private:
  struct Stage {
    double seconds = 0;
    int64_t calls = 0;
    int order = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Stage> stages_;
};

// Times its scope into `timers` (nullptr: times nothing, still marks the NVTX range).
class ScopedStage {
 public:
  ScopedStage(StageTimers* timers, const char* stage);
  ~ScopedStage();
  ScopedStage(const ScopedStage&) = delete;
  ScopedStage& operator=(const ScopedStage&) = delete;

 private:
  StageTimers* timers_;
  const char* stage_;
  int64_t start_ns_;
};

}  // namespace flurry
