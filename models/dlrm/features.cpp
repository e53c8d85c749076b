#include "models/dlrm/features.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "runtime/check.h"

namespace fs = std::filesystem;

namespace flurry::dlrm {

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

DenseTransform parse_transform(const std::string& s, const std::string& where) {
  if (s == "minmax") return DenseTransform::kMinMax;
  if (s == "log1p") return DenseTransform::kLog1p;
  if (s == "none") return DenseTransform::kNone;
  FLURRY_FAIL(where << ": transform '" << s << "' is not one of minmax, log1p, none");
}

CatEncoding parse_encoding(const std::string& s, const std::string& where) {
  if (s == "vocab") return CatEncoding::kVocab;
  if (s == "hash") return CatEncoding::kHash;
  if (s == "integer") return CatEncoding::kInteger;
  FLURRY_FAIL(where << ": encoding '" << s << "' is not one of vocab, hash, integer");
}

// Criteo's categorical fields: hexadecimal, at most 16 digits.
bool parse_hex(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 16) return false;
  uint64_t v = 0;
  for (char ch : s) {
    int d;
    if (ch >= '0' && ch <= '9') d = ch - '0';
    else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
    else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
    else return false;
    v = v * 16 + static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

bool parse_id(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + static_cast<uint64_t>(ch - '0');
  }
  *out = v;
  return true;
}

}  // namespace

