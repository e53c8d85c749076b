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
// facebookresearch/dlrm's +-1/sqrt(rows)), MLPs fan-in. With `tables` (one flag per config table),
// only the flagged embedding tables are listed: what one rank of a table-sharded run binds.
models::WeightTable dlrm_weight_table(const DlrmConfig& c, const std::vector<bool>* tables = nullptr);

struct DlrmModel {
  DlrmConfig cfg;
  std::vector<std::vector<float>> tables;  // [rows * dim] per table; empty when not bound here
  std::vector<models::LinearW> bottom, top;
  struct Cross {
    std::vector<float> v, w, b;  // V [rank, N], W [N, rank], b [N]
  };
  std::vector<Cross> cross;
};

DlrmModel load_dlrm_cpu(const DlrmConfig& cfg, const Checkpoint& ck);
// The same binding only the flagged tables (one flag per config table; the checkpoint is mapped, so
// the others are never read): a rank of a table-sharded run. dlrm_forward refuses such a model
// unless every table its bags read is bound; dlrm_forward_pooled needs none.
DlrmModel load_dlrm_cpu(const DlrmConfig& cfg, const Checkpoint& ck, const std::vector<bool>& tables);
bool table_bound(const DlrmModel& m, int table);

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

// The same forward with the bags already pooled elsewhere (the owners of a sharded run):
// pooled [batch.n, ld_pooled] holds each sample's bag vectors in bag order (concat_width - bottom_out
// values). Only batch.n and batch.dense are read. Pooled by embedding_bag_ref over the same indices
// in the same order, the logits are bit-identical to dlrm_forward's.
void dlrm_forward_pooled(const DlrmModel& m, const DlrmBatch& batch, const float* pooled, int64_t ld_pooled,
                         DlrmScratch& s, float* logits);

float sigmoid(float x);

}  // namespace flurry::dlrm
