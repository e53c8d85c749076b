#include "models/dlrm/app/dlrm_job.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "models/dlrm/app/sqlite_table.h"
#include "models/dlrm/metrics.h"
#include "runtime/check.h"
#include "runtime/dist/records.h"
#include "runtime/log.h"

namespace fs = std::filesystem;

namespace flurry::dlrm {

DlrmAssets load_dlrm_assets(const std::string& dir, const std::string& spec_path) {
  DlrmAssets a;
  a.dir = dir;
  FLURRY_CHECK(fs::is_directory(dir), dir << ": not a model folder (config.json, model.safetensors, features.json)");
  a.cfg = load_dlrm_config(dir);
  const std::string spec = spec_path.empty() ? (fs::path(dir) / "features.json").string() : spec_path;
  FLURRY_CHECK(fs::exists(spec), spec << ": no feature spec (the training-time encoders; pass --spec FILE)");
  a.spec = load_feature_spec(spec);
  { FeatureEncoder check(a.cfg, a.spec); }  // a spec that does not fit the model stops here
  a.ck = std::make_unique<Checkpoint>(Checkpoint::open(dir));
  models::validate_checkpoint(dlrm_weight_table(a.cfg), *a.ck);
  return a;
}

CpuScorer::CpuScorer(const DlrmAssets& a) : model_(load_dlrm_cpu(a.cfg, *a.ck)) {}

void CpuScorer::score(const DlrmBatch& batch, float* logits) { dlrm_forward(model_, batch, scratch_, logits); }

void Scorer::topk(const DlrmBatch& batch, int64_t customers, int64_t candidates, const uint8_t* valid, int k,
                  float* top_logits, int32_t* top_index) {
  FLURRY_CHECK(batch.n == customers * candidates, "top-k over " << customers << " x " << candidates << " pairs, batch of " << batch.n);
  logits_.resize(static_cast<size_t>(batch.n));
  score(batch, logits_.data());
  std::vector<int32_t> order;
  for (int64_t c = 0; c < customers; ++c) {
    const float* l = logits_.data() + c * candidates;
    order.clear();
    for (int64_t j = 0; j < candidates; ++j) {
      if (!valid || valid[c * candidates + j]) order.push_back(static_cast<int32_t>(j));
    }
    const size_t kk = std::min(order.size(), static_cast<size_t>(k));
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kk), order.end(), [l](int32_t x, int32_t y) {
      return l[x] != l[y] ? l[x] > l[y] : x < y;
    });
    for (int j = 0; j < k; ++j) {
      const bool have = static_cast<size_t>(j) < kk;
      top_logits[c * k + j] = have ? l[order[static_cast<size_t>(j)]] : -INFINITY;
      top_index[c * k + j] = have ? order[static_cast<size_t>(j)] : -1;
    }
  }
}

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// The work items of a table input: chunks of rows (any rank reads only its own byte ranges).
std::vector<dist::WorkItem> table_items(app::AppContext& app, const std::vector<std::string>& paths, TextFormat format,
                                        int64_t rows_per_chunk, StageTimers* timers) {
  return dist::share_items(&app.dist, [&] {
    ScopedStage st(timers, "index");
    TextSpec spec;
    spec.format = format;
    spec.text_field.clear();
    std::vector<dist::WorkItem> out;
    for (const TextChunk& c : index_text_inputs(paths, spec, rows_per_chunk)) {
      dist::WorkItem w;
      w.index = static_cast<int64_t>(out.size());
      w.id = text_chunk_id(c);
      w.cost = static_cast<double>(c.rows);
      w.row_begin = c.row_begin;
      w.row_end = c.row_begin + c.rows;
      out.push_back(std::move(w));
    }
    dist::assign_output_keys(out);
    return out;
  });
}

