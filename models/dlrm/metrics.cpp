#include "models/dlrm/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "runtime/check.h"

namespace flurry::dlrm {

Json BinaryMetrics::to_json() const {
  Json j;
  j["rows"] = n;
  j["positives"] = positives;
  j["auc"] = std::isnan(auc) ? Json(nullptr) : Json(auc);
  j["precision"] = precision;
  j["recall"] = recall;
  j["accuracy"] = accuracy;
  j["log_loss"] = log_loss;
  j["threshold"] = threshold;
  return j;
}

BinaryMetrics binary_metrics(const std::vector<float>& logits, const std::vector<int>& labels, double threshold) {
  FLURRY_CHECK(logits.size() == labels.size(), "metrics over " << logits.size() << " scores and " << labels.size() << " labels");
  BinaryMetrics m;
  m.n = static_cast<int64_t>(logits.size());
  m.threshold = threshold;
  if (m.n == 0) {
    m.auc = std::numeric_limits<double>::quiet_NaN();
    return m;
  }
  int64_t tp = 0, fp = 0, fn = 0, correct = 0;
  double loss = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const int y = labels[i];
    FLURRY_CHECK(y == 0 || y == 1, "label " << y << " is not 0 or 1");
    m.positives += y;
    const double p = 1.0 / (1.0 + std::exp(-static_cast<double>(logits[i])));
    const bool pred = p >= threshold;
    tp += pred && y == 1;
    fp += pred && y == 0;
    fn += !pred && y == 1;
    correct += pred == (y == 1);
    const double pc = std::min(1.0 - 1e-15, std::max(1e-15, p));
    loss += y == 1 ? -std::log(pc) : -std::log(1.0 - pc);
  }
  m.precision = tp + fp > 0 ? static_cast<double>(tp) / static_cast<double>(tp + fp) : 0.0;
  m.recall = tp + fn > 0 ? static_cast<double>(tp) / static_cast<double>(tp + fn) : 0.0;
  m.accuracy = static_cast<double>(correct) / static_cast<double>(m.n);
  m.log_loss = loss / static_cast<double>(m.n);
  // AUC = (sum of positive ranks - P(P+1)/2) / (P N), ranks 1-based with ties averaged.
  const int64_t pos = m.positives, neg = m.n - pos;
  if (pos == 0 || neg == 0) {
    m.auc = std::numeric_limits<double>::quiet_NaN();
    return m;
  }
  std::vector<size_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] < logits[b]; });
  double rank_sum = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && logits[order[j + 1]] == logits[order[i]]) ++j;
    const double avg = (static_cast<double>(i + 1) + static_cast<double>(j + 1)) / 2.0;
    for (size_t k = i; k <= j; ++k) rank_sum += labels[order[k]] == 1 ? avg : 0.0;
    i = j + 1;
  }
  m.auc = (rank_sum - static_cast<double>(pos) * static_cast<double>(pos + 1) / 2.0) /
          (static_cast<double>(pos) * static_cast<double>(neg));
  return m;
}

}  // namespace flurry::dlrm
