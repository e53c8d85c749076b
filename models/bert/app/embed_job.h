// flurry-embed's jobs over the runner: embed a corpus into embeddings.npy + ids.jsonl, search saved
// embeddings, and evaluate retrieval on a BEIR folder. The model side is an Encoder (text ->
// pooled, normalised vectors); the CPU reference encoder is here, a GPU one plugs in the same way.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/text_rows.h"
#include "io/wordpiece_tokenizer.h"
#include "models/bert/config.h"
#include "models/bert/model.h"
#include "runtime/app/app.h"
#include "runtime/stage_timers.h"

namespace flurry::bert {

// One checkpoint folder, loaded once per process.
struct EmbedAssets {
  std::string dir;
  BertConfig config;
  std::shared_ptr<const BertModel> model;  // the CPU reference weights; null when not loaded
  std::shared_ptr<const WordPieceTokenizer> tokenizer;
  SentenceConfig sentence;
};
// `cpu_model` false skips the fp32 host copy of the weights (a GPU encoder reads the checkpoint
// itself); the CpuEncoder needs it.
EmbedAssets load_embed_assets(const std::string& dir, bool cpu_model = true);

struct EmbedOptions {
  int64_t max_seq_length = 0;  // 0: the checkpoint's (sentence_bert_config.json)
  int normalize = -1;          // -1: as modules.json says; 0/1: forced
  bool fp16_output = false;    // embeddings.npy as float16
  int64_t rows_per_chunk = 1024;
  // Long documents as windows of chunk_tokens tokens ([CLS] and [SEP] included) overlapping by
  // chunk_overlap tokens, one output row per window; 0: one row per text, truncated.
  int64_t chunk_tokens = 0;
  int64_t chunk_overlap = 0;
  // Threads that read and tokenise work items ahead of the encoder; 0: min(4, cores - 1), at least 1.
  int reader_threads = 0;
  // Also write vectors.jsonl: one line per output row, in row order, with its vector as JSON.
  bool vectors_jsonl = false;
  // Prepended to every text before tokenization, as sentence-transformers' encode(prompt=...) does
  // (resolve_prompt gives it from --prompt / --prompt-name / the checkpoint's default); "": none.
  std::string prompt;
};

// Token sequences -> pooled (and, as configured, normalised) vectors; a backend implements
// encode_ids, the tokenization is shared.
class Encoder {
 public:
  Encoder(const WordPieceTokenizer& tokenizer, int64_t max_len, StageTimers* timers)
      : tokenizer_(tokenizer), max_len_(max_len), timers_(timers) {}
  virtual ~Encoder() = default;
  virtual int64_t dim() const = 0;
  // Sequences ([CLS] ... [SEP], each at most max_len tokens) -> out [n, d].
  virtual void encode_ids(const std::vector<std::vector<int32_t>>& seqs, float* out) = 0;

  // Text rows -> out [rows, d] (row-major fp32), truncated at max_len. A row with an error (its own,
  // or invalid UTF-8) stays zeros: errors[i] says why, "" otherwise; tokens[i]: its token count
  // ([CLS]/[SEP] included).
  void encode(const std::vector<TextRow>& rows, float* out, std::vector<std::string>* errors,
              std::vector<int64_t>* tokens);
  // A row's ids (the prompt, then the row's text), truncated at max_len unless `whole`; returns ""
  // or why the row has none.
  std::string tokenize(const TextRow& row, bool whole, std::vector<int32_t>* ids) const;
  int64_t max_len() const { return max_len_; }
  // The text prepended to every row from now on (EmbedOptions::prompt); not while rows are encoded.
  void set_prompt(std::string prompt) { prompt_ = std::move(prompt); }

 protected:
  const WordPieceTokenizer& tokenizer_;
  int64_t max_len_;
  StageTimers* timers_;
  std::string prompt_;
};

// The CPU reference: one sequence at a time through bert_forward (batching cannot change a result).
class CpuEncoder : public Encoder {
 public:
  CpuEncoder(const EmbedAssets& a, const EmbedOptions& o, StageTimers* timers);
  int64_t dim() const override;
  void encode_ids(const std::vector<std::vector<int32_t>>& seqs, float* out) override;

 private:
  const EmbedAssets& a_;
  bool normalize_;
  BertScratch scratch_;
};

int64_t effective_max_len(const EmbedAssets& a, const EmbedOptions& o);

// One text's windows for --chunk-tokens: [CLS] + body[b, e) + [SEP] for e - b <= chunk_tokens - 2,
// starting every chunk_tokens - 2 - overlap body tokens, the last one shorter; a text with no
// tokens gives one window. `ranges` receives [b, e) per window, in body-token offsets.
std::vector<std::vector<int32_t>> token_windows(const std::vector<int32_t>& with_specials, int64_t chunk_tokens,
                                                int64_t overlap, std::vector<std::pair<int64_t, int64_t>>* ranges);
bool effective_normalize(const EmbedAssets& a, const EmbedOptions& o);

// Embeds `paths` (text inputs, see io/text_rows.h) into app.runner.output_dir: embeddings.npy
// (rows in input order), ids.jsonl (one line per row: row, id, status, error, tokens) and the
// runner's results.jsonl (one record per chunk) + manifest.json. Returns 0 when every row has a
// vector, 1 when any row is an error (its vector is zeros and ids.jsonl says why).
//
// Pipelined over the runner's session: reader threads take work items (JobSession::next), read
// and tokenise them and hand them over through a bounded queue; the calling thread (the one whose
// CUDA device the rank selected) encodes each and completes it with its vectors, so chunk i + 1 is
// read and tokenised while chunk i is encoded. Items may complete out of order: the runner puts
// records and vectors back in input order, so the outputs do not depend on the thread count.
int run_embed(app::AppContext& app, const EmbedAssets& assets, const EmbedOptions& o, Encoder& enc,
              const std::vector<std::string>& paths, const TextSpec& spec, StageTimers* timers);

}  // namespace flurry::bert

namespace flurry::bert {

// Loads OUTPUT_DIR/embeddings.npy and ids.jsonl of an earlier embed run (rows with an error are
// kept and marked, so row numbers stay aligned).
struct EmbeddedSet {
  int64_t rows = 0, dim = 0;
  std::vector<float> vectors;  // [rows, dim] fp32
  std::vector<std::string> ids;
  std::vector<bool> ok;
};
EmbeddedSet load_embedded(const std::string& dir);

}  // namespace flurry::bert