// Reads a chunk; a file that changed since it was indexed makes every row of the chunk an error.
std::vector<FieldRow> read_rows(const TextChunk& c, const std::vector<std::string>& columns) {
  try {
    return read_field_chunk(c, columns);
  } catch (const InputError& e) {
    std::vector<FieldRow> rows(static_cast<size_t>(c.rows));
    for (int64_t r = 0; r < c.rows; ++r) {
      rows[static_cast<size_t>(r)].row = c.row_begin + r;
      rows[static_cast<size_t>(r)].values.assign(columns.size(), "");
      rows[static_cast<size_t>(r)].present.assign(columns.size(), 0);
      rows[static_cast<size_t>(r)].error = e.what();
    }
    return rows;
  }
}

// The scorer's manifest fields and its end-of-work hook (a sharded scorer's drain).
void attach_scorer(dist::RunnerOptions& opts, Scorer& scorer) {
  const Json m = scorer.manifest();
  if (!m.is_null()) opts.extra["sharding"] = m;
  opts.after_last_item = [&scorer] { scorer.finish(); };
}

// Sums the per-chunk encoder counts of the merged records into the manifest.
void add_to_manifest(const std::string& out_dir, const std::function<void(Json&)>& edit) {
  Json m = read_json_file(out_dir + "/manifest.json");
  edit(m);
  dist::write_file_atomic(out_dir + "/manifest.json", m.dump(2) + "\n");
}

EncodeStats stats_from_json(const Json& j) {
  EncodeStats s;
  if (!j.is_object()) return s;
  auto read = [&j](const char* key, std::map<std::string, int64_t>& m) {
    const auto f = j.find(key);
    if (f == j.end() || !f->is_object()) return;
    for (auto it = f->begin(); it != f->end(); ++it) m[it.key()] = it.value().get<int64_t>();
  };
  read("unknown", s.unknown);
  read("clamped", s.clamped);
  read("missing", s.missing);
  return s;
}

// Encoder counts and row totals summed over results.jsonl.
void summarise(const std::string& out_dir, int64_t* rows, int64_t* bad, EncodeStats* stats) {
  std::ifstream in(out_dir + "/results.jsonl");
  FLURRY_CHECK(in.good(), out_dir << "/results.jsonl: cannot read the merged results");
  for (std::string line; std::getline(in, line);) {
    const Json rec = Json::parse(line);
    if (rec.value("status", std::string()) != "ok") continue;
    *rows += rec.value("rows", int64_t{0});
    *bad += rec.value("row_errors_count", int64_t{0});
    stats->merge(stats_from_json(rec.value("encode", Json::object())));
  }
}

}  // namespace

