#include "runtime/check.h"

#include <atomic>

namespace flurry {

namespace {
std::atomic<int> g_rank{-1};
}

int process_rank() { return g_rank.load(std::memory_order_relaxed); }
void set_process_rank(int rank) { g_rank.store(rank, std::memory_order_relaxed); }

void throw_check_failure(const char* lib, const char* expr, const char* file, int line,
                         const std::string& detail) {
  std::ostringstream os;
  os << lib << " error: " << expr << " failed at " << file << ":" << line;
  if (process_rank() >= 0) os << " [rank " << process_rank() << "]";
  if (!detail.empty()) os << ": " << detail;
  throw Error(os.str());
}

}  // namespace flurry
