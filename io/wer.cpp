#include "io/wer.h"

#include <algorithm>
#include <sstream>

namespace flurry {

double WerCounts::wer() const {
  if (ref_words == 0) return errors() == 0 ? 0.0 : 1.0;
  return static_cast<double>(errors()) / static_cast<double>(ref_words);
}

WerCounts& WerCounts::operator+=(const WerCounts& o) {
  substitutions += o.substitutions;
  deletions += o.deletions;
  insertions += o.insertions;
  ref_words += o.ref_words;
  return *this;
}

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> w;
  std::istringstream is(text);
  for (std::string x; is >> x;) w.push_back(x);
  return w;
}

WerCounts word_errors(const std::string& reference, const std::string& hypothesis) {
  const std::vector<std::string> r = split_words(reference), h = split_words(hypothesis);
  const size_t n = r.size(), m = h.size();
  // Levenshtein over words; each cell keeps (cost, subs, dels, ins) of one optimal alignment, so
  // the error kinds add up to the distance.
  struct Cell {
    int64_t cost, s, d, i;
  };
  std::vector<Cell> prev(m + 1), cur(m + 1);
  for (size_t j = 0; j <= m; ++j) prev[j] = {static_cast<int64_t>(j), 0, 0, static_cast<int64_t>(j)};
  for (size_t i = 1; i <= n; ++i) {
    cur[0] = {static_cast<int64_t>(i), 0, static_cast<int64_t>(i), 0};
    for (size_t j = 1; j <= m; ++j) {
      const bool same = r[i - 1] == h[j - 1];
      Cell best = prev[j - 1];
      best.cost += same ? 0 : 1;
      best.s += same ? 0 : 1;
      if (prev[j].cost + 1 < best.cost) best = {prev[j].cost + 1, prev[j].s, prev[j].d + 1, prev[j].i};
      if (cur[j - 1].cost + 1 < best.cost) {
        best = {cur[j - 1].cost + 1, cur[j - 1].s, cur[j - 1].d, cur[j - 1].i + 1};
      }
      cur[j] = best;
    }
    std::swap(prev, cur);
  }
  WerCounts c;
  c.substitutions = prev[m].s;
  c.deletions = prev[m].d;
  c.insertions = prev[m].i;
  c.ref_words = static_cast<int64_t>(n);
  return c;
}

}  // namespace flurry