int run_score(app::AppContext& app, const DlrmAssets& a, const ScoreOptions& o, Scorer& scorer,
              const std::vector<std::string>& paths, StageTimers* timers) {
  FLURRY_CHECK(!paths.empty(), "no inputs: give CSV/TSV/JSONL files of rows (or Criteo TSV with --input-format criteo)");
  FeatureEncoder enc(a.cfg, a.spec);
  std::vector<std::string> columns = enc.columns();
  const int id_col = o.id_field.empty() ? -1 : static_cast<int>(columns.size());
  if (!o.id_field.empty()) columns.push_back(o.id_field);
  const std::string label = o.label_field.empty() ? a.spec.label : o.label_field;
  int label_col = -1;
  if (o.eval) {
    FLURRY_CHECK(!label.empty(), "eval needs labels: the feature spec names no \"label\" column; pass --label-field");
    label_col = static_cast<int>(columns.size());
    columns.push_back(label);
  }
  dist::RunnerOptions& opts = app.runner;
  opts.unit = "rows";
  opts.work_key = "rows";
  opts.model = a.dir;
  opts.timers = timers;
  opts.data_output = "scores.csv";
  opts.data_header = [eval = o.eval](uint64_t) {
    return std::string(eval ? "row,id,logit,probability,label,error\n" : "row,id,logit,probability,error\n");
  };
  opts.extra["dlrm"] = {{"interaction", interaction_name(a.cfg.interaction.type)},
                        {"device", scorer.device()},
                        {"batch", o.batch}};
  attach_scorer(opts, scorer);
  const std::vector<dist::WorkItem> items = table_items(app, paths, o.format, o.rows_per_chunk, timers);
  DlrmBatch batch;
  std::vector<std::string> errors;
  std::vector<float> logits;
  const int status = dist::run_job(app.dist, opts, items, [&](const dist::WorkItem& it, std::vector<char>* data) {
    const TextChunk c = parse_text_chunk_id(it.id);
    std::vector<FieldRow> rows;
    {
      ScopedStage st(timers, "read");
      rows = read_rows(c, columns);
    }
    const int64_t n = static_cast<int64_t>(rows.size());
    EncodeStats stats;
    std::vector<std::string> row_error(static_cast<size_t>(n));
    std::vector<int> labels(static_cast<size_t>(n), -1);
    for (int64_t i = 0; i < n; ++i) {
      const FieldRow& r = rows[static_cast<size_t>(i)];
      row_error[static_cast<size_t>(i)] = r.error;
      if (r.error.empty() && label_col >= 0) {
        double y = -1;
        const std::string& f = r.values[static_cast<size_t>(label_col)];
        if (!r.present[static_cast<size_t>(label_col)] || !parse_number(f, &y) || (y != 0 && y != 1)) {
          row_error[static_cast<size_t>(i)] = "label '" + label + "' is not 0 or 1: '" + f + "'";
        } else {
          labels[static_cast<size_t>(i)] = static_cast<int>(y);
        }
      }
    }
    logits.assign(static_cast<size_t>(n), NAN);
    for (int64_t b = 0; b < n; b += o.batch) {
      const int64_t m = std::min(o.batch, n - b);
      {
        ScopedStage st(timers, "encode");
        enc.encode(m, [&](int64_t i, int col) -> const std::string* {
          const FieldRow& r = rows[static_cast<size_t>(b + i)];
          if (!row_error[static_cast<size_t>(b + i)].empty() || !r.present[static_cast<size_t>(col)]) return nullptr;
          return &r.values[static_cast<size_t>(col)];
        }, &batch, &errors, &stats);
      }
      for (int64_t i = 0; i < m; ++i) {
        std::string& e = row_error[static_cast<size_t>(b + i)];
        if (e.empty()) e = errors[static_cast<size_t>(i)];
      }
      // Queued: the GPU scorer stages the batch and returns, so the next sub-batch is encoded
      // while this one is copied and scored.
      ScopedStage st(timers, "score");
      scorer.score_async(batch, logits.data() + b);
    }
    {
      ScopedStage st(timers, "score");
      scorer.wait();
    }
    std::string text;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      const FieldRow& r = rows[static_cast<size_t>(i)];
      const std::string& e = row_error[static_cast<size_t>(i)];
      std::string id = c.path + ":" + std::to_string(c.file_row_begin + i);
      if (id_col >= 0 && r.present[static_cast<size_t>(id_col)]) id = r.values[static_cast<size_t>(id_col)];
      text += std::to_string(r.row) + "," + csv_field(id) + ",";
      if (e.empty()) {
        const float l = logits[static_cast<size_t>(i)];
        text += fmt(l) + "," + fmt(sigmoid(l)) + ",";
        if (o.eval) text += std::to_string(labels[static_cast<size_t>(i)]) + ",";
        text += "\n";
      } else {
        ++bad;
        text += o.eval ? ",,," : ",,";
        text += csv_field(e) + "\n";
      }
    }
    data->assign(text.begin(), text.end());
    return Json{{"rows", n}, {"row_errors_count", bad}, {"encode", stats.to_json()}};
  });
  int64_t total = 0, bad = 0;
  if (app.dist.is_root()) {
    EncodeStats stats;
    summarise(opts.output_dir, &total, &bad, &stats);
    Json metrics;
    if (o.eval) {
      // Metrics over every scored row, read back from the merged scores.
      std::vector<float> ls;
      std::vector<int> ys;
      std::ifstream in(opts.output_dir + "/scores.csv");
      std::string line;
      std::getline(in, line);  // header
      while (std::getline(in, line)) {
        // row,id,logit,probability,label,error: the id may be quoted, so take fields from the end.
        std::vector<std::string> f;
        size_t end = line.size();
        for (int k = 0; k < 4 && end != std::string::npos; ++k) {
          const size_t comma = line.rfind(',', end - 1);
          f.push_back(line.substr(comma + 1, end - comma - 1));
          end = comma;
        }
        if (f.size() < 4 || f[0].size() > 0 || f[3].empty()) continue;  // error rows (their error is last)
        ls.push_back(std::stof(f[3]));
        ys.push_back(std::stoi(f[1]));
      }
      const BinaryMetrics bm = binary_metrics(ls, ys, o.threshold);
      metrics = bm.to_json();
      dist::write_file_atomic(opts.output_dir + "/metrics.json", metrics.dump(2) + "\n");
      std::printf("%s\n", metrics.dump(2).c_str());
    }
    add_to_manifest(opts.output_dir, [&](Json& m) {
      m["rows"] = total;
      m["row_errors"] = bad;
      m["encode"] = stats.to_json();
      if (o.eval) m["metrics"] = metrics;
    });
    LOG_INFO("scores: " << opts.output_dir << "/scores.csv (" << total << " rows"
                        << (bad > 0 ? ", " + std::to_string(bad) + " error rows" : "") << ")");
  }
  return status != 0 || bad > 0 ? 1 : 0;
}

