#include "models/dlrm/sharding.h"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "runtime/check.h"

namespace flurry::dlrm {

namespace {

std::string mib(int64_t bytes) {
  std::ostringstream os;
  os.precision(3);
  os << static_cast<double>(bytes) / (1024.0 * 1024.0) << " MiB";
  return os.str();
}

}  // namespace

TablePlan plan_tables(const DlrmConfig& c, int ranks, int64_t bytes_per_value) {
  FLURRY_CHECK(ranks >= 1, "a table plan over " << ranks << " ranks");
  TablePlan p;
  p.ranks = ranks;
  p.bytes_per_value = bytes_per_value;
  const size_t nt = c.tables.size();
  p.owner.assign(nt, 0);
  p.rank_bytes.assign(static_cast<size_t>(ranks), 0);
  std::vector<size_t> order(nt);
  std::iota(order.begin(), order.end(), size_t{0});
  auto bytes = [&](size_t t) { return c.tables[t].rows * c.tables[t].dim * bytes_per_value; };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return bytes(a) > bytes(b); });
  for (size_t t : order) {
    // min_element returns the first of equal minima: ties go to the lower rank.
    const auto at = std::min_element(p.rank_bytes.begin(), p.rank_bytes.end());
    p.owner[t] = static_cast<int>(at - p.rank_bytes.begin());
    *at += bytes(t);
  }
  return p;
}

std::vector<bool> TablePlan::owned_by(int rank) const {
  std::vector<bool> out(owner.size());
  for (size_t t = 0; t < owner.size(); ++t) out[t] = owner[t] == rank;
  return out;
}

std::vector<int64_t> TablePlan::bags_of(const DlrmConfig& c, int rank) const {
  std::vector<int64_t> out;
  for (int64_t b = 0; b < c.num_bags(); ++b) {
    if (owner_of_bag(c, b) == rank) out.push_back(b);
  }
  return out;
}

std::string TablePlan::describe(const DlrmConfig& c) const {
  std::ostringstream os;
  os << c.tables.size() << " table(s) over " << ranks << " rank(s)";
  for (int r = 0; r < ranks; ++r) {
    std::vector<std::string> names;
    for (size_t t = 0; t < owner.size(); ++t) {
      if (owner[t] == r) names.push_back(c.tables[t].name);
    }
    os << (r == 0 ? ": " : "; ") << "rank " << r << " " << names.size() << " table(s) "
       << mib(rank_bytes[static_cast<size_t>(r)]);
    if (!names.empty()) {
      os << " (";
      for (size_t i = 0; i < names.size() && i < 8; ++i) os << (i ? " " : "") << names[i];
      if (names.size() > 8) os << " ...";
      os << ")";
    }
  }
  return os.str();
}

Json TablePlan::to_json(const DlrmConfig& c) const {
  Json per_rank = Json::array();
  for (int r = 0; r < ranks; ++r) {
    Json tables = Json::array();
    for (size_t t = 0; t < owner.size(); ++t) {
      if (owner[t] == r) tables.push_back(c.tables[t].name);
    }
    per_rank.push_back({{"rank", r}, {"tables", tables}, {"bytes", rank_bytes[static_cast<size_t>(r)]}});
  }
  return Json{{"mode", "table-wise"}, {"ranks", ranks}, {"bytes_per_value", bytes_per_value}, {"per_rank", per_rank}};
}

}  // namespace flurry::dlrm
