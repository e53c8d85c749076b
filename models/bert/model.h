// A BERT encoder on the CPU reference path: the immutable model (config, fp32 weights bound through
// the weight table) and the forward pass of one sequence, built from the shared post-LN blocks of
// models/common/layers.h; pooling and L2 normalisation as sentence-transformers applies them.
//
//   auto m = BertModel::load(dir);                 // config.json + model.safetensors
//   BertScratch s(*m, max_tokens);
//   bert_forward(*m, ids.data(), n, s);            // s.hidden: [n, d] token embeddings
//   pool(s.hidden.data(), n, d, Pooling::kMean, out);  l2_normalize(out, d);
//
// Keys of the weight table (without the checkpoint's prefix, "" or "bert."):
//   embeddings.{word,position,token_type}_embeddings.weight, embeddings.LayerNorm
//   encoder.layer.<i>.attention.qkv (q|k|v fused, head_dim^-0.5 folded into q),
//   encoder.layer.<i>.attention.output.{dense, LayerNorm}, encoder.layer.<i>.intermediate.dense,
//   encoder.layer.<i>.output.{dense, LayerNorm}; the pooler is not used (sentence embeddings pool).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "models/bert/config.h"
#include "models/common/layers.h"
#include "models/common/weight_table.h"

namespace flurry::bert {

models::WeightTable bert_weight_table(const BertConfig& c, const std::string& prefix = "");
// "" or "bert." (BertForMaskedLM and kin); throws "not a BERT checkpoint" otherwise.
std::string detect_bert_prefix(const Checkpoint& ck);

struct BertLayerW {
  models::LinearW qkv, attn_out, ffn_in, ffn_out;
  models::LayerNormW attn_ln, ffn_ln;
};

class BertModel {
 public:
  static std::shared_ptr<const BertModel> load(const std::string& dir);
  static std::shared_ptr<const BertModel> from_checkpoint(const BertConfig& c, const Checkpoint& ck);
  const BertConfig& config() const { return config_; }

  std::vector<float> word, position, token_type;  // [V, d], [P, d], [T, d]
  models::LayerNormW emb_ln;
  std::vector<BertLayerW> layers;

 private:
  BertModel() = default;
  BertConfig config_;
};

// Buffers for sequences of up to max_tokens tokens.
struct BertScratch {
  BertScratch(const BertModel& m, int64_t max_tokens);
  int64_t max_tokens = 0;
  std::vector<float> hidden;  // [max_tokens, d]: the token embeddings after bert_forward
  models::CpuBuffers blocks;
};

// Token embeddings of one unpadded sequence (token type 0, positions 0..n-1) into s.hidden [n, d].
// Throws for an id outside the vocabulary or n outside [1, max_tokens].
void bert_forward(const BertModel& m, const int32_t* ids, int64_t n, BertScratch& s);

// Pools n token rows [n, d] into out [d] (every token counts: the sequence is unpadded).
void pool(const float* hidden, int64_t n, int64_t d, Pooling p, float* out);
// out /= max(||out||, 1e-12), as torch.nn.functional.normalize.
void l2_normalize(float* v, int64_t d);

}  // namespace flurry::bert