bool parse_number(const std::string& s, double* out) {
  const std::string t = trim(s);
  if (t.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || errno == ERANGE || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

const DenseSpec* FeatureSpec::find_dense(const std::string& name) const {
  for (const DenseSpec& d : dense) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

const CatSpec* FeatureSpec::find_categorical(const std::string& name) const {
  for (const CatSpec& c : categorical) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

FeatureSpec feature_spec_from_json(const Json& j, const std::string& where) {
  FLURRY_CHECK(j.is_object(), where << ": a feature spec is a JSON object");
  FeatureSpec s;
  if (j.contains("dense")) {
    FLURRY_CHECK(j["dense"].is_array(), where << ": 'dense' must be a list");
    for (const Json& d : j["dense"]) {
      DenseSpec ds;
      ds.name = json_get<std::string>(d, "name", where + ": dense");
      const std::string w = where + ": dense feature '" + ds.name + "'";
      ds.column = d.value("column", ds.name);
      ds.transform = parse_transform(d.value("transform", std::string("none")), w);
      if (ds.transform == DenseTransform::kMinMax) {
        FLURRY_CHECK(d.contains("min") && d["min"].is_number() && d.contains("max") && d["max"].is_number(),
                     w << ": minmax needs numeric 'min' and 'max' (the training data's)");
        ds.min = d["min"].get<double>();
        ds.max = d["max"].get<double>();
        FLURRY_CHECK(ds.max >= ds.min, w << ": max " << ds.max << " is below min " << ds.min);
      }
      if (d.contains("missing") && !d["missing"].is_null()) {
        FLURRY_CHECK(d["missing"].is_number(), w << ": 'missing' must be a number");
        ds.has_missing = true;
        ds.missing = d["missing"].get<double>();
      }
      FLURRY_CHECK(!s.find_dense(ds.name), w << ": listed twice");
      s.dense.push_back(ds);
    }
  }
  if (j.contains("categorical")) {
    FLURRY_CHECK(j["categorical"].is_array(), where << ": 'categorical' must be a list");
    for (const Json& c : j["categorical"]) {
      CatSpec cs;
      cs.name = json_get<std::string>(c, "name", where + ": categorical");
      const std::string w = where + ": categorical feature '" + cs.name + "'";
      cs.column = c.value("column", cs.name);
      cs.encoding = parse_encoding(c.value("encoding", std::string("vocab")), w);
      if (cs.encoding == CatEncoding::kVocab) {
        FLURRY_CHECK(c.contains("vocab") && c["vocab"].is_array() && !c["vocab"].empty(),
                     w << ": a vocab encoding needs its non-empty 'vocab' list (the training label encoding)");
        for (const Json& v : c["vocab"]) {
          std::string key;
          if (v.is_string()) key = v.get<std::string>();
          else if (v.is_number_integer()) key = std::to_string(v.get<int64_t>());
          else FLURRY_FAIL(w << ": vocab entries must be strings or integers");
          FLURRY_CHECK(cs.index.emplace(key, static_cast<int32_t>(cs.vocab.size())).second,
                       w << ": vocab entry '" << key << "' appears twice");
          cs.vocab.push_back(key);
        }
      }
      cs.separator = c.value("separator", std::string());
      FLURRY_CHECK(!s.find_categorical(cs.name), w << ": listed twice");
      s.categorical.push_back(cs);
    }
  }
  s.label = j.value("label", std::string());
  const std::string unknown = j.value("unknown", std::string("skip"));
  FLURRY_CHECK(unknown == "skip" || unknown == "error", where << ": 'unknown' must be skip or error, got '" << unknown << "'");
  s.unknown_is_error = unknown == "error";
  return s;
}

FeatureSpec load_feature_spec(const std::string& path) {
  const std::string file = fs::is_directory(path) ? (fs::path(path) / "features.json").string() : path;
  return feature_spec_from_json(read_json_file(file), file);
}

void EncodeStats::merge(const EncodeStats& o) {
  for (const auto& [k, v] : o.unknown) unknown[k] += v;
  for (const auto& [k, v] : o.clamped) clamped[k] += v;
  for (const auto& [k, v] : o.missing) missing[k] += v;
}

Json EncodeStats::to_json() const {
  return Json{{"unknown", Json(unknown)}, {"clamped", Json(clamped)}, {"missing", Json(missing)}};
}

FeatureEncoder::FeatureEncoder(const DlrmConfig& cfg, const FeatureSpec& spec) : cfg_(cfg) {
  auto column_of = [&](const std::string& c) {
    const auto it = std::find(columns_.begin(), columns_.end(), c);
    if (it != columns_.end()) return static_cast<int>(it - columns_.begin());
    columns_.push_back(c);
    return static_cast<int>(columns_.size() - 1);
  };
  for (const std::string& name : cfg.dense_features) {
    const DenseSpec* d = spec.find_dense(name);
    FLURRY_CHECK(d, "the feature spec has no dense feature '" << name << "' (the model's dense input "
                                                                << dense_.size() << ")");
    dense_.push_back(DenseSlot{d, column_of(d->column)});
  }
  for (size_t b = 0; b < cfg.bags.size(); ++b) {
    const BagConfig& bag = cfg.bags[b];
    const int64_t rows = cfg.tables[static_cast<size_t>(bag.table)].rows;
    for (const std::string& name : bag.features) {
      const CatSpec* c = spec.find_categorical(name);
      FLURRY_CHECK(c, "the feature spec has no categorical feature '" << name << "' (bag '" << bag.name << "')");
      FLURRY_CHECK(c->encoding != CatEncoding::kVocab || static_cast<int64_t>(c->vocab.size()) <= rows,
                   "categorical feature '" << name << "' has " << c->vocab.size() << " categories but its table '"
                                            << cfg.tables[static_cast<size_t>(bag.table)].name << "' has only " << rows
                                            << " rows: the spec and the model do not belong together");
      cats_.push_back(CatSlot{c, column_of(c->column), static_cast<int>(b), rows});
    }
  }
  unknown_is_error_ = spec.unknown_is_error;
}

std::string FeatureEncoder::categorical_indices(int slot, const std::string& raw, std::vector<int32_t>* out,
                                                EncodeStats* stats) const {
  const CatSlot& s = cats_[static_cast<size_t>(slot)];
  const CatSpec& c = *s.spec;
  switch (c.encoding) {
    case CatEncoding::kVocab: {
      const auto it = c.index.find(raw);
      if (it == c.index.end()) {
        if (unknown_is_error_) return "unknown category '" + raw + "' of '" + c.name + "'";
        if (stats) ++stats->unknown[c.name];
        return "";
      }
      out->push_back(it->second);
      return "";
    }
    case CatEncoding::kHash: {
      const std::string t = trim(raw);
      if (t.empty()) {
        if (stats) ++stats->missing[c.name];
        return "";
      }
      uint64_t v = 0;
      if (!parse_hex(t, &v)) return "'" + c.name + "' is not a hexadecimal value: '" + raw + "'";
      out->push_back(static_cast<int32_t>(v % static_cast<uint64_t>(s.rows)));
      return "";
    }
    case CatEncoding::kInteger: {
      const std::string t = trim(raw);
      if (t.empty()) {
        if (stats) ++stats->missing[c.name];
        return "";
      }
      size_t start = 0;
      for (;;) {
        const size_t sep = c.separator.empty() ? std::string::npos : t.find(c.separator, start);
        const std::string part = trim(t.substr(start, sep == std::string::npos ? std::string::npos : sep - start));
        uint64_t v = 0;
        if (!parse_id(part, &v)) return "'" + c.name + "' holds '" + part + "', not a non-negative integer id";
        if (v >= static_cast<uint64_t>(s.rows)) {
          return "'" + c.name + "' id " + part + " is not below its table's " + std::to_string(s.rows) + " rows";
        }
        out->push_back(static_cast<int32_t>(v));
        if (sep == std::string::npos) break;
        start = sep + c.separator.size();
      }
      return "";
    }
  }
  return "";
}

void FeatureEncoder::encode(int64_t n, const FieldFn& field, DlrmBatch* batch, std::vector<std::string>* errors,
                            EncodeStats* stats) const {
  const int64_t nd = cfg_.num_dense();
  const int64_t nb = cfg_.num_bags();
  batch->n = n;
  batch->dense.assign(static_cast<size_t>(n * nd), 0.0f);
  errors->assign(static_cast<size_t>(n), std::string());
  // Each bag's indices in row order (a row's are kept only when the whole row encodes), then
  // flattened bag-major; the per-row scratch is reused, so a batch allocates per bag, not per bag
  // and row.
  std::vector<std::vector<int32_t>> bag_indices(static_cast<size_t>(nb)), row_indices(static_cast<size_t>(nb));
  std::vector<int32_t> counts(static_cast<size_t>(nb * n), 0);
  EncodeStats row_stats;
  for (int64_t i = 0; i < n; ++i) {
    std::string& err = (*errors)[static_cast<size_t>(i)];
    row_stats = EncodeStats();
    float* dense = batch->dense.data() + i * nd;
    for (auto& r : row_indices) r.clear();
    for (size_t k = 0; k < dense_.size() && err.empty(); ++k) {
      const DenseSpec& d = *dense_[k].spec;
      const std::string* f = field(i, dense_[k].column);
      double x = 0;
      if (!f || trim(*f).empty()) {
        if (!d.has_missing) {
          err = f ? "dense feature '" + d.name + "' is empty" : "no column '" + d.column + "' for dense feature '" + d.name + "'";
          break;
        }
        ++row_stats.missing[d.name];
        x = d.missing;
      } else if (!parse_number(*f, &x)) {
        err = "dense feature '" + d.name + "' is not a number: '" + *f + "'";
        break;
      }
      switch (d.transform) {
        case DenseTransform::kMinMax: {
          const double span = d.max - d.min;
          double y = span > 0 ? (x - d.min) / span : 0.0;
          if (y < 0 || y > 1) {
            ++row_stats.clamped[d.name];
            y = std::min(1.0, std::max(0.0, y));
          }
          dense[k] = static_cast<float>(y);
          break;
        }
        case DenseTransform::kLog1p:
          dense[k] = static_cast<float>(std::log1p(std::max(x, 0.0)));
          break;
        case DenseTransform::kNone:
          dense[k] = static_cast<float>(x);
          break;
      }
    }
    for (size_t k = 0; k < cats_.size() && err.empty(); ++k) {
      const std::string* f = field(i, cats_[k].column);
      if (!f) {
        err = "no column '" + cats_[k].spec->column + "' for categorical feature '" + cats_[k].spec->name + "'";
        break;
      }
      err = categorical_indices(static_cast<int>(k), *f, &row_indices[static_cast<size_t>(cats_[k].bag)], &row_stats);
    }
    if (!err.empty()) {
      std::fill(dense, dense + nd, 0.0f);
      continue;
    }
    for (int64_t b = 0; b < nb; ++b) {
      const auto& r = row_indices[static_cast<size_t>(b)];
      bag_indices[static_cast<size_t>(b)].insert(bag_indices[static_cast<size_t>(b)].end(), r.begin(), r.end());
      counts[static_cast<size_t>(b * n + i)] = static_cast<int32_t>(r.size());
    }
    if (stats) stats->merge(row_stats);
  }
  batch->offsets.assign(static_cast<size_t>(nb * n + 1), 0);
  size_t total = 0;
  for (const auto& l : bag_indices) total += l.size();
  FLURRY_CHECK(total < static_cast<size_t>(INT32_MAX), "a batch of " << total << " indices is too large for int32 offsets");
  batch->indices.clear();
  batch->indices.reserve(total);
  for (const auto& l : bag_indices) batch->indices.insert(batch->indices.end(), l.begin(), l.end());
  for (size_t k = 0; k < counts.size(); ++k) batch->offsets[k + 1] = batch->offsets[k] + counts[k];
}

}  // namespace flurry::dlrm
