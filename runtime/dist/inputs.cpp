#include "runtime/dist/inputs.h"

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unordered_map>
#include <unordered_set>

#include "runtime/check.h"
#include "runtime/dist/context.h"
#include "runtime/dist/mpi_check.h"
#include "runtime/log.h"

namespace fs = std::filesystem;

namespace flurry::dist {

double byte_size_cost(const std::string& path) {
  std::error_code ec;
  const auto n = fs::file_size(path, ec);
  return ec ? 0.0 : static_cast<double>(n);
}

namespace {

// Files under `dir` whose basename matches `glob`, sorted so that every run sees the same order.
std::vector<std::string> expand_directory(const std::string& dir, const std::string& glob) {
  std::vector<std::string> found;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
  FLURRY_CHECK(!ec, "cannot list directory " << dir << ": " << ec.message());
  for (; it != end; it.increment(ec)) {
    FLURRY_CHECK(!ec, "error while listing " << dir << ": " << ec.message());
    if (!it->is_regular_file(ec)) continue;
    const std::string name = it->path().filename().string();
    if (fnmatch(glob.c_str(), name.c_str(), 0) != 0) continue;
    const std::string rel = fs::relative(it->path(), dir, ec).generic_string();
    std::string base = dir;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    found.push_back(base + "/" + rel);
  }
  std::sort(found.begin(), found.end());
  if (found.empty()) LOG_WARN("no file matching '" << glob << "' under " << dir);
  return found;
}

std::vector<std::string> read_input_list(const std::string& path) {
  std::ifstream in(path);
  FLURRY_CHECK(in.good(), "cannot read input list " << path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    out.push_back(line.substr(start));
  }
  return out;
}

std::vector<WorkItem> collect_local(const InputSpec& spec, const CostFn& cost) {
  FLURRY_CHECK(!spec.paths.empty() || !spec.input_list.empty(),
               "no inputs: give paths, directories or --input-list FILE");
  std::vector<std::string> ids;
  auto add = [&](const std::string& p) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (auto& f : expand_directory(p, spec.glob)) ids.push_back(std::move(f));
    } else {
      ids.push_back(p);
    }
  };
  for (const auto& p : spec.paths) add(p);
  if (!spec.input_list.empty()) {
    for (const auto& p : read_input_list(spec.input_list)) add(p);
  }
  return make_items(ids, cost);
}

#if FLURRY_HAVE_MPI
// Items travel as one buffer: "cost begin end\tid\n" lines (ids: no newline or tab inside).
std::string pack(const std::vector<WorkItem>& items) {
  std::string s;
  for (const auto& it : items) {
    char num[96];
    std::snprintf(num, sizeof(num), "%.17g %lld %lld", it.cost, static_cast<long long>(it.row_begin),
                  static_cast<long long>(it.row_end));
    s += num;
    s += '\t';
    s += it.id;
    s += '\n';
  }
  return s;
}

std::vector<WorkItem> unpack(const std::string& s) {
  std::vector<WorkItem> items;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t tab = s.find('\t', pos);
    const size_t nl = s.find('\n', tab);
    WorkItem w;
    w.index = static_cast<int64_t>(items.size());
    const std::string head = s.substr(pos, tab - pos);
    char* end = nullptr;
    w.cost = std::strtod(head.c_str(), &end);
    w.row_begin = std::strtoll(end, &end, 10);
    w.row_end = std::strtoll(end, &end, 10);
    w.id = s.substr(tab + 1, nl - tab - 1);
    items.push_back(std::move(w));
    pos = nl + 1;
  }
  assign_output_keys(items);
  return items;
}

void bcast_string(std::string& s, MPI_Comm comm, int rank) {
  uint64_t n = s.size();
  MPI_CHECK(MPI_Bcast(&n, 1, MPI_UINT64_T, 0, comm));
  if (rank != 0) s.resize(n);
  size_t done = 0;
  while (done < n) {  // MPI counts are int: move large lists in 1 GiB pieces
    const int piece = static_cast<int>(std::min<uint64_t>(n - done, 1u << 30));
    MPI_CHECK(MPI_Bcast(&s[done], piece, MPI_CHAR, 0, comm));
    done += static_cast<size_t>(piece);
  }
}
#endif

}  // namespace

namespace {

// The components of an id as a relative path: no root, no ".", ".." kept as a component (it is
// made harmless when the key is built).
std::vector<std::string> id_components(const std::string& id) {
  std::vector<std::string> parts;
  for (const auto& c : fs::path(id).lexically_normal()) {
    const std::string part = c.string();
    if (part.empty() || part == "/" || part == ".") continue;
    parts.push_back(part);
  }
  return parts;
}

std::string strip_extension(const std::string& name) {
  const size_t dot = name.rfind('.');
  return (dot == std::string::npos || dot == 0) ? name : name.substr(0, dot);
}

}  // namespace

