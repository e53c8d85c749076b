// A DLRM as its folder describes it: config.json (the architecture), model.safetensors (weights
// under the names below) and features.json (the training-time encoders, features.h). One
// config-driven implementation covers the seed's food-truck recommender, classic DLRM
// (facebookresearch/dlrm, MLPerf Kaggle/Terabyte) and DLRM-v2 (multi-hot bags, DCNv2).
//
// config.json:
//   {
//     "model_type": "dlrm",
//     "dense_features": ["sale_price", "age", ...],          // bottom MLP inputs, in order
//     "embedding_tables": [{"name": "shared", "num_embeddings": 142, "embedding_dim": 128}],
//     "embedding_bags": [                                     // one pooled vector each, in order
//       {"name": "food", "table": "shared", "pooling": "sum",  // sum | mean
//        "features": ["menu_item", "menu_type", ...]}         // categorical features it pools
//     ],
//     "bottom_mlp": [256, 128],          // layer widths (input: len(dense_features)); ReLU after each
//     "bottom_final_relu": true,         // default true (facebookresearch/dlrm, TorchRec, the seed)
//     "interaction": {"type": "dot", "pairs": "strict_lower", "include_dense": true},
//     "top_mlp": [512, 256, 1],          // layer widths (input: the interaction's width); ReLU
//                                        // after each but the last, which gives the logit
//   }
//
// Interactions (n = 1 + bags vectors of dim d: the bottom output first, then the bags in order):
//   dot    the dot products of the n vectors over `pairs` of (i, j), enumerated row by row:
//          strict_lower (j < i; facebookresearch/dlrm), lower_with_diag (j <= i), strict_upper
//          (j > i; TorchRec), upper_with_diag (j >= i); output [bottom, pairs] (include_dense) or
//          [pairs].
//   outer  the seed's: z = [bottom, bag_0, ...] as one vector of n*d values, the products z_i z_j
//          over `pairs` (upper_with_diag: 256*257/2 = 32,896 for the seed), output [bottom, pairs].
//   cat    [bottom, bag_0, bag_1, ...].
//   dcnv2  x0 = [bottom, bag_0, ...] (width N); `layers` low-rank cross layers
//          x_{l+1} = x0 * (W_l (V_l x_l) + b_l) + x_l, V_l [rank, N], W_l [N, rank], b_l [N]
//          (TorchRec's LowRankCrossNet, MLPerf DLRM-v2); output x_L.
//
// Tensor names in model.safetensors (weights/convert_dlrm.py writes them from the seed's module,
// facebookresearch/dlrm and TorchRec state_dicts):
//   embeddings.<table>.weight [num_embeddings, dim]
//   bottom_mlp.<i>.weight [out, in], bottom_mlp.<i>.bias [out]
//   top_mlp.<i>.weight, top_mlp.<i>.bias
//   interaction.cross.<l>.V [rank, N], interaction.cross.<l>.W [N, rank], interaction.cross.<l>.bias [N]
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/json_file.h"

namespace flurry::dlrm {

enum class Pooling { kSum, kMean };
enum class InteractionType { kDot, kOuter, kCat, kDcnV2 };
enum class Pairs { kStrictLower, kLowerWithDiag, kStrictUpper, kUpperWithDiag };

const char* pooling_name(Pooling p);
const char* interaction_name(InteractionType t);
const char* pairs_name(Pairs p);

struct TableConfig {
  std::string name;
  int64_t rows = 0, dim = 0;
};

struct BagConfig {
  std::string name;
  int table = 0;  // index into DlrmConfig::tables
  Pooling pooling = Pooling::kSum;
  std::vector<std::string> features;  // categorical features whose indices this bag pools
};

struct InteractionConfig {
  InteractionType type = InteractionType::kDot;
  Pairs pairs = Pairs::kStrictLower;
  bool include_dense = true;  // dot: the bottom output goes first in the output
  int64_t layers = 0, rank = 0;  // dcnv2
};

struct DlrmConfig {
  std::vector<std::string> dense_features;
  std::vector<TableConfig> tables;
  std::vector<BagConfig> bags;
  std::vector<int64_t> bottom_mlp;  // widths, input excluded
  bool bottom_final_relu = true;
  InteractionConfig interaction;
  std::vector<int64_t> top_mlp;  // widths, input excluded; the last is 1 (the logit)

  int64_t num_dense() const { return static_cast<int64_t>(dense_features.size()); }
  int64_t num_bags() const { return static_cast<int64_t>(bags.size()); }
  // The bottom MLP's output width (num_dense when there is no bottom MLP).
  int64_t bottom_out() const { return bottom_mlp.empty() ? num_dense() : bottom_mlp.back(); }
  // The embedding dim every bag shares (the interactions other than cat need one).
  int64_t embedding_dim() const;
  // Width of the interaction's output = the top MLP's input.
  int64_t interaction_out() const;
  // Width of [bottom, bag_0, ...] (cat, dcnv2, outer's z).
  int64_t concat_width() const;
  // Number of (i, j) pairs of an n x n triangle.
  static int64_t pair_count(Pairs p, int64_t n);
};

// Reads <dir>/config.json (or a config.json path). Refuses, naming the file and the field, what this
// DLRM cannot run: unknown types, a bag over an unknown table, dims that disagree, a top MLP whose
// last width is not 1.
DlrmConfig load_dlrm_config(const std::string& path);
DlrmConfig dlrm_config_from_json(const Json& j, const std::string& where);
Json dlrm_config_to_json(const DlrmConfig& c);

// (i, j) of the pairs, in output order.
std::vector<std::pair<int32_t, int32_t>> interaction_pairs(Pairs p, int64_t n);

}  // namespace flurry::dlrm
