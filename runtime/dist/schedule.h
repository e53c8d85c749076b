// The work queue of rank 0: pending items largest first, handed out in chunks that shrink toward
// the end of the job (guided self-scheduling): a chunk is the largest items left until their cost
// reaches remaining_cost / (k * ranks), and at least one item. Early chunks are big (few messages),
// late ones single items, so the job ends with every rank finishing within about one small item of
// the others. Pure logic, no MPI: the runner serialises access with its own lock.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/dist/inputs.h"

namespace flurry::dist {

class WorkQueue {
 public:
  // `items` are all items of the job; `pending` the positions in it still to do.
  WorkQueue(const std::vector<WorkItem>* items, std::vector<int64_t> pending, int ranks, double k);

  // The next chunk for `rank` (positions into items); empty when nothing is left.
  std::vector<int64_t> next_chunk(int rank);
  // `rank` finished these positions (ok or error); they stop being "held".
  void finished(int rank, const std::vector<int64_t>& positions);

  bool drained() const { return next_ == order_.size(); }
  size_t remaining_items() const { return order_.size() - next_; }
  double remaining_cost() const { return remaining_cost_; }
  size_t total_items() const { return order_.size(); }
  double total_cost() const { return total_cost_; }
  // Positions handed to `rank` and not reported finished, in the order the rank works on them.
  std::vector<int64_t> held_by(int rank) const;

 private:
  const std::vector<WorkItem>* items_;
  std::vector<int64_t> order_;  // pending positions, largest cost first
  size_t next_ = 0;
  int ranks_;
  double k_;
  double remaining_cost_ = 0;
  double total_cost_ = 0;
  std::vector<std::vector<int64_t>> held_;  // per rank, in hand-out order
};

// "rank 2 held 'a.wav' (in progress) and 3 more: 'b.wav', ..." for messages about a dead rank.
std::string describe_held(const std::vector<WorkItem>& items, int rank, const std::vector<int64_t>& held,
                          size_t max_listed = 6);

}  // namespace flurry::dist
