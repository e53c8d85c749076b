// The sharded exact search on the CPU (models/bert/search.h): shards cover every row once; the
// merge order (score, then lower row; NaN and masked rows never returned; -0 ties +0); the tiled
// search against a brute-force fp64 ranking; and the same lists, bit for bit, for 1 to 5 shards
// merged, with exact ties (duplicated rows) across shard and tile edges and unsearchable rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "models/bert/search.h"
#include "tests/common/test_util.h"

namespace flurry::bert {
namespace {

TEST(Search, ShardsCoverEveryRowOnce) {
  for (int64_t n : {0, 1, 2, 7, 2048, 10001}) {
    for (int size = 1; size <= 5; ++size) {
      int64_t next = 0;
      for (int r = 0; r < size; ++r) {
        const auto [b, e] = shard_rows(n, r, size);
        EXPECT_EQ(b, next) << n << " rows, rank " << r << " of " << size;
        EXPECT_LE(e - b, n / size + 1);
        next = e;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(Search, MergeOrderTiesNanAndMask) {
  // One query, k = 4; the running list holds rows below the tile's base (10).
  TopkLists run(1, 4);
  const float first[] = {0.5f, 0.25f};
  merge_tile_cpu(first, 2, 2, 0, nullptr, &run);  // rows 0, 1
  const float nan = std::numeric_limits<float>::quiet_NaN();
  //                 row 10  11    12     13    14     15
  const float tile[] = {nan, 0.5f, -0.0f, 0.9f, 0.25f, 0.95f};
  const uint8_t valid[] = {1, 1, 1, 1, 1, 0};
  merge_tile_cpu(tile, 6, 6, 10, valid, &run);
  const std::vector<int64_t> want_rows = {13, 0, 11, 1};  // 0.5 ties: row 0 before 11; 0.95 masked
  EXPECT_EQ(run.rows, want_rows);
  EXPECT_EQ(run.scores[0], 0.9f);
  EXPECT_EQ(run.scores[3], 0.25f);
  // Fewer candidates than k: empty slots stay row -1, -inf; -0 is kept as +0.
  TopkLists small(1, 3);
  const float z[] = {-0.0f, nan};
  merge_tile_cpu(z, 2, 2, 0, nullptr, &small);
  EXPECT_EQ(small.rows, (std::vector<int64_t>{0, -1, -1}));
  EXPECT_FALSE(std::signbit(small.scores[0]));
  EXPECT_EQ(small.scores[1], -std::numeric_limits<float>::infinity());
}

struct Corpus {
  int64_t n, d;
  std::vector<float> data;
  std::vector<uint8_t> searchable;
};

// Unit vectors, with exact duplicates (ties) spread over the rows and every 97th row unsearchable.
Corpus make_corpus(int64_t n, int64_t d, std::mt19937_64& rng) {
  Corpus c{n, d, test::random_vector(static_cast<size_t>(n * d), rng), std::vector<uint8_t>(static_cast<size_t>(n), 1)};
  for (int64_t r = 0; r < n; ++r) {
    if (r % 13 == 5 && r > 100) {
      const int64_t src = r % 100;
      std::copy_n(c.data.begin() + src * d, d, c.data.begin() + r * d);
    }
    float norm = 0;
    for (int64_t j = 0; j < d; ++j) norm += c.data[static_cast<size_t>(r * d + j)] * c.data[static_cast<size_t>(r * d + j)];
    for (int64_t j = 0; j < d; ++j) c.data[static_cast<size_t>(r * d + j)] /= std::sqrt(norm);
    if (r % 97 == 3) c.searchable[static_cast<size_t>(r)] = 0;
  }
  return c;
}

TopkLists search(const Corpus& c, const std::vector<float>& q, int64_t nq, int k, int size) {
  std::vector<TopkLists> parts;
  for (int r = 0; r < size; ++r) {
    const auto [b, e] = shard_rows(c.n, r, size);
    MemoryCorpusShard s;
    s.data = c.data.data();
    s.begin = b;
    s.end = e;
    s.rows = c.n;
    s.dim = c.d;
    s.searchable.assign(c.searchable.begin() + b, c.searchable.begin() + e);
    CpuTileSearcher t(q.data(), nq, c.d, k);
    search_shard(s, t);
    parts.push_back(t.result());
  }
  return merge_topk(parts, k);
}

TEST(Search, ShardedEqualsOneShardBitForBitAndBruteForce) {
  auto rng = test::test_rng("search-sharded");
  const int64_t n = 2 * kSearchTile + 777, d = 48, nq = 9;
  const Corpus c = make_corpus(n, d, rng);
  std::vector<float> q(static_cast<size_t>(nq * d));
  for (int64_t i = 0; i < nq; ++i) {
    // Some queries equal a corpus row that has duplicates: exact ties at the top.
    const int64_t src = i % 3 == 0 ? 5 + 13 * i : 1000 + 31 * i;
    std::copy_n(c.data.begin() + src * d, d, q.begin() + i * d);
  }
  for (int k : {1, 10, 100}) {
    const TopkLists one = search(c, q, nq, k, 1);
    // Brute force in fp64: every returned row is searchable and its score is the dot product; the
    // list is in (score, row) order; nothing left out beats the last one.
    for (int64_t i = 0; i < nq; ++i) {
      std::vector<double> dots(static_cast<size_t>(n));
      for (int64_t r = 0; r < n; ++r) {
        double s = 0;
        for (int64_t j = 0; j < d; ++j) s += double{q[static_cast<size_t>(i * d + j)]} * c.data[static_cast<size_t>(r * d + j)];
        dots[static_cast<size_t>(r)] = s;
      }
      std::vector<bool> in_list(static_cast<size_t>(n), false);
      for (int j = 0; j < k; ++j) {
        const int64_t row = one.rows[static_cast<size_t>(i * k + j)];
        ASSERT_GE(row, 0);
        ASSERT_TRUE(c.searchable[static_cast<size_t>(row)]) << "row " << row;
        in_list[static_cast<size_t>(row)] = true;
        EXPECT_NEAR(one.scores[static_cast<size_t>(i * k + j)], dots[static_cast<size_t>(row)], 1e-5);
        if (j > 0) {
          EXPECT_TRUE(topk_before(one.scores[static_cast<size_t>(i * k + j - 1)], one.rows[static_cast<size_t>(i * k + j - 1)],
                                  one.scores[static_cast<size_t>(i * k + j)], row));
        }
      }
      const float last = one.scores[static_cast<size_t>(i * k + k - 1)];
      for (int64_t r = 0; r < n; ++r) {
        if (!in_list[static_cast<size_t>(r)] && c.searchable[static_cast<size_t>(r)]) {
          ASSERT_LE(dots[static_cast<size_t>(r)], last + 1e-5) << "query " << i << " misses row " << r;
        }
      }
    }
    if (k == 10) {
      // The query's row and its duplicates lead. BLAS need not give bit-equal dot products for
      // equal rows at different places in a tile, so they tie only within rounding; where they do
      // tie exactly, the lower row comes first.
      EXPECT_NEAR(one.scores[0], one.scores[1], 1e-5);
      if (one.scores[0] == one.scores[1]) {
        EXPECT_LT(one.rows[0], one.rows[1]);
      }
    }
    for (int size = 2; size <= 5; ++size) {
      const TopkLists many = search(c, q, nq, k, size);
      EXPECT_EQ(many.rows, one.rows) << size << " shards, k " << k;
      for (size_t j = 0; j < one.scores.size(); ++j) {
        ASSERT_EQ(std::memcmp(&many.scores[j], &one.scores[j], sizeof(float)), 0) << size << " shards, slot " << j;
      }
    }
  }
}

TEST(Search, MoreThanTheCorpusAndEmptyShards) {
  auto rng = test::test_rng("search-small");
  const Corpus c = make_corpus(5, 8, rng);
  const std::vector<float> q(c.data.begin(), c.data.begin() + 16);
  // 7 shards of 5 rows: two are empty; k = 9 > 5 searchable rows (row 3 is not searchable).
  const TopkLists t = search(c, q, 2, 9, 7);
  EXPECT_EQ(t.rows[0], 0);
  EXPECT_EQ(t.rows[9], 1);
  for (int64_t i = 0; i < 2; ++i) {
    int found = 0;
    for (int j = 0; j < 9; ++j) found += t.rows[static_cast<size_t>(i * 9 + j)] >= 0 ? 1 : 0;
    EXPECT_EQ(found, 4);
    EXPECT_EQ(t.rows[static_cast<size_t>(i * 9 + 4)], -1);
  }
  EXPECT_EQ(t.rows, search(c, q, 2, 9, 1).rows);
}

}  // namespace
}  // namespace flurry::bert
