// Table-wise sharding of DLRM embedding tables (models/dlrm/sharding.h, app/shard_exchange.h,
// app/sharded_scorer.h) without MPI: the plan (greedy by bytes, every table once, balanced,
// deterministic), and the exchange run by 1 to 4 ranks as threads over an in-process communicator,
// each rank scoring its own batches (different counts and sizes, one rank with none, empty and
// multi-hot bags) and then draining: every logit bit-identical to dlrm_forward on the full model.
// The same over MPI and the CLI is tests/models/dlrm/dlrm_cli_test.cpp (ShardTables*).
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "models/dlrm/app/sharded_scorer.h"
#include "models/dlrm/model.h"
#include "models/dlrm/sharding.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace flurry::dlrm {
namespace {

DlrmConfig tables_config(const std::vector<int64_t>& rows, int64_t dim) {
  DlrmConfig c;
  for (size_t i = 0; i < rows.size(); ++i) {
    c.tables.push_back(TableConfig{"t" + std::to_string(i), rows[i], dim});
    c.bags.push_back(BagConfig{"b" + std::to_string(i), static_cast<int>(i), Pooling::kSum, {"f" + std::to_string(i)}});
  }
  return c;
}

TEST(TablePlan, GreedyByBytesBalancedAndDeterministic) {
  const DlrmConfig c = tables_config({1000, 10, 500, 500, 7, 300, 300, 2}, 4);
  const TablePlan p = plan_tables(c, 3, 4);
  ASSERT_EQ(p.owner.size(), 8u);
  // Largest first to the lightest rank: 1000 -> r0, 500 -> r1, 500 -> r2, 300 -> r1, 300 -> r2,
  // 10 -> r0 (1000 vs 800 vs 800: r1), ... computed by hand below.
  EXPECT_EQ(p.owner[0], 0);
  EXPECT_EQ(p.owner[2], 1);
  EXPECT_EQ(p.owner[3], 2);
  EXPECT_EQ(p.owner[5], 1);
  EXPECT_EQ(p.owner[6], 2);
  int64_t sum = 0, most = 0, least = INT64_MAX;
  for (int r = 0; r < 3; ++r) {
    int64_t b = 0;
    for (size_t t = 0; t < 8; ++t) b += p.owner[t] == r ? c.tables[t].rows * 4 * 4 : 0;
    EXPECT_EQ(b, p.rank_bytes[static_cast<size_t>(r)]);
    sum += b;
    most = std::max(most, b);
    least = std::min(least, b);
  }
  EXPECT_EQ(sum, (1000 + 10 + 500 + 500 + 7 + 300 + 300 + 2) * 16);
  EXPECT_LE(most - least, 1000 * 16);  // greedy: within the largest table
  // The same plan every time (every rank computes it alone).
  EXPECT_EQ(plan_tables(c, 3, 4).owner, p.owner);
  // Bags follow their table; owned_by marks exactly the owner's tables.
  for (int r = 0; r < 3; ++r) {
    const auto flags = p.owned_by(r);
    for (int64_t b : p.bags_of(c, r)) EXPECT_TRUE(flags[static_cast<size_t>(c.bags[static_cast<size_t>(b)].table)]);
  }
  const Json j = p.to_json(c);
  EXPECT_EQ(j["ranks"], 3);
  EXPECT_EQ(j["per_rank"].size(), 3u);
  EXPECT_NE(p.describe(c).find("rank 2"), std::string::npos) << p.describe(c);
}

TEST(TablePlan, OneSharedTableHasOneOwnerAndMoreRanksThanTablesLeaveSomeEmpty) {
  const TablePlan one = plan_tables(tables_config({142}, 128), 4);
  EXPECT_EQ(one.owner, std::vector<int>{0});
  EXPECT_EQ(one.rank_bytes[1], 0);
  const TablePlan two = plan_tables(tables_config({5, 5}, 2), 1);
  EXPECT_EQ(two.owner, (std::vector<int>{0, 0}));
}

// R ranks as threads: each collective waits until every rank has posted its buffers, then each
// copies what is addressed to it. Host buffers only.
class Rendezvous {
 public:
  explicit Rendezvous(int n) : n_(n), posts_(static_cast<size_t>(n)) {}
  struct Post {
    const void* send = nullptr;
    std::vector<size_t> send_counts, send_displs;
  };
  // Posts this rank's send side, waits for all, runs `take`, waits until all have taken.
  void exchange(int rank, Post p, const std::function<void(const std::vector<Post>&)>& take) {
    posts_[static_cast<size_t>(rank)] = std::move(p);
    wait();
    take(posts_);
    wait();
  }
  int size() const { return n_; }

