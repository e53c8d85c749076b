#include "models/bert/retrieval.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "models/bert/search.h"
#include "runtime/check.h"

namespace flurry::bert {

Qrels read_qrels_tsv(const std::string& path) {
  std::ifstream in(path);
  FLURRY_CHECK(in.good(), path << ": cannot open the qrels file");
  Qrels q;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, '\t');) f.push_back(x);
    if (n == 1 && f.size() >= 3 && f[2] == "score") continue;  // BEIR's header line
    FLURRY_CHECK(f.size() == 3 || f.size() == 4, path << ":" << n << ": expected query-id, corpus-id, score");
    const std::string& score = f.back();
    size_t used = 0;
    int rel = 0;
    try {
      rel = std::stoi(score, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    FLURRY_CHECK(used == score.size() && !score.empty(), path << ":" << n << ": score '" << score << "' is not an integer");
    // TREC's 4-column form has an iteration column between the ids.
    q[f[0]][f.size() == 4 ? f[2] : f[1]] = rel;
  }
  return q;
}

RetrievalMetrics evaluate_retrieval(const Qrels& qrels, const RunResults& results, const std::vector<int>& ks) {
  RetrievalMetrics m;
  for (int k : ks) m.recall[k] = m.ndcg[k] = m.mrr[k] = 0.0;
  static const std::vector<Ranked> kNone;
  for (const auto& [qid, judged] : qrels) {
    int n_relevant = 0;
    std::vector<int> gains;
    for (const auto& [doc, rel] : judged) {
      if (rel > 0) {
        ++n_relevant;
        gains.push_back(rel);
      }
    }
    if (n_relevant == 0) continue;  // pytrec_eval: nothing to find, the query is not scored
    std::sort(gains.rbegin(), gains.rend());
    const auto found = results.find(qid);
    const std::vector<Ranked>& ranked = found == results.end() ? kNone : found->second;
    ++m.queries;
    auto rel_of = [&](size_t i) {
      const auto it = judged.find(ranked[i].doc);
      return it == judged.end() ? 0 : it->second;
    };
    if (!ranked.empty() && rel_of(0) > 0) m.hit_at_1 += 1.0;
    for (int k : ks) {
      const size_t top = std::min(ranked.size(), static_cast<size_t>(k));
      int hits = 0;
      double dcg = 0.0, idcg = 0.0, rr = 0.0;
      for (size_t i = 0; i < top; ++i) {
        const int rel = rel_of(i);
        if (rel > 0) {
          ++hits;
          if (rr == 0.0) rr = 1.0 / static_cast<double>(i + 1);
        }
        dcg += rel / std::log2(static_cast<double>(i) + 2.0);
      }
      for (size_t i = 0; i < gains.size() && i < static_cast<size_t>(k); ++i) {
        idcg += gains[i] / std::log2(static_cast<double>(i) + 2.0);
      }
      m.recall[k] += static_cast<double>(hits) / n_relevant;
      m.ndcg[k] += idcg > 0 ? dcg / idcg : 0.0;
      m.mrr[k] += rr;
    }
  }
  if (m.queries > 0) {
    const double n = static_cast<double>(m.queries);
    for (int k : ks) {
      m.recall[k] /= n;
      m.ndcg[k] /= n;
      m.mrr[k] /= n;
    }
    m.hit_at_1 /= n;
  }
  return m;
}

void exact_topk_ip(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, int k,
                   int64_t* ids, float* scores) {
  FLURRY_CHECK(nq >= 0 && nc >= 0 && d > 0 && k > 0, "exact_topk_ip: nq " << nq << ", nc " << nc << ", d " << d
                                                                           << ", k " << k);
  // The sharded search's CPU path with one shard: bounded scratch (one tile) for any corpus size.
  MemoryCorpusShard shard;
  shard.data = corpus;
  shard.begin = 0;
  shard.end = shard.rows = nc;
  shard.dim = d;
  shard.searchable.assign(static_cast<size_t>(nc), uint8_t{1});
  CpuTileSearcher s(queries, nq, d, k);
  search_shard(shard, s);
  const TopkLists best = s.result();
  std::copy(best.rows.begin(), best.rows.end(), ids);
  std::copy(best.scores.begin(), best.scores.end(), scores);
}

}  // namespace flurry::bert
