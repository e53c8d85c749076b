#include "models/bert/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "models/common/layers.h"
#include "runtime/check.h"
#include "runtime/ref/ops.h"

namespace fs = std::filesystem;

namespace flurry::bert {

namespace {

using models::FusedPart;
using models::WeightInit;

std::string layer_key(int64_t i) { return "encoder.layer." + std::to_string(i) + "."; }

}  // namespace

std::string detect_bert_prefix(const Checkpoint& ck) {
  for (const char* p : {"", "bert."}) {
    if (ck.has(std::string(p) + "embeddings.word_embeddings.weight")) return p;
  }
  FLURRY_FAIL(ck.dir() << ": not a BERT checkpoint (no embeddings.word_embeddings.weight, with or without 'bert.')");
}

models::WeightTable bert_weight_table(const BertConfig& c, const std::string& prefix) {
  models::WeightTable t;
  const int64_t d = c.hidden_size;
  auto ln = [&](const std::string& key) {
    t.add(key + ".weight", prefix + key + ".weight", {d}, WeightInit::uniform(0.8f, 1.2f));
    t.add(key + ".bias", prefix + key + ".bias", {d}, WeightInit::uniform(-0.1f, 0.1f));
  };
  auto linear = [&](const std::string& key, int64_t in, int64_t out) {
    t.add(key + ".weight", prefix + key + ".weight", {out, in}, WeightInit::fan_in());
    t.add(key + ".bias", prefix + key + ".bias", {out}, WeightInit::uniform(-0.1f, 0.1f));
  };
  t.add("embeddings.word_embeddings.weight", prefix + "embeddings.word_embeddings.weight", {c.vocab_size, d},
        WeightInit::uniform(-0.5f, 0.5f));
  t.add("embeddings.position_embeddings.weight", prefix + "embeddings.position_embeddings.weight",
        {c.max_position_embeddings, d}, WeightInit::uniform(-0.5f, 0.5f));
  t.add("embeddings.token_type_embeddings.weight", prefix + "embeddings.token_type_embeddings.weight",
        {c.type_vocab_size, d}, WeightInit::uniform(-0.5f, 0.5f));
  ln("embeddings.LayerNorm");
  // HF scales the scores by head_dim^-0.5; folded into the query rows and bias at load time.
  const float qs = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim())));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string k = layer_key(i);
    std::vector<FusedPart> w, b;
    for (const char* part : {"query", "key", "value"}) {
      const std::string n = prefix + k + "attention.self." + part;
      const float s = std::string(part) == "query" ? qs : 1.0f;
      w.push_back(FusedPart{n + ".weight", {d, d}, WeightInit::fan_in(), s, false});
      b.push_back(FusedPart{n + ".bias", {d}, WeightInit::uniform(-0.1f, 0.1f), s, false});
    }
    t.add_fused(k + "attention.qkv.weight", w);
    t.add_fused(k + "attention.qkv.bias", b);
    linear(k + "attention.output.dense", d, d);
    ln(k + "attention.output.LayerNorm");
    linear(k + "intermediate.dense", d, c.intermediate_size);
    linear(k + "output.dense", c.intermediate_size, d);
    ln(k + "output.LayerNorm");
  }
  return t;
}

std::shared_ptr<const BertModel> BertModel::from_checkpoint(const BertConfig& c, const Checkpoint& ck) {
  const models::WeightTable t = bert_weight_table(c, detect_bert_prefix(ck));
  models::validate_checkpoint(t, ck);
  std::shared_ptr<BertModel> m(new BertModel());
  m->config_ = c;
  m->word = models::bind_f32(t, ck, "embeddings.word_embeddings.weight");
  m->position = models::bind_f32(t, ck, "embeddings.position_embeddings.weight");
  m->token_type = models::bind_f32(t, ck, "embeddings.token_type_embeddings.weight");
  m->emb_ln = models::bind_layernorm(t, ck, "embeddings.LayerNorm");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string k = layer_key(i);
    BertLayerW l;
    l.qkv = models::bind_linear(t, ck, k + "attention.qkv");
    l.attn_out = models::bind_linear(t, ck, k + "attention.output.dense");
    l.attn_ln = models::bind_layernorm(t, ck, k + "attention.output.LayerNorm");
    l.ffn_in = models::bind_linear(t, ck, k + "intermediate.dense");
    l.ffn_out = models::bind_linear(t, ck, k + "output.dense");
    l.ffn_ln = models::bind_layernorm(t, ck, k + "output.LayerNorm");
    m->layers.push_back(std::move(l));
  }
  return m;
}