 private:
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const uint64_t gen = gen_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++gen_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return gen_ != gen; });
  }
  int n_;
  std::vector<Post> posts_;
  std::mutex m_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t gen_ = 0;
};

class ThreadComm final : public dist::Communicator {
 public:
  ThreadComm(Rendezvous& rv, int rank) : rv_(rv), rank_(rank) {}
  dist::CommKind kind() const override { return dist::CommKind::Self; }
  int rank() const override { return rank_; }
  int size() const override { return rv_.size(); }
  void all_to_all(const void* send, void* recv, size_t count, DType t, Where w, void* s) override {
    std::vector<size_t> c(static_cast<size_t>(size()), count), d(static_cast<size_t>(size()));
    for (size_t r = 0; r < d.size(); ++r) d[r] = r * count;
    all_to_allv(send, c, d, recv, c, d, t, w, s);
  }
  void all_to_allv(const void* send, const std::vector<size_t>& sc, const std::vector<size_t>& sd, void* recv,
                   const std::vector<size_t>& rc, const std::vector<size_t>& rd, DType t, Where w, void*) override {
    FLURRY_CHECK(w == Where::Host, "thread communicator: host buffers only");
    const size_t es = dtype_size(t);
    ++collectives;
    rv_.exchange(rank_, {send, sc, sd}, [&](const std::vector<Rendezvous::Post>& posts) {
      for (size_t src = 0; src < posts.size(); ++src) {
        const Rendezvous::Post& p = posts[src];
        FLURRY_CHECK(p.send_counts[static_cast<size_t>(rank_)] == rc[src],
                     "rank " << src << " sends " << p.send_counts[static_cast<size_t>(rank_)] << " to rank " << rank_
                             << ", which expects " << rc[src]);
        if (rc[src] == 0) continue;
        std::memcpy(static_cast<char*>(recv) + rd[src] * es,
                    static_cast<const char*>(p.send) + p.send_displs[static_cast<size_t>(rank_)] * es, rc[src] * es);
      }
    });
  }
  void all_gather(const void*, void*, size_t, DType, Where, void*) override { FLURRY_FAIL("not used"); }
  void broadcast(void*, size_t, DType, Where, int, void*) override { FLURRY_FAIL("not used"); }
  void all_reduce(const void*, void*, size_t, DType, dist::ReduceOp, Where, void*) override { FLURRY_FAIL("not used"); }
  int64_t collectives = 0;

 private:
  Rendezvous& rv_;
  int rank_;
};

// A random batch of n samples: dense in [0, 1], each bag 0..3 indices (empty bags included).
DlrmBatch random_batch(const DlrmConfig& c, int64_t n, std::mt19937_64& rng) {
  DlrmBatch b;
  b.n = n;
  b.dense = test::random_vector(static_cast<size_t>(n * c.num_dense()), rng, 0.0f, 1.0f);
  b.offsets.push_back(0);
  std::uniform_int_distribution<int> len(0, 3);
  for (int64_t bag = 0; bag < c.num_bags(); ++bag) {
    const int64_t rows = c.tables[static_cast<size_t>(c.bags[static_cast<size_t>(bag)].table)].rows;
    std::uniform_int_distribution<int32_t> row(0, static_cast<int32_t>(rows - 1));
    for (int64_t i = 0; i < n; ++i) {
      const int l = len(rng);
      for (int k = 0; k < l; ++k) b.indices.push_back(row(rng));
      b.offsets.push_back(static_cast<int32_t>(b.indices.size()));
    }
  }
  return b;
}

class ShardedScorerTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(ShardedScorerTest, EveryRankGetsTheUnshardedLogitsBitForBit) {
  const auto [model, ranks] = GetParam();
  const DlrmAssets a = load_dlrm_assets(test::fixture_path("dlrm/" + model), "");
  const DlrmModel full = load_dlrm_cpu(a.cfg, *a.ck);
  auto rng = test::test_rng("dlrm-shard-" + model + std::to_string(ranks));
  // Rank r scores r + 1 batches of varied sizes; the last rank of 3 or more scores none.
  std::vector<std::vector<DlrmBatch>> batches(static_cast<size_t>(ranks));
  const int64_t sizes[] = {1, 7, 33, 2};
  for (int r = 0; r < ranks; ++r) {
    if (ranks >= 3 && r == ranks - 1) continue;
    for (int k = 0; k <= r; ++k) batches[static_cast<size_t>(r)].push_back(random_batch(a.cfg, sizes[(r + k) % 4], rng));
  }
  Rendezvous rv(ranks);
  std::vector<std::unique_ptr<ThreadComm>> comms;
  std::vector<std::unique_ptr<ShardedCpuScorer>> scorers;
  for (int r = 0; r < ranks; ++r) {
    comms.push_back(std::make_unique<ThreadComm>(rv, r));
    scorers.push_back(std::make_unique<ShardedCpuScorer>(a, *comms.back()));
    // Only the owned tables are bound.
    for (size_t t = 0; t < a.cfg.tables.size(); ++t) {
      EXPECT_EQ(table_bound(scorers.back()->model(), static_cast<int>(t)), scorers.back()->plan().owner[t] == r);
    }
  }
  std::vector<std::vector<std::vector<float>>> got(static_cast<size_t>(ranks));
  std::vector<std::string> errors(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      try {
        for (const DlrmBatch& b : batches[static_cast<size_t>(r)]) {
          std::vector<float> l(static_cast<size_t>(b.n));
          test::poison(l.data(), l.size() * sizeof(float));
          scorers[static_cast<size_t>(r)]->score(b, l.data());
          got[static_cast<size_t>(r)].push_back(l);
        }
        scorers[static_cast<size_t>(r)]->finish();
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  DlrmScratch s;
  for (int r = 0; r < ranks; ++r) {
    ASSERT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
    // Every rank took part in the same number of collectives (3 per step, 1 for the last).
    EXPECT_EQ(comms[static_cast<size_t>(r)]->collectives, comms[0]->collectives);
    for (size_t k = 0; k < batches[static_cast<size_t>(r)].size(); ++k) {
      const DlrmBatch& b = batches[static_cast<size_t>(r)][k];
      std::vector<float> want(static_cast<size_t>(b.n));
      dlrm_forward(full, b, s, want.data());
      const std::vector<float>& l = got[static_cast<size_t>(r)][k];
      ASSERT_EQ(l.size(), want.size());
      for (size_t i = 0; i < l.size(); ++i) ASSERT_TRUE(std::isfinite(l[i])) << "rank " << r << " batch " << k << " row " << i;
      EXPECT_EQ(std::memcmp(l.data(), want.data(), l.size() * sizeof(float)), 0)
          << model << ", rank " << r << " of " << ranks << ", batch " << k << ": logits differ from the unsharded forward";
    }
  }
  // A sharded model refuses the unsharded forward rather than read a table it does not hold.
  if (ranks > 1) {
    std::vector<float> l(1);
    const DlrmBatch b = random_batch(a.cfg, 1, rng);
    EXPECT_THROW(dlrm_forward(scorers[1]->model(), b, s, l.data()), Error);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ShardedScorerTest,
                         ::testing::Combine(::testing::Values("classic/model", "dcnv2/model", "foodtruck/model", "cat/model"),
                                            ::testing::Values(1, 2, 3, 4)),
                         [](const auto& p) {
                           std::string m = std::get<0>(p.param);
                           return m.substr(0, m.find('/')) + "_" + std::to_string(std::get<1>(p.param)) + "_ranks";
                         });

}  // namespace
}  // namespace flurry::dlrm
