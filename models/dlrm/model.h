// The DLRM forward on the CPU reference path (fp32, the oracle of the GPU kernels) and the weight
// table that binds, uploads and randomises its checkpoint.
//
//   DlrmConfig cfg = load_dlrm_config(dir);
//   Checkpoint ck = Checkpoint::open(dir + "/model.safetensors");
//   DlrmModel m = load_dlrm_cpu(cfg, ck);            // validates against dlrm_weight_table(cfg)
//   DlrmScratch s;
//   dlrm_forward(m, batch, s, logits);               // logits [batch.n]
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/common/weight_table.h"
#include "models/dlrm/config.h"
#include "models/dlrm/features.h"

namespace flurry::dlrm {

// The tensors of a DLRM's checkpoint (names in config.h). Tables use a small uniform init (as
// facebookresearch/dlrm's +-1/sqrt(rows)), MLPs fan-in.
models::WeightTable dlrm_weight_table(const DlrmConfig& c);

struct DlrmModel {
  DlrmConfig cfg;
  std::vector<std::vector<float>> tables;  // [rows * dim] per table
  std::vector<models::LinearW> bottom, top;
  struct Cross {
    std::vector<float> v, w, b;  // V [rank, N], W [N, rank], b [N]
  };
  std::vector<Cross> cross;
};

DlrmModel load_dlrm_cpu(const DlrmConfig& cfg, const Checkpoint& ck);

// ---- Reference ops (each one kernel's oracle) ----

// out[i, :] = pooling over indices[offsets[i] .. offsets[i + 1]) of table rows; an empty bag is 0.
// Indices are checked against `rows` (throws flurry::Error: encoded batches never hold a bad one).
void embedding_bag_ref(const float* table, int64_t rows, int64_t dim, const int32_t* offsets,
                       const int32_t* indices, int64_t n, Pooling pooling, float* out, int64_t ld_out);

// The interaction of dot/outer/cat: `feats` is [n, ld_feats] holding, per sample, the bottom output
// then the bags' vectors (concat_width values); out is [n, interaction_out].
void interaction_ref(const DlrmConfig& c, const float* feats, int64_t ld_feats, int64_t n, float* out);

// One low-rank cross layer in place: x = x0 * (W (V x) + b) + x, rows of width N.
void cross_layer_ref(const DlrmModel::Cross& l, const float* x0, float* x, int64_t n, int64_t width,
                     int64_t rank, float* scratch_rank);

struct DlrmScratch {
  std::vector<float> a, b, feats, inter, rank;
};

// logits[i] for every sample of the batch.
void dlrm_forward(const DlrmModel& m, const DlrmBatch& batch, DlrmScratch& s, float* logits);

float sigmoid(float x);

}  // namespace flurry::dlrm
