// The GPU exact search against its CPU reference (label gpu; skips without a GPU):
//   - retrieval_topk_merge, tile after tile, equals merge_tile_cpu bit for bit (rows and score
//     bits) on scores with many exact ties, NaN, -0 and masked columns, for k = 1, 7, 100, 1024
//     and tiles of 1, 777 and 2048 columns, 1 and 33 queries; outputs poisoned first;
//   - GpuTileSearcher against CpuTileSearcher on a corpus of three tiles plus a tail: scores
//     within fp32 rounding, the same rows except where two scores are closer than that;
//   - the GPU search gives the same bits for 1 and 3 shards (tiles aligned to global rows).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "kernels/retrieval_topk.cuh"
#include "models/bert/gpu/search_gpu.h"
#include "models/bert/search.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "tests/common/test_util.h"

namespace flurry::bert {
namespace {

template <typename T>
class Dev {
 public:
  explicit Dev(size_t n) : n_(n) { CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T))); }
  ~Dev() { (void)cudaFree(p_); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  T* get() const { return p_; }
  void put(const std::vector<T>& v) { CUDA_CHECK(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> take() const {
    std::vector<T> v(n_);
    CUDA_CHECK(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  void poison() { CUDA_CHECK(cudaMemset(p_, 0xFF, std::max<size_t>(n_, 1) * sizeof(T))); }

 private:
  T* p_ = nullptr;
  size_t n_;
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(SearchGpu, MergeKernelEqualsCpuBitForBit) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("retrieval-topk-merge");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t rows : {1, 33}) {
    for (int64_t cols : {1, 777, 2048}) {
      for (int k : {1, 7, 100, 1024}) {
        const std::string name =
            "rows " + std::to_string(rows) + " cols " + std::to_string(cols) + " k " + std::to_string(k);
        TopkLists cpu(rows, k);
        Dev<float> d_scores(static_cast<size_t>(rows * cols));
        Dev<float> ls[2] = {Dev<float>(cpu.scores.size()), Dev<float>(cpu.scores.size())};
        Dev<int64_t> lr[2] = {Dev<int64_t>(cpu.rows.size()), Dev<int64_t>(cpu.rows.size())};
        Dev<uint8_t> d_valid(static_cast<size_t>(cols));
        ls[0].put(cpu.scores);
        lr[0].put(cpu.rows);
        int cur = 0;
        for (int t = 0; t < 4; ++t) {
          // Scores on a coarse grid (many exact ties), some NaN, -0 and masked columns.
          std::vector<float> s = test::random_vector(static_cast<size_t>(rows * cols), rng);
          for (float& v : s) {
            v = std::round(v * 16.0f) / 16.0f;
            if (v == 0.0f && (rng() & 1)) v = -0.0f;
            if (rng() % 61 == 0) v = nan;
          }
          std::vector<uint8_t> valid(static_cast<size_t>(cols));
          for (auto& v : valid) v = rng() % 9 == 0 ? 0 : 1;
          const int64_t base = t * kRetrievalTileMaxCols;
          merge_tile_cpu(s.data(), cols, cols, base, valid.data(), &cpu);
          d_scores.put(s);
          d_valid.put(valid);
          ls[1 - cur].poison();
          lr[1 - cur].poison();
          RetrievalTopkArgs a;
          a.scores = d_scores.get();
          a.ld_scores = cols;
          a.valid = d_valid.get();
          a.rows = rows;
          a.cols = cols;
          a.base = base;
          a.k = k;
          a.in_scores = ls[cur].get();
          a.in_rows = lr[cur].get();
          a.out_scores = ls[1 - cur].get();
          a.out_rows = lr[1 - cur].get();
          retrieval_topk_merge(a, nullptr);
          CUDA_CHECK(cudaDeviceSynchronize());
          cur = 1 - cur;
          ASSERT_EQ(lr[cur].take(), cpu.rows) << name << ", tile " << t;
          ASSERT_TRUE(same_bits(ls[cur].take(), cpu.scores)) << name << ", tile " << t;
        }
      }
    }
  }
}

struct Data {
  int64_t n, d, nq;
  std::vector<float> corpus, queries;
  std::vector<uint8_t> searchable;
};

Data make_data() {
  auto rng = test::test_rng("search-gpu");
  Data x{3 * kSearchTile + 1001, 384, 37, {}, {}, {}};
  x.corpus = test::random_vector(static_cast<size_t>(x.n * x.d), rng);
  x.queries = test::random_vector(static_cast<size_t>(x.nq * x.d), rng);
  auto unit = [d = x.d](float* v) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double{v[j]} * v[j];
    for (int64_t j = 0; j < d; ++j) v[j] = static_cast<float>(v[j] / std::sqrt(s));
  };
  for (int64_t r = 0; r < x.n; ++r) unit(x.corpus.data() + r * x.d);
  for (int64_t i = 0; i < x.nq; ++i) unit(x.queries.data() + i * x.d);
  x.searchable.assign(static_cast<size_t>(x.n), 1);
  for (int64_t r = 0; r < x.n; r += 101) x.searchable[static_cast<size_t>(r)] = 0;
  return x;
}

template <typename Searcher>
TopkLists sharded(const Data& x, int k, int size) {
  std::vector<TopkLists> parts;
  for (int r = 0; r < size; ++r) {
    const auto [b, e] = shard_rows(x.n, r, size);
    MemoryCorpusShard s;
    s.data = x.corpus.data();
    s.begin = b;
    s.end = e;
    s.rows = x.n;
    s.dim = x.d;
    s.searchable.assign(x.searchable.begin() + b, x.searchable.begin() + e);
    Searcher t(x.queries.data(), x.nq, x.d, k);
    search_shard(s, t);
    parts.push_back(t.result());
  }
  return merge_topk(parts, k);
}

TEST(SearchGpu, TiledSearchMatchesCpuReference) {
  FLURRY_REQUIRE_GPU();
  const Data x = make_data();
  for (int k : {1, 100}) {
    const TopkLists cpu = sharded<CpuTileSearcher>(x, k, 1);
    const TopkLists gpu = sharded<GpuTileSearcher>(x, k, 1);
    int64_t differ = 0;
    for (size_t j = 0; j < cpu.rows.size(); ++j) {
      ASSERT_GE(gpu.rows[j], 0);
      ASSERT_TRUE(x.searchable[static_cast<size_t>(gpu.rows[j])]);
      // Rows may differ only where two scores are within rounding of each other: the slot's scores
      // agree either way.
      EXPECT_NEAR(gpu.scores[j], cpu.scores[j], 2e-6) << "slot " << j << ": rows " << gpu.rows[j] << " / " << cpu.rows[j];
      differ += gpu.rows[j] != cpu.rows[j] ? 1 : 0;
    }
    EXPECT_LE(differ, static_cast<int64_t>(cpu.rows.size() / 50)) << "k " << k;
    const TopkLists gpu3 = sharded<GpuTileSearcher>(x, k, 3);
    EXPECT_EQ(gpu3.rows, gpu.rows) << "k " << k;
    EXPECT_TRUE(same_bits(gpu3.scores, gpu.scores)) << "k " << k;
  }
}

TEST(SearchGpu, RefusesKAboveTheKernelLimit) {
  FLURRY_REQUIRE_GPU();
  const std::vector<float> q(8, 0.5f);
  EXPECT_THROW(GpuTileSearcher(q.data(), 1, 8, kRetrievalTopKMax + 1), Error);
}

}  // namespace
}  // namespace flurry::bert