namespace {

struct Table {
  std::vector<std::string> columns;
  std::vector<FieldRow> rows;
  int col(const std::string& name) const {
    const auto it = std::find(columns.begin(), columns.end(), name);
    return it == columns.end() ? -1 : static_cast<int>(it - columns.begin());
  }
  const std::string* field(size_t row, int c) const {
    if (c < 0) return nullptr;
    const FieldRow& r = rows[row];
    return r.present[static_cast<size_t>(c)] ? &r.values[static_cast<size_t>(c)] : nullptr;
  }
};

// A whole table; `columns` are read when present (a JSONL row may lack any). For CSV/TSV the
// header decides which columns the table has.
Table load_table(const std::string& path, const std::vector<std::string>& wanted) {
  const TextFormat f = text_format_of(path, TextFormat::kAuto);
  Table t;
  if (f == TextFormat::kCsv || f == TextFormat::kTsv) {
    const std::vector<std::string> header = table_header(path, f);
    for (const std::string& w : wanted) {
      if (std::find(header.begin(), header.end(), w) != header.end()) t.columns.push_back(w);
    }
  } else {
    FLURRY_CHECK(f == TextFormat::kJsonl, path << ": a table is .csv, .tsv or .jsonl");
    t.columns = wanted;
  }
  TextSpec spec;
  spec.format = f;
  spec.text_field.clear();
  for (const TextChunk& c : index_text_inputs({path}, spec, int64_t{1} << 40)) {
    std::vector<FieldRow> rows = read_field_chunk(c, t.columns);
    t.rows.insert(t.rows.end(), std::make_move_iterator(rows.begin()), std::make_move_iterator(rows.end()));
  }
  if (f == TextFormat::kJsonl) {
    // A JSONL table "has" a column when any row holds it.
    std::vector<std::string> kept;
    std::vector<size_t> keep;
    for (size_t k = 0; k < t.columns.size(); ++k) {
      bool any = false;
      for (const FieldRow& r : t.rows) any = any || r.present[k];
      if (any) {
        kept.push_back(t.columns[k]);
        keep.push_back(k);
      }
    }
    for (FieldRow& r : t.rows) {
      FieldRow nr;
      nr.row = r.row;
      nr.error = r.error;
      for (size_t k : keep) {
        nr.values.push_back(r.values[k]);
        nr.present.push_back(r.present[k]);
      }
      r = std::move(nr);
    }
    t.columns = kept;
  }
  return t;
}

std::vector<std::string> with(std::vector<std::string> v, std::initializer_list<std::string> more) {
  for (const std::string& m : more) {
    if (!m.empty() && std::find(v.begin(), v.end(), m) == v.end()) v.push_back(m);
  }
  return v;
}

}  // namespace

