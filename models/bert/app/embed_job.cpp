#include "models/bert/app/embed_job.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "io/json_file.h"
#include "io/npy.h"
#include "runtime/check.h"
#include "runtime/dist/records.h"
#include "runtime/dtype.h"
#include "runtime/log.h"

namespace fs = std::filesystem;

namespace flurry::bert {

EmbedAssets load_embed_assets(const std::string& dir, bool cpu_model) {
  FLURRY_CHECK(fs::is_directory(dir), "model directory '" << dir << "' does not exist");
  EmbedAssets a;
  a.dir = dir;
  if (cpu_model) {
    a.model = BertModel::load(dir);
    a.config = a.model->config();
  } else {
    a.config = load_bert_config((fs::path(dir) / "config.json").string());
  }
  a.tokenizer = std::make_shared<const WordPieceTokenizer>(WordPieceTokenizer::from_dir(dir));
  a.sentence = load_sentence_config(dir, a.config);
  FLURRY_CHECK(a.tokenizer->vocab_size() <= a.config.vocab_size,
               dir << ": the tokenizer has " << a.tokenizer->vocab_size() << " tokens, the model "
                   << a.config.vocab_size);
  return a;
}

int64_t effective_max_len(const EmbedAssets& a, const EmbedOptions& o) {
  const int64_t limit = a.config.max_position_embeddings;
  const int64_t n = o.max_seq_length > 0 ? o.max_seq_length : a.sentence.max_seq_length;
  FLURRY_CHECK(n >= 2 && n <= limit, "--max-seq-length " << n << " outside [2, " << limit << "]");
  return n;
}

bool effective_normalize(const EmbedAssets& a, const EmbedOptions& o) {
  return o.normalize < 0 ? a.sentence.normalize : o.normalize == 1;
}

namespace {
const BertModel& cpu_model(const EmbedAssets& a) {
  FLURRY_CHECK(a.model != nullptr, a.dir << ": the CPU encoder needs the model loaded (load_embed_assets cpu_model)");
  return *a.model;
}
}  // namespace

CpuEncoder::CpuEncoder(const EmbedAssets& a, const EmbedOptions& o, StageTimers* timers)
    : Encoder(*a.tokenizer, effective_max_len(a, o), timers), a_(a), normalize_(effective_normalize(a, o)),
      scratch_(cpu_model(a), max_len_) {}

int64_t CpuEncoder::dim() const { return a_.config.hidden_size; }

void CpuEncoder::encode_ids(const std::vector<std::vector<int32_t>>& seqs, float* out) {
  const int64_t d = dim();
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto n = static_cast<int64_t>(seqs[i].size());
    FLURRY_CHECK(n <= max_len_, "encode_ids: " << n << " tokens exceed max_seq_length " << max_len_);
    float* v = out + static_cast<int64_t>(i) * d;
    {
      ScopedStage st(timers_, "encode");
      bert_forward(*a_.model, seqs[i].data(), n, scratch_);
    }
    pool(scratch_.hidden.data(), n, d, a_.sentence.pooling, v);
    if (normalize_) l2_normalize(v, d);
  }
}

