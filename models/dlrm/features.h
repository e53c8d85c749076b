// The training-time encoders of a DLRM's inputs (features.json beside config.json) and the batch
// they produce. Scoring uses exactly these encoders; nothing is re-fitted on the rows being scored.
//
// features.json:
//   {
//     "dense": [
//       {"name": "sale_price", "column": "sale_price", "transform": "minmax", "min": 1.5, "max": 19.0},
//       {"name": "I1", "column": "I1", "transform": "log1p", "missing": 0}   // Criteo: log(1 + max(x, 0))
//     ],                                                // transform: minmax | log1p | none
//     "categorical": [
//       {"name": "menu_item", "column": "menu_item", "encoding": "vocab", "vocab": ["Burger", ...]},
//       {"name": "C1", "column": "C1", "encoding": "hash"},      // hex string -> value mod table rows
//       {"name": "tags", "column": "tags", "encoding": "integer", "separator": "|"}  // multi-hot ids
//     ],
//     "label": "label",            // optional: the column of 0/1 labels (eval)
//     "unknown": "skip"            // what an unknown category does: skip | error (default skip)
//   }
//
// The rules, counted per feature in the manifest:
//   - minmax: (x - min) / (max - min) with the training min/max, then clamped to [0, 1]; a value
//     outside [min, max] counts as "clamped".
//   - log1p: log(1 + max(x, 0)) (facebookresearch/dlrm's Criteo preprocessing).
//   - An empty dense field is `missing` when the spec gives one (Criteo's blanks: 0), else the row
//     is an error. A field that is not a number is a row error.
//   - vocab: the category's position in the training vocabulary (label encoding, 0..n-1, no
//     offsets: the seed's one shared table). An unknown category is left out of its bag ("skip",
//     counted as "unknown"; its bag sums the rest) or makes the row an error ("error").
//   - hash: the field as a hexadecimal number (Criteo's 8-digit hashes) modulo the table's rows; an
//     empty field is left out of the bag (counted as "missing").
//   - integer: the field as a non-negative integer id, multi-hot when `separator` is set; an id not
//     below the table's rows is a row error.
// A spec that does not fit the model (a feature the model needs and the spec lacks, a vocabulary
// larger than the feature's table) is refused before any row is read.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "models/dlrm/config.h"

namespace flurry::dlrm {

enum class DenseTransform { kMinMax, kLog1p, kNone };
enum class CatEncoding { kVocab, kHash, kInteger };

struct DenseSpec {
  std::string name, column;
  DenseTransform transform = DenseTransform::kNone;
  double min = 0, max = 1;
  bool has_missing = false;
  double missing = 0;
};

struct CatSpec {
  std::string name, column;
  CatEncoding encoding = CatEncoding::kVocab;
  std::vector<std::string> vocab;
  std::map<std::string, int32_t> index;  // vocab -> position
  std::string separator;                 // integer multi-hot
};

struct FeatureSpec {
  std::vector<DenseSpec> dense;
  std::vector<CatSpec> categorical;
  std::string label;
  bool unknown_is_error = false;
  const DenseSpec* find_dense(const std::string& name) const;
  const CatSpec* find_categorical(const std::string& name) const;
};

FeatureSpec load_feature_spec(const std::string& path);
FeatureSpec feature_spec_from_json(const Json& j, const std::string& where);

// A batch in the layout every backend reads (TorchRec's KeyedJaggedTensor, bag-major):
//   dense   [n, num_dense] fp32, already transformed
//   bag b of sample i pools indices[offsets[b * n + i] .. offsets[b * n + i + 1]) of bag b's table.
struct DlrmBatch {
  int64_t n = 0;
  std::vector<float> dense;
  std::vector<int32_t> offsets;  // num_bags * n + 1
  std::vector<int32_t> indices;
};

// Per-feature counts of what the rules did, for the manifest.
struct EncodeStats {
  std::map<std::string, int64_t> unknown, clamped, missing;
  void merge(const EncodeStats& o);
  Json to_json() const;
};

// Encodes rows given as column -> field lookups. The encoder checks the spec against the model once
// (throws flurry::Error naming the feature) and then maps rows. It keeps pointers into `cfg` and
// `spec`, which must outlive it.
class FeatureEncoder {
 public:
  FeatureEncoder(const DlrmConfig& cfg, const FeatureSpec& spec);
  // Input columns the model reads, in a fixed order (each once): what a reader must provide.
  const std::vector<std::string>& columns() const { return columns_; }
  // Encodes n rows; field(i, c) is row i's field of columns()[c] (nullptr: the row lacks the
  // column). A row that breaks a rule gets its reason in (*errors)[i] and contributes an empty
  // sample (zero dense, empty bags), so that the batch keeps its shape.
  using FieldFn = std::function<const std::string*(int64_t row, int column)>;
  void encode(int64_t n, const FieldFn& field, DlrmBatch* batch, std::vector<std::string>* errors,
              EncodeStats* stats) const;
  // One categorical field's indices (appended to `out`); "" or why the field is unusable.
  std::string categorical_indices(int slot, const std::string& field, std::vector<int32_t>* out,
                                  EncodeStats* stats) const;

 private:
  struct DenseSlot { const DenseSpec* spec; int column; };
  struct CatSlot { const CatSpec* spec; int column; int bag; int64_t rows; };
  const DlrmConfig& cfg_;
  std::vector<std::string> columns_;
  std::vector<DenseSlot> dense_;
  std::vector<CatSlot> cats_;  // in bag order, features in each bag's order
  bool unknown_is_error_ = false;
};

// Parses one numeric field (leading/trailing spaces allowed). False when it is not a number.
bool parse_number(const std::string& s, double* out);

}  // namespace flurry::dlrm
