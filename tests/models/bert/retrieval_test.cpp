// Retrieval metrics against pytrec_eval (tests/fixtures/retrieval/make_goldens.py: graded
// judgements, queries without relevant documents, queries without results), and exact top-k by
// inner product against a brute-force sort, ties to the lower index, across the GEMM tile edge.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <numeric>

#include <nlohmann/json.hpp>

#include "models/bert/retrieval.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace flurry::bert {
namespace {

TEST(Retrieval, MetricsMatchPytrecEval) {
  const Qrels qrels = read_qrels_tsv(test::fixture_path("retrieval/qrels.tsv"));
  std::ifstream rin(test::fixture_path("retrieval/run.json"));
  const nlohmann::json run_j = nlohmann::json::parse(rin);
  RunResults run;
  for (auto it = run_j.begin(); it != run_j.end(); ++it) {
    for (const auto& pair : it.value()) run[it.key()].push_back({pair[0].get<std::string>(), pair[1].get<float>()});
  }
  std::ifstream gin(test::fixture_path("retrieval/metrics.json"));
  const nlohmann::json want = nlohmann::json::parse(gin);
  const std::vector<int> ks = want["ks"].get<std::vector<int>>();
  const RetrievalMetrics m = evaluate_retrieval(qrels, run, ks);
  EXPECT_EQ(m.queries, want["queries"].get<int64_t>());
  for (int k : ks) {
    const std::string s = std::to_string(k);
    EXPECT_NEAR(m.ndcg.at(k), want["ndcg@" + s].get<double>(), 1e-12) << "ndcg@" << k;
    EXPECT_NEAR(m.recall.at(k), want["recall@" + s].get<double>(), 1e-12) << "recall@" << k;
    EXPECT_NEAR(m.mrr.at(k), want["mrr@" + s].get<double>(), 1e-12) << "mrr@" << k;
  }
  EXPECT_NEAR(m.hit_at_1, want["hit@1"].get<double>(), 1e-12);
  EXPECT_GT(m.hit_at_1, 0.0);  // the fixture has hits, so the comparison above means something
  EXPECT_GT(m.ndcg.at(10), 0.0);
}

TEST(Retrieval, QrelsFileErrors) {
  const std::string dir = ::testing::TempDir();
  {
    std::ofstream(dir + "/bad.tsv") << "query-id\tcorpus-id\tscore\nq1\td1\tx\n";
  }
  EXPECT_THROW(read_qrels_tsv(dir + "/bad.tsv"), Error);
  {
    std::ofstream(dir + "/trec.tsv") << "q1\t0\td1\t2\nq1\t0\td2\t0\n";
  }
  const Qrels q = read_qrels_tsv(dir + "/trec.tsv");
  EXPECT_EQ(q.at("q1").at("d1"), 2);
  EXPECT_EQ(q.at("q1").at("d2"), 0);
  EXPECT_THROW(read_qrels_tsv(dir + "/missing.tsv"), Error);
}

TEST(Retrieval, ExactTopkMatchesBruteForce) {
  auto rng = test::test_rng("ExactTopk");
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const auto& [nq, nc, d, k] : std::vector<std::tuple<int64_t, int64_t, int64_t, int>>{
           {3, 10, 8, 4}, {5, 4100, 16, 10}, {1, 7, 3, 20}, {2, 8193, 32, 1}}) {
    std::vector<float> q(static_cast<size_t>(nq * d)), c(static_cast<size_t>(nc * d));
    for (float& x : q) x = nd(rng);
    for (float& x : c) x = nd(rng);
    // Duplicate rows: equal scores must rank by the lower index.
    for (int64_t dup : {int64_t{3}, nc - 1}) {
      if (dup > 0 && dup < nc) std::copy(c.begin(), c.begin() + d, c.begin() + dup * d);
    }
    std::vector<int64_t> ids(static_cast<size_t>(nq * k), -7);
    std::vector<float> scores(static_cast<size_t>(nq * k), std::numeric_limits<float>::quiet_NaN());
    exact_topk_ip(q.data(), nq, c.data(), nc, d, k, ids.data(), scores.data());
    for (int64_t i = 0; i < nq; ++i) {
      std::vector<std::pair<double, int64_t>> all;
      for (int64_t j = 0; j < nc; ++j) {
        double s = 0;
        for (int64_t t = 0; t < d; ++t) s += static_cast<double>(q[static_cast<size_t>(i * d + t)]) * c[static_cast<size_t>(j * d + t)];
        all.push_back({s, j});
      }
      std::stable_sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first > b.first; });
      for (int r = 0; r < k; ++r) {
        const size_t at = static_cast<size_t>(i * k + r);
        if (r >= nc) {
          EXPECT_EQ(ids[at], -1);
          EXPECT_TRUE(std::isinf(scores[at]) && scores[at] < 0);
          continue;
        }
        EXPECT_NEAR(scores[at], all[static_cast<size_t>(r)].first, 1e-4 * (1 + std::abs(all[static_cast<size_t>(r)].first)));
        // The id may differ from the double-precision order only where two scores are within rounding.
        if (ids[at] != all[static_cast<size_t>(r)].second) {
          EXPECT_NEAR(all[static_cast<size_t>(r)].first,
                      all[static_cast<size_t>(std::find_if(all.begin(), all.end(), [&](auto& p) { return p.second == ids[at]; }) -
                                              all.begin())].first,
                      1e-4)
              << "query " << i << " rank " << r;
        }
      }
      // Exact duplicates: the lower index first.
      const auto first = std::find(ids.begin() + i * k, ids.begin() + (i + 1) * k, 0);
      const auto dup = std::find(ids.begin() + i * k, ids.begin() + (i + 1) * k, 3);
      if (nc > 3 && first != ids.begin() + (i + 1) * k && dup != ids.begin() + (i + 1) * k) {
        EXPECT_LT(first, dup);
      }
    }
  }
}

}  // namespace
}  // namespace flurry::bert