std::shared_ptr<const BertModel> BertModel::load(const std::string& dir) {
  FLURRY_CHECK(fs::is_directory(dir), "model directory '" << dir << "' does not exist");
  const BertConfig c = load_bert_config((fs::path(dir) / "config.json").string());
  const Checkpoint ck = Checkpoint::open(dir);
  return from_checkpoint(c, ck);
}

BertScratch::BertScratch(const BertModel& m, int64_t max_tok) : max_tokens(max_tok) {
  const BertConfig& c = m.config();
  FLURRY_CHECK(max_tok >= 1 && max_tok <= c.max_position_embeddings,
               "BertScratch: " << max_tok << " tokens outside [1, " << c.max_position_embeddings << "]");
  const auto n = static_cast<size_t>(max_tok);
  const auto d = static_cast<size_t>(c.hidden_size);
  hidden.resize(n * d);
  blocks.resize(max_tok, c.hidden_size, 3 * c.hidden_size, c.intermediate_size,
                attention_scratch_floats(max_tok, max_tok));
}

void bert_forward(const BertModel& m, const int32_t* ids, int64_t n, BertScratch& s) {
  const BertConfig& c = m.config();
  const int64_t d = c.hidden_size;
  FLURRY_CHECK(n >= 1 && n <= s.max_tokens, "bert_forward: " << n << " tokens outside [1, " << s.max_tokens << "]");
  for (int64_t t = 0; t < n; ++t) {
    FLURRY_CHECK(ids[t] >= 0 && ids[t] < c.vocab_size, "bert_forward: token id " << ids[t] << " outside the vocabulary");
    float* row = s.hidden.data() + t * d;
    const float* w = m.word.data() + static_cast<int64_t>(ids[t]) * d;
    const float* p = m.position.data() + t * d;
    const float* ty = m.token_type.data();  // token type 0: one sentence
    for (int64_t j = 0; j < d; ++j) row[j] = w[j] + p[j] + ty[j];
  }
  models::layernorm(m.emb_ln, s.hidden.data(), s.blocks.normed.data(), n, d, c.layer_norm_eps);
  std::memcpy(s.hidden.data(), s.blocks.normed.data(), sizeof(float) * static_cast<size_t>(n * d));
  const models::CpuContext ctx = s.blocks.context(c.layer_norm_eps);
  models::AttentionOptions o;
  o.norm = models::NormPlacement::Post;
  o.heads = c.num_attention_heads;
  o.head_dim = c.head_dim();
  o.scale = 1.0f;  // folded into q
  for (const BertLayerW& l : m.layers) {
    models::AttentionWeights w{&l.attn_ln, &l.qkv, &l.attn_out};
    models::attention_block(w, o, s.hidden.data(), n, d, models::self_attention_kv(d, n), ctx);
    models::ffn_block(l.ffn_ln, l.ffn_in, l.ffn_out, models::NormPlacement::Post, s.hidden.data(), n, d, ctx);
  }
}

void pool(const float* hidden, int64_t n, int64_t d, Pooling p, float* out) {
  FLURRY_CHECK(n >= 1, "pool: no tokens");
  if (p == Pooling::kCls) {
    std::memcpy(out, hidden, sizeof(float) * static_cast<size_t>(d));
    return;
  }
  if (p == Pooling::kMax) {
    std::memcpy(out, hidden, sizeof(float) * static_cast<size_t>(d));
    for (int64_t t = 1; t < n; ++t) {
      for (int64_t j = 0; j < d; ++j) out[j] = std::max(out[j], hidden[t * d + j]);
    }
    return;
  }
  // Sums in double: a 512-token mean stays within fp32 rounding of the exact value.
  const double div = p == Pooling::kMean ? static_cast<double>(n) : std::sqrt(static_cast<double>(n));
  for (int64_t j = 0; j < d; ++j) {
    double acc = 0.0;
    for (int64_t t = 0; t < n; ++t) acc += hidden[t * d + j];
    out[j] = static_cast<float>(acc / div);
  }
}

void l2_normalize(float* v, int64_t d) {
  double ss = 0.0;
  for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(v[j]) * v[j];
  const double norm = std::max(std::sqrt(ss), 1e-12);
  for (int64_t j = 0; j < d; ++j) v[j] = static_cast<float>(v[j] / norm);
}

}  // namespace flurry::bert
