// A BERT-family sentence encoder as its Hugging Face / sentence-transformers folder describes it:
// config.json (BertModel: post-LN, absolute positions, token types, exact erf GELU,
// layer_norm_eps) and the sentence-transformers pipeline (modules.json: Transformer -> Pooling ->
// Normalize; 1_Pooling/config.json; sentence_bert_config.json's max_seq_length).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "io/json_file.h"

namespace flurry::bert {

struct BertConfig {
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  int64_t type_vocab_size = 0;
  float layer_norm_eps = 1e-12f;
  std::string hidden_act = "gelu";
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

// Reads config.json; refuses (naming the file and field) what this BERT cannot run: another
// architecture (RoBERTa's offset positions, XLM-R, ...), relative positions, an activation other
// than the exact GELU, inconsistent sizes.
BertConfig load_bert_config(const std::string& path);
BertConfig bert_config_from_json(const Json& j, const std::string& where);

enum class Pooling { kMean, kCls, kMax, kMeanSqrtLen };
const char* pooling_name(Pooling p);
Pooling parse_pooling(const std::string& name);  // mean, cls, max, mean_sqrt_len

// What the sentence-transformers files say, with the defaults a plain HF folder gets (mean
// pooling, no normalisation, max_seq_length = max_position_embeddings).
struct SentenceConfig {
  Pooling pooling = Pooling::kMean;
  bool normalize = false;       // a Normalize module follows the pooling
  int64_t max_seq_length = 0;   // tokens, [CLS] and [SEP] included
  bool sentence_transformers = false;  // modules.json was found
  // config_sentence_transformers.json: named prompts ("query" -> "query: ") and the one
  // sentence-transformers prepends when the caller names none; the Pooling module's include_prompt.
  std::map<std::string, std::string> prompts;
  std::string default_prompt_name;  // "": none
  bool include_prompt = true;       // false: pooling leaves the prompt's tokens out (not supported)
};
SentenceConfig load_sentence_config(const std::string& dir, const BertConfig& c);

// The text sentence-transformers' encode() prepends, from its arguments: `prompt` when given (even
// empty), else prompts[prompt_name] when a name is given (an unknown name is an error naming the
// known ones), else the default prompt name's, else none. A prompt the checkpoint cannot pool as
// sentence-transformers would (include_prompt false) is refused. `what` names the flags in errors.
std::string resolve_prompt(const SentenceConfig& s, const std::optional<std::string>& prompt,
                           const std::string& prompt_name, const std::string& what);

}  // namespace flurry::bert
