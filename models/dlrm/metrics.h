// Binary classification metrics of a scored, labelled set (the seed's evaluation): ROC AUC (ties
// share their average rank, as scikit-learn's roc_auc_score), precision and recall at a probability
// threshold, and the mean log loss of the probabilities.
#pragma once

#include <cstdint>
#include <vector>

#include "io/json_file.h"

namespace flurry::dlrm {

struct BinaryMetrics {
  int64_t n = 0, positives = 0;
  double auc = 0;        // NaN when one class is absent
  double precision = 0;  // of the predictions >= threshold; 0 when there are none
  double recall = 0;
  double accuracy = 0;
  double log_loss = 0;   // mean of -(y log p + (1-y) log(1-p)), p clipped to [1e-15, 1 - 1e-15]
  double threshold = 0.5;
  Json to_json() const;
};

// labels are 0/1; logits are raw model outputs (probability = sigmoid(logit)).
BinaryMetrics binary_metrics(const std::vector<float>& logits, const std::vector<int>& labels, double threshold = 0.5);

}  // namespace flurry::dlrm