std::string Encoder::tokenize(const TextRow& row, bool whole, std::vector<int32_t>* ids) const {
  if (!row.error.empty()) return row.error;
  try {
    ScopedStage st(timers_, "tokenize");
    *ids = tokenizer_.encode(prompt_.empty() ? row.text : prompt_ + row.text, whole ? 0 : static_cast<int>(max_len_));
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

void Encoder::encode(const std::vector<TextRow>& rows, float* out, std::vector<std::string>* errors,
                     std::vector<int64_t>* tokens) {
  const auto d = static_cast<size_t>(dim());
  errors->assign(rows.size(), "");
  tokens->assign(rows.size(), 0);
  std::vector<std::vector<int32_t>> seqs;
  std::vector<size_t> row_of;  // the row of each sequence
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<int32_t> ids;
    (*errors)[i] = tokenize(rows[i], false, &ids);
    if (!(*errors)[i].empty()) continue;
    (*tokens)[i] = static_cast<int64_t>(ids.size());
    row_of.push_back(i);
    seqs.push_back(std::move(ids));
  }
  std::vector<float> vecs(seqs.size() * d);
  encode_ids(seqs, vecs.data());
  std::fill(out, out + rows.size() * d, 0.0f);
  for (size_t s = 0; s < seqs.size(); ++s) std::copy_n(vecs.begin() + static_cast<std::ptrdiff_t>(s * d), d, out + row_of[s] * d);
}

std::vector<std::vector<int32_t>> token_windows(const std::vector<int32_t>& ids, int64_t chunk_tokens,
                                                int64_t overlap, std::vector<std::pair<int64_t, int64_t>>* ranges) {
  FLURRY_CHECK(ids.size() >= 2, "token_windows: expected [CLS] ... [SEP]");
  const int64_t width = chunk_tokens - 2;
  FLURRY_CHECK(width >= 1 && overlap >= 0 && overlap < width,
               "--chunk-tokens " << chunk_tokens << " with --chunk-overlap " << overlap
                                 << ": need chunk_tokens >= 3 and 0 <= overlap < chunk_tokens - 2");
  const int64_t body = static_cast<int64_t>(ids.size()) - 2;
  std::vector<std::vector<int32_t>> out;
  ranges->clear();
  for (int64_t b = 0;; b += width - overlap) {
    const int64_t e = std::min(body, b + width);
    std::vector<int32_t> w;
    w.reserve(static_cast<size_t>(e - b + 2));
    w.push_back(ids.front());
    w.insert(w.end(), ids.begin() + 1 + b, ids.begin() + 1 + e);
    w.push_back(ids.back());
    out.push_back(std::move(w));
    ranges->emplace_back(b, e);
    if (e >= body) break;
  }
  return out;
}

namespace {

// ids.jsonl from the merged chunk records, one line per row in row order; returns the error rows.
int64_t write_ids(const std::string& out_dir, const std::vector<dist::WorkItem>& items, int64_t* next_row) {
  int64_t bad = 0;
  *next_row = 0;
  std::ifstream in(out_dir + "/results.jsonl");
  FLURRY_CHECK(in.good(), out_dir << "/results.jsonl: cannot read the merged results");
  std::string text;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json rec = nlohmann::json::parse(line);
    const size_t k = rec["index"].get<size_t>();
    const dist::WorkItem& it = items.at(k);
    if (rec["status"] != "ok") {  // the whole chunk failed and has no vectors (runner error)
      continue;
    }
    const auto& ids = rec["row_ids"];
    const auto& errs = rec["row_errors"];
    const auto& toks = rec["row_tokens"];
    const bool chunked = rec.contains("row_doc_ids");
    (void)it;
    for (size_t r = 0; r < ids.size(); ++r) {
      nlohmann::ordered_json row;
      row["row"] = *next_row;
      ++*next_row;
      row["id"] = ids[static_cast<size_t>(r)];
      if (chunked) {
        row["doc_id"] = rec["row_doc_ids"][r];
        row["token_start"] = rec["row_token_spans"][r][0];
        row["token_end"] = rec["row_token_spans"][r][1];
      }
      const std::string err = errs[static_cast<size_t>(r)].get<std::string>();
      row["status"] = err.empty() ? "ok" : "error";
      if (!err.empty()) {
        row["error"] = err;
        ++bad;
      }
      row["tokens"] = toks[static_cast<size_t>(r)];
      text += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      text += '\n';
    }
  }
  dist::write_file_atomic(out_dir + "/ids.jsonl", text);
  return bad;
}

// vectors.jsonl from ids.jsonl and embeddings.npy, one line per row in row order:
// {"row", "id", "status", "vector": [d floats] or null for an error row}. Streams both files a block
// of rows at a time (the matrix can be larger than memory) into a temporary file renamed at the end.
void write_vectors_jsonl(const std::string& out_dir) {
  const std::string npy = out_dir + "/embeddings.npy";
  const NpyInfo info = read_npy_info(npy);
  std::ifstream ids(out_dir + "/ids.jsonl");
  FLURRY_CHECK(ids.good(), out_dir << "/ids.jsonl: cannot read");
  const std::string path = out_dir + "/vectors.jsonl", tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  FLURRY_CHECK(out.good(), tmp << ": cannot write");
  constexpr int64_t kBlock = 1024;
  std::vector<float> block;
  int64_t block_begin = 0, block_end = 0, row = 0;
  char num[32];
  for (std::string line; std::getline(ids, line); ++row) {
    const nlohmann::json rec = nlohmann::json::parse(line);
    FLURRY_CHECK(row < info.rows, npy << " has " << info.rows << " rows, ids.jsonl more");
    if (row >= block_end) {
      block_begin = row;
      block_end = std::min(info.rows, row + kBlock);
      block.resize(static_cast<size_t>((block_end - block_begin) * info.cols));
      read_npy_rows(npy, info, block_begin, block_end, block.data());
    }
    nlohmann::ordered_json head;
    head["row"] = rec["row"];
    head["id"] = rec["id"];
    head["status"] = rec["status"];
    if (rec.contains("error")) head["error"] = rec["error"];
    std::string text = head.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text.pop_back();  // the closing brace: the vector follows
    const bool ok = rec["status"] == "ok";
    text += ok ? ",\"vector\":[" : ",\"vector\":null}\n";
    if (ok) {
      const float* v = block.data() + (row - block_begin) * info.cols;
      for (int64_t j = 0; j < info.cols; ++j) {
        // %.9g round-trips a float; a non-finite value has no JSON number and is written null.
        if (std::isfinite(v[j])) {
          std::snprintf(num, sizeof(num), "%.9g", static_cast<double>(v[j]));
        } else {
          std::snprintf(num, sizeof(num), "null");
        }
        if (j > 0) text += ',';
        text += num;
      }
      text += "]}\n";
    }
    out << text;
  }
  FLURRY_CHECK(row == info.rows, npy << " has " << info.rows << " rows, ids.jsonl " << row);
  out.close();
  FLURRY_CHECK(!out.fail(), tmp << ": write failed");
  fs::rename(tmp, path);
}

// One work item read and tokenised (the reader threads' part): its output rows (a text, or a window
// of one with --chunk-tokens), the token sequences to encode and the row each fills.
struct PreparedChunk {
  dist::WorkItem item;
  std::vector<TextRow> rows;
  std::vector<std::string> errors;   // per row, "" when it gets a vector
  std::vector<int64_t> row_tokens;   // per row, [CLS]/[SEP] included; 0 for an error
  std::vector<std::vector<int32_t>> seqs;
  std::vector<size_t> seq_row;       // output row of each sequence
  bool windows = false;              // --chunk-tokens: doc ids and token spans per row
  nlohmann::json doc_ids = nlohmann::json::array(), spans = nlohmann::json::array();
};

std::vector<TextRow> read_rows(const TextChunk& c, const TextSpec& spec, StageTimers* timers) {
  std::vector<TextRow> rows;
  try {
    ScopedStage st(timers, "read");
    rows = read_text_chunk(c, spec);
  } catch (const InputError& e) {
    // The file changed since it was indexed: every row of the chunk keeps its place as an error.
    rows.assign(static_cast<size_t>(c.rows), TextRow{});
    for (int64_t r = 0; r < c.rows; ++r) {
      rows[static_cast<size_t>(r)].row = c.row_begin + r;
      rows[static_cast<size_t>(r)].id = c.path + ":" + std::to_string(c.file_row_begin + r);
      rows[static_cast<size_t>(r)].error = e.what();
    }
  }
  return rows;
}

PreparedChunk prepare_chunk(const dist::WorkItem& it, const TextSpec& spec, const EmbedOptions& o, const Encoder& enc,
                            StageTimers* timers) {
  PreparedChunk p;
  p.item = it;
  std::vector<TextRow> rows = read_rows(parse_text_chunk_id(it.id), spec, timers);
  if (o.chunk_tokens <= 0) {
    // One row per text, truncated at max_seq_length.
    p.errors.assign(rows.size(), "");
    p.row_tokens.assign(rows.size(), 0);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::vector<int32_t> ids;
      p.errors[i] = enc.tokenize(rows[i], /*whole=*/false, &ids);
      if (!p.errors[i].empty()) continue;
      p.row_tokens[i] = static_cast<int64_t>(ids.size());
      p.seq_row.push_back(i);
      p.seqs.push_back(std::move(ids));
    }
    p.rows = std::move(rows);
    return p;
  }
  // Each text becomes its token windows, one output row each, keeping its document id.
  p.windows = true;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const TextRow& r : rows) {
    std::vector<int32_t> all;
    const std::string err = enc.tokenize(r, /*whole=*/true, &all);
    if (!err.empty()) {
      TextRow bad = r;
      bad.error = err;
      p.rows.push_back(bad);
      p.doc_ids.push_back(r.id);
      p.spans.push_back(nlohmann::json::array({0, 0}));
      continue;
    }
    auto windows = token_windows(all, o.chunk_tokens, o.chunk_overlap, &ranges);
    for (size_t k = 0; k < windows.size(); ++k) {
      TextRow win = r;
      win.id = r.id + "#" + std::to_string(k);
      p.seq_row.push_back(p.rows.size());
      p.rows.push_back(win);
      p.doc_ids.push_back(r.id);
      p.spans.push_back(nlohmann::json::array({ranges[k].first, ranges[k].second}));
      p.seqs.push_back(std::move(windows[k]));
    }
  }
  p.errors.assign(p.rows.size(), "");
  p.row_tokens.assign(p.rows.size(), 0);
  for (size_t i = 0; i < p.rows.size(); ++i) p.errors[i] = p.rows[i].error;
  for (size_t q = 0; q < p.seqs.size(); ++q) p.row_tokens[p.seq_row[q]] = static_cast<int64_t>(p.seqs[q].size());
  return p;
}