void assign_output_keys(std::vector<WorkItem>& items) {
  std::vector<std::vector<std::string>> parts(items.size());
  for (size_t i = 0; i < items.size(); ++i) parts[i] = id_components(items[i].id);
  // The deepest folder every id lies in: its components are dropped from every key.
  size_t common = 0;
  if (!items.empty()) {
    common = parts[0].empty() ? 0 : parts[0].size() - 1;
    for (const auto& p : parts) {
      const size_t dirs = p.empty() ? 0 : p.size() - 1;
      size_t k = 0;
      while (k < std::min(common, dirs) && p[k] == parts[0][k]) ++k;
      common = k;
    }
  }
  auto key_of = [&](size_t i, bool keep_ext) {
    const auto& p = parts[i];
    std::string key;
    for (size_t k = common; k < p.size(); ++k) {
      std::string c = p[k] == ".." ? "__" : p[k];
      if (k + 1 == p.size() && !keep_ext) c = strip_extension(c);
      key += (key.empty() ? "" : "/") + c;
    }
    return key.empty() ? "item-" + std::to_string(items[i].index) : key;
  };
  std::unordered_map<std::string, int> count;
  for (size_t i = 0; i < items.size(); ++i) ++count[key_of(i, false)];
  std::unordered_set<std::string> used;
  for (size_t i = 0; i < items.size(); ++i) {
    std::string key = key_of(i, false);
    if (count[key] > 1) key = key_of(i, true);
    if (!used.insert(key).second) {
      key += "~" + std::to_string(items[i].index);
      used.insert(key);
    }
    items[i].key = key;
  }
}

std::vector<WorkItem> make_row_chunks(const std::string& prefix, int64_t total_rows, int64_t rows_per_chunk,
                                      const std::function<double(int64_t, int64_t)>& row_cost) {
  FLURRY_CHECK(total_rows >= 0, "negative row count " << total_rows);
  FLURRY_CHECK(rows_per_chunk > 0, "rows per chunk must be positive, got " << rows_per_chunk);
  FLURRY_CHECK(prefix.find_first_of("\n\t/") == std::string::npos, "bad chunk prefix '" << prefix << "'");
  std::vector<WorkItem> items;
  for (int64_t b = 0; b < total_rows; b += rows_per_chunk) {
    WorkItem w;
    w.index = static_cast<int64_t>(items.size());
    w.row_begin = b;
    w.row_end = std::min(total_rows, b + rows_per_chunk);
    w.id = prefix + ":" + std::to_string(w.row_begin) + "-" + std::to_string(w.row_end);
    w.cost = row_cost ? row_cost(w.row_begin, w.row_end) : static_cast<double>(w.rows());
    if (!(w.cost >= 0)) w.cost = 0;
    items.push_back(std::move(w));
  }
  assign_output_keys(items);
  return items;
}

std::vector<WorkItem> make_items(const std::vector<std::string>& ids, const CostFn& cost) {
  std::vector<WorkItem> items;
  items.reserve(ids.size());
  std::unordered_set<std::string> seen;
  size_t dups = 0;
  for (const auto& id : ids) {
    FLURRY_CHECK(id.find('\n') == std::string::npos && id.find('\t') == std::string::npos,
                 "input id contains a newline or tab: '" << id << "'");
    if (!seen.insert(id).second) {
      ++dups;
      continue;
    }
    WorkItem w;
    w.index = static_cast<int64_t>(items.size());
    w.id = id;
    try {
      w.cost = cost ? cost(id) : 1.0;
    } catch (const std::exception& e) {
      LOG_DEBUG("cost of " << id << " unknown: " << e.what());
      w.cost = 0;
    }
    if (!(w.cost >= 0)) w.cost = 0;  // also catches NaN
    items.push_back(std::move(w));
  }
  if (dups > 0) LOG_WARN(dups << " duplicate input(s) ignored: every id is processed once");
  assign_output_keys(items);
  return items;
}

std::vector<WorkItem> share_items(const DistContext* ctx, const std::function<std::vector<WorkItem>()>& make) {
#if FLURRY_HAVE_MPI
  if (ctx != nullptr && ctx->mpi_active() && ctx->size() > 1) {
    // Rank 0 makes the list; a failure there is sent to every rank so that all of them stop with it.
    std::string payload, error;
    if (ctx->is_root()) {
      try {
        payload = pack(make());
      } catch (const std::exception& e) {
        error = e.what();
        if (error.empty()) error = "rank 0 failed to make the input list";
      }
    }
    bcast_string(error, ctx->world(), ctx->rank());
    if (!error.empty()) throw Error(error);
    bcast_string(payload, ctx->world(), ctx->rank());
    return unpack(payload);
  }
#else
  (void)ctx;
#endif
  return make();
}

std::vector<WorkItem> collect_inputs(const InputSpec& spec, const CostFn& cost, const DistContext* ctx) {
  return share_items(ctx, [&] { return collect_local(spec, cost); });
}

}  // namespace flurry::dist
