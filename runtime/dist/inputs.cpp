#include "runtime/dist/inputs.h"

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
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
// Items travel as one buffer: "cost\tid\n" lines (ids are paths: no newline or tab inside).
std::string pack(const std::vector<WorkItem>& items) {
  std::string s;
  for (const auto& it : items) {
    char num[32];
    std::snprintf(num, sizeof(num), "%.17g", it.cost);
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
    w.cost = std::strtod(s.substr(pos, tab - pos).c_str(), nullptr);
    w.id = s.substr(tab + 1, nl - tab - 1);
    items.push_back(std::move(w));
    pos = nl + 1;
  }
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
  return items;
}

std::vector<WorkItem> collect_inputs(const InputSpec& spec, const CostFn& cost, const DistContext* ctx) {
#if FLURRY_HAVE_MPI
  if (ctx != nullptr && ctx->mpi_active() && ctx->size() > 1) {
    // Rank 0 expands; a failure there is sent to every rank so that all of them stop with it.
    std::string payload, error;
    if (ctx->is_root()) {
      try {
        payload = pack(collect_local(spec, cost));
      } catch (const Error& e) {
        error = e.what();
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
  return collect_local(spec, cost);
}

}  // namespace flurry::dist
