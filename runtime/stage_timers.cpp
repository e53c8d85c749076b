#include "runtime/stage_timers.h"

#include <chrono>
#include <algorithm>
#include <cstdio>
#include <vector>

#if FLURRY_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace flurry {

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void StageTimers::add(const std::string& stage, double seconds, int64_t calls) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = stages_.find(stage);
  if (it == stages_.end()) {
    Stage s;
    s.order = static_cast<int>(stages_.size());
    it = stages_.emplace(stage, s).first;
  }
  it->second.seconds += seconds;
  it->second.calls += calls;
}

void StageTimers::merge_json(const nlohmann::json& j) {
  if (!j.is_object()) return;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& v = it.value();
    if (!v.is_object() || !v.contains("seconds") || !v["seconds"].is_number()) continue;
    add(it.key(), v["seconds"].get<double>(), v.contains("calls") && v["calls"].is_number_integer() ? v["calls"].get<int64_t>() : 0);
  }
}

nlohmann::json StageTimers::to_json() const {
  std::lock_guard<std::mutex> lock(mutex_);
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, s] : stages_) j[name] = {{"seconds", s.seconds}, {"calls", s.calls}};
  return j;
}

std::string StageTimers::summary() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::pair<int, std::string>> order;
  for (const auto& [name, s] : stages_) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "%s %.2f s (%lld call%s)", name.c_str(), s.seconds,
                  static_cast<long long>(s.calls), s.calls == 1 ? "" : "s");
    order.emplace_back(s.order, buf);
  }
  std::sort(order.begin(), order.end());
  std::string out;
  for (const auto& [o, text] : order) out += (out.empty() ? "" : ", ") + text;
  return out;
}

bool StageTimers::empty() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stages_.empty();
}

ScopedStage::ScopedStage(StageTimers* timers, const char* stage)
    : timers_(timers), stage_(stage), start_ns_(now_ns()) {
#if FLURRY_HAVE_CUDA
  nvtxRangePushA(stage);
#endif
}

ScopedStage::~ScopedStage() {
#if FLURRY_HAVE_CUDA
  nvtxRangePop();
#endif
  if (timers_ != nullptr) timers_->add(stage_, static_cast<double>(now_ns() - start_ns_) * 1e-9);
}

}  // namespace flurry