// The device thread's part: the sequences through the encoder, the vectors (zeros for error rows)
// as the item's bytes, and its record.
nlohmann::json finish_chunk(const PreparedChunk& p, Encoder& enc, bool fp16_output, std::vector<char>* data) {
  const auto d = static_cast<size_t>(enc.dim());
  std::vector<float> seq_vecs(p.seqs.size() * d);
  enc.encode_ids(p.seqs, seq_vecs.data());
  std::vector<float> vecs(p.rows.size() * d, 0.0f);
  for (size_t q = 0; q < p.seqs.size(); ++q) {
    std::copy_n(seq_vecs.begin() + static_cast<std::ptrdiff_t>(q * d), d,
                vecs.begin() + static_cast<std::ptrdiff_t>(p.seq_row[q] * d));
  }
  int64_t tokens = 0;
  for (int64_t t : p.row_tokens) tokens += t;
  data->resize(vecs.size() * (fp16_output ? 2 : 4));
  if (fp16_output) {
    auto* h = reinterpret_cast<uint16_t*>(data->data());
    for (size_t i = 0; i < vecs.size(); ++i) h[i] = float_to_half_bits(vecs[i]);
  } else {
    std::memcpy(data->data(), vecs.data(), data->size());
  }
  nlohmann::json ids = nlohmann::json::array(), errs = nlohmann::json::array(), toks = nlohmann::json::array();
  int64_t n_err = 0;
  for (size_t r = 0; r < p.rows.size(); ++r) {
    ids.push_back(p.rows[r].id);
    errs.push_back(p.errors[r]);
    n_err += p.errors[r].empty() ? 0 : 1;
    toks.push_back(p.row_tokens[r]);
  }
  nlohmann::json rec{{"rows", static_cast<int64_t>(p.rows.size())}, {"row_errors_count", n_err},
                     {"tokens", tokens},  {"row_ids", ids},
                     {"row_errors", errs}, {"row_tokens", toks}};
  if (p.windows) {
    rec["row_doc_ids"] = p.doc_ids;
    rec["row_token_spans"] = p.spans;
  }
  return rec;
}

