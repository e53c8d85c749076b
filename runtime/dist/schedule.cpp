#include "runtime/dist/schedule.h"

#include <algorithm>
#include <sstream>

#include "runtime/check.h"

namespace flurry::dist {

WorkQueue::WorkQueue(const std::vector<WorkItem>* items, std::vector<int64_t> pending, int ranks, double k)
    : items_(items), order_(std::move(pending)), ranks_(std::max(1, ranks)), k_(k > 0 ? k : 2.0),
      held_(static_cast<size_t>(std::max(1, ranks))) {
  // Largest first; ties by input order so that every run hands out the same sequence.
  std::stable_sort(order_.begin(), order_.end(), [&](int64_t a, int64_t b) {
    return (*items_)[static_cast<size_t>(a)].cost > (*items_)[static_cast<size_t>(b)].cost;
  });
  for (int64_t p : order_) remaining_cost_ += (*items_)[static_cast<size_t>(p)].cost;
  total_cost_ = remaining_cost_;
}

std::vector<int64_t> WorkQueue::next_chunk(int rank) {
  FLURRY_CHECK(rank >= 0 && rank < ranks_, "work request from rank " << rank << " of " << ranks_);
  std::vector<int64_t> chunk;
  if (drained()) return chunk;
  const double target = remaining_cost_ / (k_ * ranks_);
  // With zero costs everywhere (unknown sizes) the target is 0: fall back to counting items.
  const size_t count_target = std::max<size_t>(1, remaining_items() / static_cast<size_t>(k_ * ranks_));
  double got = 0;
  while (!drained()) {
    const int64_t p = order_[next_];
    const double c = (*items_)[static_cast<size_t>(p)].cost;
    if (!chunk.empty()) {
      if (target > 0 && got + c > target) break;
      if (target <= 0 && chunk.size() >= count_target) break;
    }
    chunk.push_back(p);
    got += c;
    remaining_cost_ -= c;
    ++next_;
  }
  // Summing and subtracting doubles drifts; the queue's end is exact.
  remaining_cost_ = drained() ? 0.0 : std::max(0.0, remaining_cost_);
  auto& h = held_[static_cast<size_t>(rank)];
  h.insert(h.end(), chunk.begin(), chunk.end());
  return chunk;
}

void WorkQueue::finished(int rank, const std::vector<int64_t>& positions) {
  if (rank < 0 || rank >= ranks_) return;
  auto& h = held_[static_cast<size_t>(rank)];
  for (int64_t p : positions) {
    auto it = std::find(h.begin(), h.end(), p);
    if (it != h.end()) h.erase(it);
  }
}

std::vector<int64_t> WorkQueue::held_by(int rank) const {
  if (rank < 0 || rank >= ranks_) return {};
  return held_[static_cast<size_t>(rank)];
}

std::string describe_held(const std::vector<WorkItem>& items, int rank, const std::vector<int64_t>& held,
                          size_t max_listed) {
  std::ostringstream os;
  os << "rank " << rank;
  if (held.empty()) {
    os << " held no item";
    return os.str();
  }
  // Reports arrive every few tens of milliseconds, so the first ones listed may have just finished;
  // the item in progress is among the first few.
  os << " held " << held.size() << " unfinished item" << (held.size() == 1 ? "" : "s")
     << " (oldest first):";
  for (size_t i = 0; i < held.size() && i < max_listed; ++i) {
    os << " '" << items[static_cast<size_t>(held[i])].id << "'";
  }
  if (held.size() > max_listed) os << " ...";
  return os.str();
}

}  // namespace flurry::dist
