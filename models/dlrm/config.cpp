#include "models/dlrm/config.h"

#include <filesystem>
#include <set>

#include "runtime/check.h"

namespace fs = std::filesystem;

namespace flurry::dlrm {

namespace {

int64_t positive(const Json& j, const char* key, const std::string& where) {
  FLURRY_CHECK(j.contains(key) && j[key].is_number_integer(), where << ": needs integer '" << key << "'");
  const int64_t v = j[key].get<int64_t>();
  FLURRY_CHECK(v > 0, where << ": '" << key << "' must be positive, got " << v);
  return v;
}

std::vector<int64_t> widths(const Json& j, const char* key, const std::string& where) {
  std::vector<int64_t> out;
  if (!j.contains(key)) return out;
  FLURRY_CHECK(j[key].is_array(), where << ": '" << key << "' must be a list of layer widths");
  for (const Json& w : j[key]) {
    FLURRY_CHECK(w.is_number_integer() && w.get<int64_t>() > 0, where << ": '" << key << "' holds a width that is not a positive integer");
    out.push_back(w.get<int64_t>());
  }
  return out;
}

std::vector<std::string> names(const Json& j, const char* key, const std::string& where) {
  std::vector<std::string> out;
  if (!j.contains(key)) return out;
  FLURRY_CHECK(j[key].is_array(), where << ": '" << key << "' must be a list of names");
  for (const Json& s : j[key]) {
    FLURRY_CHECK(s.is_string() && !s.get<std::string>().empty(), where << ": '" << key << "' holds an entry that is not a name");
    out.push_back(s.get<std::string>());
  }
  return out;
}

Pooling parse_pooling(const std::string& s, const std::string& where) {
  if (s == "sum") return Pooling::kSum;
  if (s == "mean") return Pooling::kMean;
  FLURRY_FAIL(where << ": pooling '" << s << "' is not supported (sum, mean)");
}

Pairs parse_pairs(const std::string& s, const std::string& where) {
  if (s == "strict_lower") return Pairs::kStrictLower;
  if (s == "lower_with_diag") return Pairs::kLowerWithDiag;
  if (s == "strict_upper") return Pairs::kStrictUpper;
  if (s == "upper_with_diag") return Pairs::kUpperWithDiag;
  FLURRY_FAIL(where << ": pairs '" << s << "' is not one of strict_lower, lower_with_diag, strict_upper, upper_with_diag");
}

InteractionType parse_interaction(const std::string& s, const std::string& where) {
  if (s == "dot") return InteractionType::kDot;
  if (s == "outer") return InteractionType::kOuter;
  if (s == "cat") return InteractionType::kCat;
  if (s == "dcnv2") return InteractionType::kDcnV2;
  FLURRY_FAIL(where << ": interaction type '" << s << "' is not supported (dot, outer, cat, dcnv2)");
}

}  // namespace

const char* pooling_name(Pooling p) { return p == Pooling::kSum ? "sum" : "mean"; }

const char* interaction_name(InteractionType t) {
  switch (t) {
    case InteractionType::kDot: return "dot";
    case InteractionType::kOuter: return "outer";
    case InteractionType::kCat: return "cat";
    case InteractionType::kDcnV2: return "dcnv2";
  }
  return "?";
}

const char* pairs_name(Pairs p) {
  switch (p) {
    case Pairs::kStrictLower: return "strict_lower";
    case Pairs::kLowerWithDiag: return "lower_with_diag";
    case Pairs::kStrictUpper: return "strict_upper";
    case Pairs::kUpperWithDiag: return "upper_with_diag";
  }
  return "?";
}

int64_t DlrmConfig::embedding_dim() const { return tables.empty() ? 0 : tables[static_cast<size_t>(bags.empty() ? 0 : bags[0].table)].dim; }

int64_t DlrmConfig::pair_count(Pairs p, int64_t n) {
  return (p == Pairs::kStrictLower || p == Pairs::kStrictUpper) ? n * (n - 1) / 2 : n * (n + 1) / 2;
}

int64_t DlrmConfig::concat_width() const {
  int64_t w = bottom_out();
  for (const BagConfig& b : bags) w += tables[static_cast<size_t>(b.table)].dim;
  return w;
}

int64_t DlrmConfig::interaction_out() const {
  switch (interaction.type) {
    case InteractionType::kDot:
      return (interaction.include_dense ? bottom_out() : 0) + pair_count(interaction.pairs, 1 + num_bags());
    case InteractionType::kOuter:
      return bottom_out() + pair_count(interaction.pairs, concat_width());
    case InteractionType::kCat:
    case InteractionType::kDcnV2:
      return concat_width();
  }
  return 0;
}

std::vector<std::pair<int32_t, int32_t>> interaction_pairs(Pairs p, int64_t n) {
  std::vector<std::pair<int32_t, int32_t>> out;
  out.reserve(static_cast<size_t>(DlrmConfig::pair_count(p, n)));
  for (int32_t i = 0; i < n; ++i) {
    for (int32_t j = 0; j < n; ++j) {
      const bool take = (p == Pairs::kStrictLower && j < i) || (p == Pairs::kLowerWithDiag && j <= i) ||
                        (p == Pairs::kStrictUpper && j > i) || (p == Pairs::kUpperWithDiag && j >= i);
      if (take) out.emplace_back(i, j);
    }
  }
  return out;
}

DlrmConfig dlrm_config_from_json(const Json& j, const std::string& where) {
  FLURRY_CHECK(j.is_object(), where << ": config.json is not a JSON object");
  const std::string type = j.value("model_type", std::string());
  FLURRY_CHECK(type == "dlrm", where << ": model_type '" << type << "' is not a DLRM (expected \"dlrm\")");
  DlrmConfig c;
  c.dense_features = names(j, "dense_features", where);
  FLURRY_CHECK(j.contains("embedding_tables") && j["embedding_tables"].is_array() && !j["embedding_tables"].empty(),
               where << ": needs a non-empty 'embedding_tables' list");
  std::set<std::string> seen;
  for (const Json& t : j["embedding_tables"]) {
    TableConfig tc;
    tc.name = json_get<std::string>(t, "name", where + ": embedding_tables");
    FLURRY_CHECK(seen.insert(tc.name).second, where << ": embedding table '" << tc.name << "' is listed twice");
    tc.rows = positive(t, "num_embeddings", where + ": table '" + tc.name + "'");
    tc.dim = positive(t, "embedding_dim", where + ": table '" + tc.name + "'");
    c.tables.push_back(tc);
  }
  FLURRY_CHECK(j.contains("embedding_bags") && j["embedding_bags"].is_array() && !j["embedding_bags"].empty(),
               where << ": needs a non-empty 'embedding_bags' list");
  std::set<std::string> features;
  for (const Json& b : j["embedding_bags"]) {
    BagConfig bc;
    bc.name = json_get<std::string>(b, "name", where + ": embedding_bags");
    const std::string bw = where + ": bag '" + bc.name + "'";
    const std::string table = json_get<std::string>(b, "table", bw);
    bc.table = -1;
    for (size_t t = 0; t < c.tables.size(); ++t) {
      if (c.tables[t].name == table) bc.table = static_cast<int>(t);
    }
    FLURRY_CHECK(bc.table >= 0, bw << ": no embedding table named '" << table << "'");
    bc.pooling = parse_pooling(b.value("pooling", std::string("sum")), bw);
    bc.features = names(b, "features", bw);
    FLURRY_CHECK(!bc.features.empty(), bw << ": 'features' must name at least one categorical feature");
    for (const std::string& f : bc.features) {
      FLURRY_CHECK(features.insert(f).second, bw << ": feature '" << f << "' feeds two bags");
    }
    c.bags.push_back(bc);
  }
  c.bottom_mlp = widths(j, "bottom_mlp", where);
  c.bottom_final_relu = j.value("bottom_final_relu", true);
  FLURRY_CHECK(c.num_dense() > 0 || c.bottom_mlp.empty(), where << ": a bottom MLP needs 'dense_features'");
  c.top_mlp = widths(j, "top_mlp", where);
  FLURRY_CHECK(!c.top_mlp.empty() && c.top_mlp.back() == 1,
               where << ": 'top_mlp' must end in a width of 1 (the logit)");
  FLURRY_CHECK(j.contains("interaction") && j["interaction"].is_object(), where << ": needs an 'interaction' object");
  const Json& in = j["interaction"];
  const std::string iw = where + ": interaction";
  c.interaction.type = parse_interaction(json_get<std::string>(in, "type", iw), iw);
  switch (c.interaction.type) {
    case InteractionType::kDot:
      c.interaction.pairs = parse_pairs(in.value("pairs", std::string("strict_lower")), iw);
      c.interaction.include_dense = in.value("include_dense", true);
      break;
    case InteractionType::kOuter:
      c.interaction.pairs = parse_pairs(in.value("pairs", std::string("upper_with_diag")), iw);
      break;
    case InteractionType::kCat:
      break;
    case InteractionType::kDcnV2:
      c.interaction.layers = positive(in, "layers", iw);
      c.interaction.rank = positive(in, "rank", iw);
      break;
  }
  if (c.interaction.type == InteractionType::kDot) {
    // The vectors of a dot interaction share one width.
    for (const BagConfig& b : c.bags) {
      FLURRY_CHECK(c.tables[static_cast<size_t>(b.table)].dim == c.bottom_out(),
                   where << ": a dot interaction needs every bag's dim (" << c.tables[static_cast<size_t>(b.table)].dim
                         << " for '" << b.name << "') equal to the bottom MLP's output (" << c.bottom_out() << ")");
    }
  }
  FLURRY_CHECK(c.bottom_out() > 0 || c.interaction.type == InteractionType::kCat,
               where << ": the interaction needs a bottom output (dense features)");
  return c;
}

DlrmConfig load_dlrm_config(const std::string& path) {
  const std::string file = fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  return dlrm_config_from_json(read_json_file(file), file);
}

Json dlrm_config_to_json(const DlrmConfig& c) {
  Json j;
  j["model_type"] = "dlrm";
  j["dense_features"] = c.dense_features;
  j["embedding_tables"] = Json::array();
  for (const TableConfig& t : c.tables) {
    j["embedding_tables"].push_back({{"name", t.name}, {"num_embeddings", t.rows}, {"embedding_dim", t.dim}});
  }
  j["embedding_bags"] = Json::array();
  for (const BagConfig& b : c.bags) {
    j["embedding_bags"].push_back({{"name", b.name},
                                   {"table", c.tables[static_cast<size_t>(b.table)].name},
                                   {"pooling", pooling_name(b.pooling)},
                                   {"features", b.features}});
  }
  j["bottom_mlp"] = c.bottom_mlp;
  j["bottom_final_relu"] = c.bottom_final_relu;
  Json in = {{"type", interaction_name(c.interaction.type)}};
  if (c.interaction.type == InteractionType::kDot || c.interaction.type == InteractionType::kOuter) {
    in["pairs"] = pairs_name(c.interaction.pairs);
  }
  if (c.interaction.type == InteractionType::kDot) in["include_dense"] = c.interaction.include_dense;
  if (c.interaction.type == InteractionType::kDcnV2) {
    in["layers"] = c.interaction.layers;
    in["rank"] = c.interaction.rank;
  }
  j["interaction"] = in;
  j["top_mlp"] = c.top_mlp;
  return j;
}

}  // namespace flurry::dlrm