// The bounded hand-over from the reader threads to the device thread, the stop flag and the
// first fault of any thread.
class ChunkQueue {
 public:
  ChunkQueue(size_t capacity, int readers) : capacity_(capacity), readers_left_(readers) {}
  // Blocks while full; false when the run stops.
  bool push(PreparedChunk&& c) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return stop_ || queue_.size() < capacity_; });
    if (stop_) return false;
    queue_.push_back(std::move(c));
    not_empty_.notify_one();
    return true;
  }
  // Blocks while empty; false when the readers are done and the queue is drained, or on stop.
  bool pop(PreparedChunk* c) {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return stop_ || !queue_.empty() || readers_left_ == 0; });
    if (stop_ || queue_.empty()) return false;
    *c = std::move(queue_.front());
    queue_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void reader_done() {
    std::lock_guard<std::mutex> lock(mu_);
    --readers_left_;
    not_empty_.notify_all();
  }
  // Records the first fault (later ones are consequences) and stops every thread.
  void fail(std::exception_ptr e, const std::string& item) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!fault_) {
      fault_ = std::move(e);
      fault_item_ = item;
    }
    stop_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }
  bool stopped() {
    std::lock_guard<std::mutex> lock(mu_);
    return stop_;
  }
  // After the threads are joined: rethrows the first fault, naming its item.
  void rethrow() {
    if (!fault_) return;
    try {
      std::rethrow_exception(fault_);
    } catch (const std::exception& e) {
      if (fault_item_.empty()) throw;
      FLURRY_FAIL("input '" << fault_item_ << "': " << e.what());
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<PreparedChunk> queue_;
  size_t capacity_;
  int readers_left_;
  bool stop_ = false;
  std::exception_ptr fault_;
  std::string fault_item_;
};

// Reader threads prepare items ahead into a queue of 2 x readers; the calling thread finishes
// them. An InputError is the item's own (an error record, the run goes on); any other fault, or the
// runner's FLURRY_TEST_FATAL_AT hook, stops every thread and is rethrown here, naming the item.
template <typename Prepare, typename Finish>
void run_pipeline(dist::JobSession& session, int readers, const Prepare& prepare, const Finish& finish) {
  ChunkQueue queue(static_cast<size_t>(2 * readers), readers);
  const auto read_ahead = [&] {
    dist::WorkItem item;
    std::string held;  // the item being prepared, to name in a fault
    try {
      while (!queue.stopped() && session.next(&item)) {
        held = item.id;
        PreparedChunk c;
        try {
          c = prepare(item);
        } catch (const InputError& e) {
          session.fail(item, e.what());
          continue;
        }
        if (!queue.push(std::move(c))) break;
        held.clear();
      }
    } catch (...) {
      queue.fail(std::current_exception(), held);
    }
    queue.reader_done();
  };
  std::vector<std::thread> threads;
  try {
    for (int t = 0; t < readers; ++t) threads.emplace_back(read_ahead);
  } catch (...) {  // no thread to start: stop the ones that run
    queue.fail(std::current_exception(), "");
    for (std::thread& t : threads) t.join();
    throw;
  }
  const char* fatal_env = std::getenv("FLURRY_TEST_FATAL_AT");
  const int64_t fatal_at = fatal_env != nullptr && *fatal_env != '\0' ? std::atoll(fatal_env) : -1;
  try {
    PreparedChunk c;
    while (queue.pop(&c)) {
      try {
        if (c.item.index == fatal_at) FLURRY_FAIL("injected fatal fault (FLURRY_TEST_FATAL_AT=" << fatal_at << ")");
        finish(c);
      } catch (const InputError& e) {
        session.fail(c.item, e.what());
      } catch (...) {
        queue.fail(std::current_exception(), c.item.id);
        break;
      }
    }
  } catch (...) {
    queue.fail(std::current_exception(), "");
  }
  for (std::thread& t : threads) t.join();
  queue.rethrow();
}

}  // namespace

