// Word error rate: word-level Levenshtein distance between reference and hypothesis.
#pragma once

#include <string>
#include <vector>

namespace flurry {

struct WerCounts {
  int64_t substitutions = 0, deletions = 0, insertions = 0, ref_words = 0;
  int64_t errors() const { return substitutions + deletions + insertions; }
  // errors / reference words; 0 for an empty reference matched by an empty hypothesis.
  double wer() const;
  WerCounts& operator+=(const WerCounts& o);
};

std::vector<std::string> split_words(const std::string& text);
// Counts on already-normalised text (split on whitespace).
WerCounts word_errors(const std::string& reference, const std::string& hypothesis);

}  // namespace flurry
