#include "models/bert/search.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "io/npy.h"
#include "runtime/check.h"
#include "runtime/gemm.h"

namespace flurry::bert {

TopkLists::TopkLists(int64_t n_queries, int k_best)
    : nq(n_queries),
      k(k_best),
      scores(static_cast<size_t>(n_queries * k_best), -std::numeric_limits<float>::infinity()),
      rows(static_cast<size_t>(n_queries * k_best), -1) {}

std::pair<int64_t, int64_t> shard_rows(int64_t n, int rank, int size) {
  FLURRY_CHECK(size > 0 && rank >= 0 && rank < size && n >= 0, "shard_rows: rank " << rank << " of " << size);
  // The first n % size shards have one row more.
  const int64_t base = n / size, extra = n % size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

namespace {

// Inserts (s, r) into the sorted list [list, list + k) when it belongs there. Empty slots (row -1)
// sit at the end and lose to any candidate.
void offer(float* ls, int64_t* lr, int k, float s, int64_t r) {
  if (s == 0.0f) s = 0.0f;  // -0 ties with +0 and is kept as +0, as the GPU key does
  const bool full = lr[k - 1] >= 0;
  if (full && !topk_before(s, r, ls[k - 1], lr[k - 1])) return;
  int at = k - 1;
  while (at > 0 && (lr[at - 1] < 0 || topk_before(s, r, ls[at - 1], lr[at - 1]))) {
    ls[at] = ls[at - 1];
    lr[at] = lr[at - 1];
    --at;
  }
  ls[at] = s;
  lr[at] = r;
}

}  // namespace

void merge_tile_cpu(const float* scores, int64_t ld, int64_t cols, int64_t base, const uint8_t* valid,
                    TopkLists* running) {
  const int k = running->k;
  for (int64_t q = 0; q < running->nq; ++q) {
    float* ls = running->scores.data() + q * k;
    int64_t* lr = running->rows.data() + q * k;
    const float* srow = scores + q * ld;
    for (int64_t j = 0; j < cols; ++j) {
      if ((valid != nullptr && valid[j] == 0) || std::isnan(srow[j])) continue;
      offer(ls, lr, k, srow[j], base + j);
    }
  }
}

TopkLists merge_topk(const std::vector<TopkLists>& parts, int k) {
  FLURRY_CHECK(!parts.empty() && k > 0, "merge_topk: nothing to merge");
  TopkLists out(parts[0].nq, k);
  for (const TopkLists& p : parts) {
    FLURRY_CHECK(p.nq == out.nq, "merge_topk: lists of " << p.nq << " and " << out.nq << " queries");
    for (int64_t q = 0; q < p.nq; ++q) {
      for (int i = 0; i < p.k; ++i) {
        const size_t at = static_cast<size_t>(q * p.k + i);
        if (p.rows[at] < 0) break;
        offer(out.scores.data() + q * k, out.rows.data() + q * k, k, p.scores[at], p.rows[at]);
      }
    }
  }
  return out;
}

CpuTileSearcher::CpuTileSearcher(const float* queries, int64_t nq, int64_t d, int k)
    : queries_(queries, queries + nq * d), scores_(static_cast<size_t>(nq * kSearchTile)), nq_(nq), d_(d), best_(nq, k) {
  FLURRY_CHECK(nq >= 0 && d > 0 && k > 0, "search: " << nq << " queries of dim " << d << ", k " << k);
}

void CpuTileSearcher::add_tile(int64_t base, const float* tile, const uint8_t* valid) {
  if (nq_ == 0) return;
  // scores [nq, T] = queries [nq, d] x tile [T, d]^T: the same shape for every tile of every rank.
  GemmArgs g = gemm_dense(nq_, kSearchTile, d_, false, true, DType::F32, DType::F32);
  g.a = queries_.data();
  g.b = tile;
  g.c = scores_.data();
  gemm_cpu(g);
  merge_tile_cpu(scores_.data(), kSearchTile, kSearchTile, base, valid, &best_);
}

void search_shard(const CorpusShard& shard, TileSearcher& s) {
  FLURRY_CHECK(0 <= shard.begin && shard.begin <= shard.end && shard.end <= shard.rows && shard.dim > 0,
               "search: shard [" << shard.begin << ", " << shard.end << ") of " << shard.rows << " rows");
  FLURRY_CHECK(static_cast<int64_t>(shard.searchable.size()) == shard.end - shard.begin,
               "search: " << shard.searchable.size() << " searchable flags for " << shard.end - shard.begin << " rows");
  std::vector<float> tile(static_cast<size_t>(kSearchTile * shard.dim));
  std::vector<uint8_t> valid(static_cast<size_t>(kSearchTile));
  for (int64_t base = shard.begin / kSearchTile * kSearchTile; base < shard.end; base += kSearchTile) {
    const int64_t first = std::max(base, shard.begin), last = std::min(base + kSearchTile, shard.end);
    std::fill(tile.begin(), tile.end(), 0.0f);
    std::fill(valid.begin(), valid.end(), uint8_t{0});
    shard.read_rows(first, last, tile.data() + (first - base) * shard.dim);
    for (int64_t r = first; r < last; ++r) {
      valid[static_cast<size_t>(r - base)] = shard.searchable[static_cast<size_t>(r - shard.begin)];
    }
    // A row that is not searchable is zeros, whatever the file holds.
    for (int64_t j = 0; j < kSearchTile; ++j) {
      if (valid[static_cast<size_t>(j)] == 0) {
        std::fill_n(tile.begin() + j * shard.dim, shard.dim, 0.0f);
      }
    }
    s.add_tile(base, tile.data(), valid.data());
  }
}

void MemoryCorpusShard::read_rows(int64_t first, int64_t last, float* tile) const {
  if (last > first) std::memcpy(tile, data + first * dim, static_cast<size_t>((last - first) * dim) * sizeof(float));
}

void NpyCorpusShard::read_rows(int64_t first, int64_t last, float* tile) const {
  NpyInfo info;
  info.dtype = fp16 ? NpyDtype::kFloat16 : NpyDtype::kFloat32;
  info.rows = rows;
  info.cols = dim;
  info.data_offset = data_offset;
  read_npy_rows(path, info, first, last, tile);
}

NpyCorpusShard open_npy_shard(const std::string& path, int64_t begin, int64_t end, std::vector<uint8_t> searchable) {
  const NpyInfo info = read_npy_info(path);
  NpyCorpusShard s;
  s.path = path;
  s.data_offset = info.data_offset;
  s.fp16 = info.dtype == NpyDtype::kFloat16;
  s.rows = info.rows;
  s.dim = info.cols;
  s.begin = begin;
  s.end = end;
  s.searchable = std::move(searchable);
  FLURRY_CHECK(0 <= begin && begin <= end && end <= info.rows,
               path << ": shard [" << begin << ", " << end << ") of " << info.rows << " rows");
  return s;
}

}  // namespace flurry::bert
