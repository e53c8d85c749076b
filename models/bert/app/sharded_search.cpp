#include "models/bert/app/sharded_search.h"

#include <chrono>
#include <fstream>
#include <limits>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/npy.h"
#include "models/bert/app/embed_job.h"
#include "models/bert/search.h"
#ifdef FLURRY_EMBED_GPU
#include "models/bert/gpu/search_gpu.h"
#endif
#include "runtime/check.h"
#include "runtime/dist/mpi_check.h"
#include "runtime/dist/records.h"
#include "runtime/log.h"

namespace flurry::bert {

namespace {

// ids.jsonl of an embed run: which rows of [begin, end) are ok and, when `ids` is given, the id of
// every row of the file. Lines outside the range are not parsed unless ids are wanted.
std::vector<uint8_t> read_row_status(const std::string& dir, int64_t rows, int64_t begin, int64_t end,
                                     std::vector<std::string>* ids) {
  std::ifstream in(dir + "/ids.jsonl");
  FLURRY_CHECK(in.good(), dir << "/ids.jsonl: cannot read (run flurry-embed on the corpus first)");
  std::vector<uint8_t> ok;
  ok.reserve(static_cast<size_t>(end - begin));
  int64_t r = 0;
  for (std::string line; std::getline(in, line); ++r) {
    const bool mine = r >= begin && r < end;
    if (!mine && ids == nullptr) {
      if (r >= end) break;
      continue;
    }
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    FLURRY_CHECK(!j.is_discarded() && j.contains("id") && j.contains("status"),
                 dir << "/ids.jsonl:" << r + 1 << ": malformed line");
    if (ids != nullptr) ids->push_back(j["id"].get<std::string>());
    if (mine) ok.push_back(j["status"] == "ok" ? 1 : 0);
  }
  FLURRY_CHECK(static_cast<int64_t>(ok.size()) == end - begin &&
                   (ids == nullptr || static_cast<int64_t>(ids->size()) == rows),
               dir << ": embeddings.npy has " << rows << " rows, ids.jsonl fewer");
  return ok;
}

// Rank 0 receives every rank's lists (rank order); other ranks get an empty vector.
std::vector<TopkLists> gather_lists(const dist::DistContext& ctx, const TopkLists& mine) {
  std::vector<TopkLists> parts;
  if (!ctx.mpi_active() || ctx.size() == 1) {
    parts.push_back(mine);
    return parts;
  }
#if FLURRY_HAVE_MPI
  const int64_t n = mine.nq * mine.k;
  FLURRY_CHECK(n < std::numeric_limits<int>::max(),
               "search: " << mine.nq << " queries x top-" << mine.k
                          << " do not fit one MPI message; search fewer queries at once");
  const int count = static_cast<int>(n);
  std::vector<float> scores(ctx.is_root() ? static_cast<size_t>(n) * ctx.size() : 0);
  std::vector<int64_t> rows(ctx.is_root() ? static_cast<size_t>(n) * ctx.size() : 0);
  MPI_CHECK(MPI_Gather(mine.scores.data(), count, MPI_FLOAT, scores.data(), count, MPI_FLOAT, 0, ctx.world()));
  MPI_CHECK(MPI_Gather(mine.rows.data(), count, MPI_INT64_T, rows.data(), count, MPI_INT64_T, 0, ctx.world()));
  if (!ctx.is_root()) return parts;
  for (int r = 0; r < ctx.size(); ++r) {
    TopkLists p(mine.nq, mine.k);
    const auto from = static_cast<std::ptrdiff_t>(r * n), to = static_cast<std::ptrdiff_t>((r + 1) * n);
    std::copy(scores.begin() + from, scores.begin() + to, p.scores.begin());
    std::copy(rows.begin() + from, rows.begin() + to, p.rows.begin());
    parts.push_back(std::move(p));
  }
#endif
  return parts;
}

std::unique_ptr<TileSearcher> make_searcher(bool cuda, const std::vector<float>& q, int64_t nq, int64_t d, int k) {
  if (cuda) {
#ifdef FLURRY_EMBED_GPU
    return std::make_unique<GpuTileSearcher>(q.data(), nq, d, k);
#else
    FLURRY_CHECK(false, "search on cuda: flurry-embed was built without the CUDA backend");
#endif
  }
  return std::make_unique<CpuTileSearcher>(q.data(), nq, d, k);
}

}  // namespace

void sharded_search(const dist::DistContext& ctx, const std::string& corpus_dir, const std::string& query_dir,
                    const ShardedSearchOptions& o, const std::string& out_path) {
  ctx.barrier();
  const auto t0 = std::chrono::steady_clock::now();
  const std::string npy = corpus_dir + "/embeddings.npy";
  const NpyInfo info = read_npy_info(npy);
  const auto [begin, end] = shard_rows(info.rows, ctx.rank(), ctx.size());
  std::vector<std::string> corpus_ids;
  std::vector<uint8_t> ok = read_row_status(corpus_dir, info.rows, begin, end, ctx.is_root() ? &corpus_ids : nullptr);
  // The queries: every rank holds all of them (they are few next to the corpus), ok rows packed.
  const EmbeddedSet qs = load_embedded(query_dir);
  FLURRY_CHECK(qs.dim == info.cols, "corpus vectors have " << info.cols << " dimensions, queries " << qs.dim
                                                           << " (different models?)");
  std::vector<float> q;
  std::vector<int64_t> qrow;
  for (int64_t r = 0; r < qs.rows; ++r) {
    if (!qs.ok[static_cast<size_t>(r)]) continue;
    qrow.push_back(r);
    q.insert(q.end(), qs.vectors.begin() + r * qs.dim, qs.vectors.begin() + (r + 1) * qs.dim);
  }
  const int64_t nq = static_cast<int64_t>(qrow.size());
  const NpyCorpusShard shard = open_npy_shard(npy, begin, end, std::move(ok));
  std::unique_ptr<TileSearcher> searcher = make_searcher(o.cuda, q, nq, info.cols, o.k);
  search_shard(shard, *searcher);
  const std::vector<TopkLists> parts = gather_lists(ctx, searcher->result());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  LOG_INFO("search: rows [" << begin << ", " << end << ") of " << info.rows << " on " << (o.cuda ? "cuda" : "cpu")
                            << ", " << nq << " queries, top-" << o.k << ", " << secs << " s");
  if (!ctx.is_root()) return;
  const TopkLists best = merge_topk(parts, o.k);
  std::string text;
  for (int64_t i = 0; i < nq; ++i) {
    nlohmann::ordered_json j;
    j["query_id"] = qs.ids[static_cast<size_t>(qrow[static_cast<size_t>(i)])];
    nlohmann::json res = nlohmann::json::array();
    for (int r = 0; r < o.k; ++r) {
      const size_t at = static_cast<size_t>(i * o.k + r);
      const int64_t row = best.rows[at];
      if (row < 0) break;
      res.push_back({{"id", corpus_ids[static_cast<size_t>(row)]}, {"row", row}, {"score", best.scores[at]}});
    }
    j["results"] = res;
    text += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  dist::write_file_atomic(out_path, text);
}

}  // namespace flurry::bert