int run_recommend(app::AppContext& app, const DlrmAssets& a, const RecommendOptions& o, Scorer& scorer,
                  StageTimers* timers) {
  FLURRY_CHECK(!o.customers.empty() && !o.items.empty(), "recommend needs --customers FILE and --items FILE");
  FLURRY_CHECK(o.top_k > 0, "--top-k must be positive");
  FLURRY_CHECK(!(o.items_not_ordered || o.trucks_not_visited) || !o.orders.empty(),
               "--items-not-ordered and --trucks-not-visited need --orders FILE (the purchase history)");
  FeatureEncoder enc(a.cfg, a.spec);
  const std::vector<std::string>& features = enc.columns();
  // Items: every feature column they have, their id, truck, filter and display columns.
  std::vector<std::string> item_wanted = with(features, {o.item_id, o.truck_id});
  for (const auto& [col, values] : o.where) item_wanted = with(item_wanted, {col});
  for (const auto& [icol, ccol] : o.match) item_wanted = with(item_wanted, {icol});
  for (const std::string& f : o.item_fields) item_wanted = with(item_wanted, {f});
  Table items;
  {
    ScopedStage st(timers, "load");
    items = load_table(o.items, item_wanted);
  }
  const int item_id_col = items.col(o.item_id);
  FLURRY_CHECK(item_id_col >= 0, o.items << ": no column '" << o.item_id << "' (the item id; --item-id)");
  for (const auto& [col, values] : o.where) {
    FLURRY_CHECK(items.col(col) >= 0, o.items << ": no column '" << col << "' to filter on");
  }
  for (const auto& [icol, ccol] : o.match) {
    FLURRY_CHECK(items.col(icol) >= 0, o.items << ": no column '" << icol << "' to match the customer's '" << ccol << "'");
  }
  // Each feature column comes from the item when the items table has it, else from the customer.
  std::vector<int> from_item(features.size(), -1);
  std::vector<std::string> customer_wanted = {o.customer_id, o.customer_city};
  for (size_t k = 0; k < features.size(); ++k) {
    from_item[k] = items.col(features[k]);
    if (from_item[k] < 0) customer_wanted = with(customer_wanted, {features[k]});
  }
  for (const auto& [icol, ccol] : o.match) customer_wanted = with(customer_wanted, {ccol});
  // Items that cannot be used (a bad record, no id) are left out of every candidate set, once, loudly.
  std::vector<size_t> usable;
  std::unordered_map<std::string, size_t> item_by_id;
  int64_t bad_items = 0;
  for (size_t r = 0; r < items.rows.size(); ++r) {
    const std::string* id = items.field(r, item_id_col);
    if (!items.rows[r].error.empty() || !id || id->empty()) {
      ++bad_items;
      LOG_WARN(o.items << " row " << r << ": left out of the candidates: "
                       << (items.rows[r].error.empty() ? "no item id" : items.rows[r].error));
      continue;
    }
    item_by_id.emplace(*id, r);
    usable.push_back(r);
  }
  // Purchase history: customer -> items in the order first bought, and trucks visited.
  std::unordered_map<std::string, std::vector<std::string>> bought;
  std::unordered_map<std::string, std::unordered_set<std::string>> visited;
  if (!o.orders.empty()) {
    ScopedStage st(timers, "load");
    const Table orders = load_table(o.orders, {o.customer_id, o.item_id, o.truck_id});
    const int oc = orders.col(o.customer_id), oi = orders.col(o.item_id), ot = orders.col(o.truck_id);
    FLURRY_CHECK(oc >= 0 && oi >= 0, o.orders << ": needs columns '" << o.customer_id << "' and '" << o.item_id << "'");
    const int item_truck = items.col(o.truck_id);
    for (size_t r = 0; r < orders.rows.size(); ++r) {
      const std::string* c = orders.field(r, oc);
      const std::string* i = orders.field(r, oi);
      if (!orders.rows[r].error.empty() || !c || !i) continue;
      auto& list = bought[*c];
      if (std::find(list.begin(), list.end(), *i) == list.end()) list.push_back(*i);
      if (const std::string* t = orders.field(r, ot)) visited[*c].insert(*t);
      const auto it = item_by_id.find(*i);
      if (it != item_by_id.end() && item_truck >= 0) {
        if (const std::string* t = items.field(it->second, item_truck)) visited[*c].insert(*t);
      }
    }
  }
  // Filters on item columns, applied once.
  std::vector<size_t> filtered;
  for (size_t r : usable) {
    bool keep = true;
    for (const auto& [col, values] : o.where) {
      const std::string* v = items.field(r, items.col(col));
      keep = keep && v && std::find(values.begin(), values.end(), *v) != values.end();
    }
    if (keep) filtered.push_back(r);
  }
  const int item_truck_col = items.col(o.truck_id);
  std::vector<int> shown;
  for (const std::string& f : o.item_fields) shown.push_back(items.col(f));

  dist::RunnerOptions& opts = app.runner;
  opts.unit = "customers";
  opts.work_key = "rows";
  opts.model = a.dir;
  opts.timers = timers;
  opts.data_output = "recommendations.jsonl";
  opts.extra["recommend"] = {{"items", static_cast<int64_t>(items.rows.size())},
                             {"items_left_out", bad_items},
                             {"candidates_after_filters", static_cast<int64_t>(filtered.size())},
                             {"top_k", o.top_k},
                             {"where", o.where},
                             {"match", o.match},
                             {"items_not_ordered", o.items_not_ordered},
                             {"trucks_not_visited", o.trucks_not_visited},
                             {"device", scorer.device()}};
  attach_scorer(opts, scorer);
  const std::vector<dist::WorkItem> work = table_items(app, {o.customers}, TextFormat::kAuto, o.customers_per_chunk, timers);
  DlrmBatch batch;
  std::vector<std::string> errors;
  const int status = dist::run_job(app.dist, opts, work, [&](const dist::WorkItem& it, std::vector<char>* data) {
    const TextChunk c = parse_text_chunk_id(it.id);
    std::vector<FieldRow> customers;
    {
      ScopedStage st(timers, "read");
      customers = read_rows(c, customer_wanted);
    }
    auto cfield = [&](const FieldRow& r, const std::string& col) -> const std::string* {
      const auto at = std::find(customer_wanted.begin(), customer_wanted.end(), col) - customer_wanted.begin();
      return r.present[static_cast<size_t>(at)] ? &r.values[static_cast<size_t>(at)] : nullptr;
    };
    // The chunk's customers x the filtered candidates, customer-major, a few customers per pass;
    // pairs a filter excludes (or that cannot be encoded) are marked invalid for the top-k.
    const int64_t nc = static_cast<int64_t>(filtered.size());
    const int64_t per_pass = nc == 0 ? 1 : std::max<int64_t>(1, o.batch / nc);
    const int k = o.top_k;
    std::vector<std::string> cust_error(customers.size()), pair_err(customers.size());
    std::vector<int64_t> valid_count(customers.size(), 0), left_out(customers.size(), 0);
    std::vector<float> top_logits(customers.size() * static_cast<size_t>(k));
    std::vector<int32_t> top_index(customers.size() * static_cast<size_t>(k), -1);
    std::vector<uint8_t> valid;
    EncodeStats stats;
    int64_t np = 0;
    for (size_t c0 = 0; c0 < customers.size(); c0 += static_cast<size_t>(per_pass)) {
      const size_t g = std::min(customers.size() - c0, static_cast<size_t>(per_pass));
      valid.assign(g * static_cast<size_t>(nc), 1);
      for (size_t gi = 0; gi < g; ++gi) {
        const size_t ci = c0 + gi;
        const FieldRow& cr = customers[ci];
        const std::string* id = cfield(cr, o.customer_id);
        if (!cr.error.empty() || !id || id->empty()) {
          cust_error[ci] = cr.error.empty() ? "no customer id '" + o.customer_id + "'" : cr.error;
          std::fill(valid.begin() + static_cast<std::ptrdiff_t>(gi * nc), valid.begin() + static_cast<std::ptrdiff_t>((gi + 1) * nc), 0);
          continue;
        }
        const auto hist = bought.find(*id);
        const auto vis = visited.find(*id);
        std::vector<std::pair<int, const std::string*>> must;  // item column, the customer's value
        for (const auto& [icol, ccol] : o.match) must.emplace_back(items.col(icol), cfield(cr, ccol));
        for (int64_t j = 0; j < nc; ++j) {
          const size_t r = filtered[static_cast<size_t>(j)];
          bool keep = true;
          for (const auto& [icol, cval] : must) {
            const std::string* v = items.field(r, icol);
            keep = keep && v && cval && *v == *cval;
          }
          if (keep && o.items_not_ordered && hist != bought.end()) {
            const std::string& iid = items.rows[r].values[static_cast<size_t>(item_id_col)];
            keep = std::find(hist->second.begin(), hist->second.end(), iid) == hist->second.end();
          }
          if (keep && o.trucks_not_visited && vis != visited.end() && item_truck_col >= 0) {
            const std::string* t = items.field(r, item_truck_col);
            keep = !(t && vis->second.count(*t));
          }
          valid[gi * static_cast<size_t>(nc) + static_cast<size_t>(j)] = keep;
        }
      }
      const int64_t m = static_cast<int64_t>(g) * nc;
      np += m;
      {
        ScopedStage st(timers, "encode");
        enc.encode(m, [&](int64_t i, int col) -> const std::string* {
          const size_t ci = c0 + static_cast<size_t>(i / nc);
          const size_t r = filtered[static_cast<size_t>(i % nc)];
          if (from_item[static_cast<size_t>(col)] >= 0) return items.field(r, from_item[static_cast<size_t>(col)]);
          return cfield(customers[ci], features[static_cast<size_t>(col)]);
        }, &batch, &errors, &stats);
      }
      for (int64_t i = 0; i < m; ++i) {
        const size_t ci = c0 + static_cast<size_t>(i / nc);
        if (errors[static_cast<size_t>(i)].empty() || !cust_error[ci].empty()) continue;
        // A bad customer field spoils every pair of the customer, a bad item field the item's.
        if (pair_err[ci].empty()) pair_err[ci] = errors[static_cast<size_t>(i)];
        ++left_out[ci];
        valid[static_cast<size_t>(i)] = 0;
      }
      for (size_t gi = 0; gi < g; ++gi) {
        for (int64_t j = 0; j < nc; ++j) valid_count[c0 + gi] += valid[gi * static_cast<size_t>(nc) + static_cast<size_t>(j)];
      }
      if (m == 0) continue;
      ScopedStage st(timers, "score");
      scorer.topk(batch, static_cast<int64_t>(g), nc, valid.data(), k, top_logits.data() + c0 * static_cast<size_t>(k),
                  top_index.data() + c0 * static_cast<size_t>(k));
    }
    ScopedStage st(timers, "write");
    std::string text;
    int64_t bad = 0;
    for (size_t ci = 0; ci < customers.size(); ++ci) {
      const FieldRow& cr = customers[ci];
      nlohmann::ordered_json out;
      const std::string* id = cfield(cr, o.customer_id);
      out["customer_id"] = id ? *id : "";
      const std::string* city = cfield(cr, o.customer_city);
      out["city"] = city ? *city : "";
      const auto hist = id ? bought.find(*id) : bought.end();
      out["purchase_history"] = hist == bought.end() ? Json::array() : Json(hist->second);
      std::string err = cust_error[ci];
      if (err.empty() && valid_count[ci] == 0 && left_out[ci] > 0) err = pair_err[ci];
      if (!err.empty()) {
        ++bad;
        out["status"] = "error";
        out["error"] = err;
        out["recommendations"] = Json::array();
      } else {
        nlohmann::ordered_json recs = nlohmann::ordered_json::array();
        for (int j = 0; j < k; ++j) {
          const int32_t at = top_index[ci * static_cast<size_t>(k) + static_cast<size_t>(j)];
          if (at < 0) break;
          const size_t r = filtered[static_cast<size_t>(at)];
          const float logit = top_logits[ci * static_cast<size_t>(k) + static_cast<size_t>(j)];
          nlohmann::ordered_json e;
          e["rank"] = j + 1;
          e[o.item_id] = items.rows[r].values[static_cast<size_t>(item_id_col)];
          for (size_t s = 0; s < shown.size(); ++s) {
            if (const std::string* v = items.field(r, shown[s])) e[o.item_fields[s]] = *v;
          }
          e["logit"] = logit;
          e["probability"] = sigmoid(logit);
          recs.push_back(e);
        }
        out["status"] = "ok";
        out["candidates"] = valid_count[ci];
        if (left_out[ci] > 0) {
          out["candidates_left_out"] = left_out[ci];
          out["left_out_because"] = pair_err[ci];
        }
        out["recommendations"] = recs;
      }
      text += out.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
    }
    data->assign(text.begin(), text.end());
    return Json{{"rows", static_cast<int64_t>(customers.size())},
                {"row_errors_count", bad},
                {"pairs", np},
                {"encode", stats.to_json()}};
  });
  int64_t total = 0, bad = 0;
  if (app.dist.is_root()) {
    EncodeStats stats;
    summarise(opts.output_dir, &total, &bad, &stats);
    // The CSV and the SQLite table from the merged JSONL, one row per customer.
    SqliteRows rows;
    rows.columns = {"CUSTOMER_ID", "CITY", "PURCHASE_HISTORY", "RECOMMENDED_ITEMS", "RECOMMENDATIONS", "STATUS", "ERROR"};
    std::string csv = "customer_id,city,purchase_history,recommended_items,recommendations,status,error\n";
    std::ifstream in(opts.output_dir + "/recommendations.jsonl");
    for (std::string line; std::getline(in, line);) {
      const Json j = Json::parse(line);
      std::string top;
      for (const Json& r : j["recommendations"]) top += (top.empty() ? "" : " ") + r[o.item_id].get<std::string>();
      std::vector<std::string> v = {j["customer_id"].get<std::string>(), j["city"].get<std::string>(),
                                    j["purchase_history"].dump(), top, j["recommendations"].dump(),
                                    j["status"].get<std::string>(), j.value("error", std::string())};
      std::string l;
      for (size_t k = 0; k < v.size(); ++k) l += (k ? "," : "") + csv_field(v[k]);
      csv += l + "\n";
      rows.values.push_back(std::move(v));
    }
    dist::write_file_atomic(opts.output_dir + "/recommendations.csv", csv);
    const std::string db = o.sqlite.empty() ? opts.output_dir + "/recommendations.sqlite" : o.sqlite;
    {
      ScopedStage st(timers, "sqlite");
      replace_sqlite_table(db, o.table, rows);
    }
    add_to_manifest(opts.output_dir, [&](Json& m) {
      m["rows"] = total;
      m["row_errors"] = bad;
      m["encode"] = stats.to_json();
      m["sqlite"] = {{"path", db}, {"table", o.table}};
    });
    LOG_INFO("recommendations: " << opts.output_dir << "/recommendations.jsonl, .csv and table " << o.table << " in "
                                 << db << " (" << total << " customers" << (bad ? ", " + std::to_string(bad) + " errors" : "")
                                 << ")");
  }
  return status != 0 || bad > 0 ? 1 : 0;
}

}  // namespace flurry::dlrm