int run_embed(app::AppContext& app, const EmbedAssets& assets, const EmbedOptions& o, Encoder& enc,
              const std::vector<std::string>& paths, const TextSpec& spec, StageTimers* timers) {
  dist::RunnerOptions& opts = app.runner;
  opts.unit = "rows";
  opts.work_key = "rows";
  opts.model = assets.dir;
  opts.timers = timers;
  const int64_t d = enc.dim();
  const size_t elt = o.fp16_output ? 2 : 4;
  opts.data_output = "embeddings.npy";
  opts.data_header = [d, elt, fp16 = o.fp16_output](uint64_t bytes) {
    return npy_header(fp16 ? NpyDtype::kFloat16 : NpyDtype::kFloat32, static_cast<int64_t>(bytes / (d * elt)), d);
  };
  opts.extra["embedding"] = {{"dim", d},
                             {"dtype", o.fp16_output ? "float16" : "float32"},
                             {"pooling", pooling_name(assets.sentence.pooling)},
                             {"normalize", effective_normalize(assets, o)},
                             {"max_seq_length", effective_max_len(assets, o)},
                             {"chunk_tokens", o.chunk_tokens},
                             {"chunk_overlap", o.chunk_overlap},
                             {"prompt", o.prompt}};
  FLURRY_CHECK(o.prompt.empty() || o.chunk_tokens == 0,
               "a prompt with --chunk-tokens is not supported (it would head only the first window); "
               "pass an empty --prompt or embed whole texts");
  enc.set_prompt(o.prompt);
  if (o.chunk_tokens > 0) {
    FLURRY_CHECK(o.chunk_tokens <= effective_max_len(assets, o),
                 "--chunk-tokens " << o.chunk_tokens << " exceeds max_seq_length " << effective_max_len(assets, o));
    FLURRY_CHECK(o.chunk_tokens >= 3 && o.chunk_overlap >= 0 && o.chunk_overlap < o.chunk_tokens - 2,
                 "--chunk-overlap " << o.chunk_overlap << " must be in [0, chunk_tokens - 2)");
  }
  const std::vector<dist::WorkItem> items = dist::share_items(&app.dist, [&] {
    ScopedStage st(timers, "index");
    std::vector<dist::WorkItem> out;
    for (const TextChunk& c : index_text_inputs(paths, spec, o.rows_per_chunk)) {
      dist::WorkItem w;
      w.index = static_cast<int64_t>(out.size());
      w.id = text_chunk_id(c);
      w.cost = static_cast<double>(c.byte_end - c.byte_begin);
      w.row_begin = c.row_begin;
      w.row_end = c.row_begin + c.rows;
      out.push_back(std::move(w));
    }
    dist::assign_output_keys(out);
    return out;
  });
  int readers = o.reader_threads;
  if (readers <= 0) readers = std::clamp(static_cast<int>(std::thread::hardware_concurrency()) - 1, 1, 4);
  const int status = dist::run_job_session(app.dist, opts, items, [&](dist::JobSession& session) {
    run_pipeline(
        session, readers, [&](const dist::WorkItem& it) { return prepare_chunk(it, spec, o, enc, timers); },
        [&](PreparedChunk& c) {
          std::vector<char> data;
          const nlohmann::json rec = finish_chunk(c, enc, o.fp16_output, &data);
          session.complete_with_data(c.item, rec, data.data(), data.size());
        });
    if (opts.after_last_item) opts.after_last_item();
  });
  int64_t bad_rows = 0;
  if (app.dist.is_root()) {
    int64_t total = 0;
    bad_rows = write_ids(opts.output_dir, items, &total);
    // The runner's manifest counts work items; add the output rows.
    nlohmann::json m = read_json_file(opts.output_dir + "/manifest.json");
    m["rows"] = total;
    m["row_errors"] = bad_rows;
    if (o.vectors_jsonl) {
      ScopedStage st(timers, "vectors_jsonl");
      write_vectors_jsonl(opts.output_dir);
      m["vectors_jsonl"] = "vectors.jsonl";
    }
    dist::write_file_atomic(opts.output_dir + "/manifest.json", m.dump(2) + "\n");
    LOG_INFO("embeddings: " << opts.output_dir << "/embeddings.npy, ids: " << opts.output_dir << "/ids.jsonl"
                            << (o.vectors_jsonl ? ", vectors: " + opts.output_dir + "/vectors.jsonl" : "")
                            << (bad_rows > 0 ? "; " + std::to_string(bad_rows) + " row(s) are errors (zero vectors)" : ""));
  }
  return status != 0 || bad_rows > 0 ? 1 : 0;
}

}  // namespace flurry::bert

#include "models/bert/retrieval.h"

namespace flurry::bert {

EmbeddedSet load_embedded(const std::string& dir) {
  EmbeddedSet s;
  const NpyMatrix m = read_npy(dir + "/embeddings.npy");
  s.rows = m.rows;
  s.dim = m.cols;
  s.vectors = m.data;
  std::ifstream in(dir + "/ids.jsonl");
  FLURRY_CHECK(in.good(), dir << "/ids.jsonl: cannot read (run flurry-embed on the corpus first)");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    FLURRY_CHECK(!j.is_discarded() && j.contains("id") && j.contains("status"), dir << "/ids.jsonl: malformed line");
    s.ids.push_back(j["id"].get<std::string>());
    s.ok.push_back(j["status"] == "ok");
  }
  FLURRY_CHECK(static_cast<int64_t>(s.ids.size()) == s.rows,
               dir << ": embeddings.npy has " << s.rows << " rows, ids.jsonl " << s.ids.size());
  return s;
}

}  // namespace flurry::bert
