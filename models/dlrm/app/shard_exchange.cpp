#include "models/dlrm/app/shard_exchange.h"

#include <cstring>

#include "runtime/check.h"

namespace flurry::dlrm {

namespace {

constexpr int kMeta = 3;  // samples, indices for the receiver, done

}  // namespace

ShardExchange::ShardExchange(const DlrmConfig& cfg, const TablePlan& plan, dist::Communicator& control,
                             dist::Communicator& data, PoolFn pool, ShardDataMemory mem)
    : cfg_(cfg), plan_(plan), control_(control), data_(data), pool_(std::move(pool)), mem_(std::move(mem)) {
  rank_ = control_.rank();
  ranks_ = control_.size();
  FLURRY_CHECK(data_.size() == ranks_ && data_.rank() == rank_,
               "shard exchange: the data communicator (rank " << data_.rank() << " of " << data_.size()
                                                              << ") is not the control one's (rank " << rank_ << " of "
                                                              << ranks_ << ")");
  FLURRY_CHECK(plan_.ranks == ranks_, "shard exchange: a table plan for " << plan_.ranks << " ranks in a job of " << ranks_);
  FLURRY_CHECK(plan_.owner.size() == cfg_.tables.size(), "shard exchange: the plan has " << plan_.owner.size()
                                                                                          << " tables, the model " << cfg_.tables.size());
  for (const BagConfig& b : cfg_.bags) {
    bag_col_.push_back(pooled_width_);
    pooled_width_ += cfg_.tables[static_cast<size_t>(b.table)].dim;
  }
  owned_.resize(static_cast<size_t>(ranks_));
  owned_width_.assign(static_cast<size_t>(ranks_), 0);
  owned_col_.resize(static_cast<size_t>(ranks_));
  for (int r = 0; r < ranks_; ++r) {
    owned_[static_cast<size_t>(r)] = plan_.bags_of(cfg_, r);
    for (int64_t b : owned_[static_cast<size_t>(r)]) {
      owned_col_[static_cast<size_t>(r)].push_back(owned_width_[static_cast<size_t>(r)]);
      owned_width_[static_cast<size_t>(r)] += cfg_.tables[static_cast<size_t>(cfg_.bags[static_cast<size_t>(b)].table)].dim;
    }
  }
  if (!mem_.copy2d) {
    FLURRY_CHECK(mem_.where == Where::Host, "shard exchange: device data memory needs a copy2d");
    mem_.copy2d = [](void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows) {
      for (size_t i = 0; i < rows; ++i) {
        std::memcpy(static_cast<char*>(dst) + i * dpitch, static_cast<const char*>(src) + i * spitch, width);
      }
    };
  }
}

void* ShardExchange::data_buffer(int slot, size_t bytes) {
  if (mem_.buffer) return mem_.buffer(slot, bytes);
  std::vector<char>& b = host_buf_[slot];
  if (b.size() < bytes) b.resize(bytes);
  return b.data();
}

bool ShardExchange::step(const DlrmBatch* batch, bool done, void* pooled, int64_t ld_pooled) {
  const int64_t n = batch ? batch->n : 0;
  FLURRY_CHECK(!(done && n > 0), "shard exchange: a rank that is done sent " << n << " samples");
  const size_t R = static_cast<size_t>(ranks_);
  if (n > 0) {
    FLURRY_CHECK(static_cast<int64_t>(batch->offsets.size()) == cfg_.num_bags() * n + 1,
                 "shard exchange: a batch of " << n << " samples has " << batch->offsets.size()
                                               << " offsets (the model has " << cfg_.num_bags() << " bags)");
    FLURRY_CHECK(pooled != nullptr && ld_pooled >= pooled_width_,
                 "shard exchange: pooled rows of stride " << ld_pooled << " for " << pooled_width_ << " values");
  }
  ++steps_;
  // 1. What each rank sends each other rank.
  auto bag_indices = [&](int64_t b) -> int64_t {
    return batch->offsets[static_cast<size_t>(b * n + n)] - batch->offsets[static_cast<size_t>(b * n)];
  };
  send_meta_.assign(R * kMeta, 0);
  recv_meta_.assign(R * kMeta, 0);
  for (size_t r = 0; r < R; ++r) {
    int64_t idx = 0;
    if (n > 0) {
      for (int64_t b : owned_[r]) idx += bag_indices(b);
    }
    send_meta_[r * kMeta] = n;
    send_meta_[r * kMeta + 1] = idx;
    send_meta_[r * kMeta + 2] = done ? 1 : 0;
  }
  control_.all_to_all(send_meta_.data(), recv_meta_.data(), kMeta, DType::I64, Where::Host);
  bool all_done = true;
  for (size_t r = 0; r < R; ++r) all_done = all_done && recv_meta_[r * kMeta + 2] != 0;
  if (all_done) return true;

  // 2. Lengths then indices of the bags each owner pools.
  std::vector<size_t> sc(R), sd(R), rc(R), rd(R);
  send_idx_.clear();
  for (size_t r = 0; r < R; ++r) {
    sd[r] = send_idx_.size();
    if (n > 0) {
      for (int64_t b : owned_[r]) {
        const int32_t* off = batch->offsets.data() + b * n;
        for (int64_t i = 0; i < n; ++i) send_idx_.push_back(off[i + 1] - off[i]);
      }
      for (int64_t b : owned_[r]) {
        const int32_t* off = batch->offsets.data() + b * n;
        send_idx_.insert(send_idx_.end(), batch->indices.begin() + off[0], batch->indices.begin() + off[n]);
      }
    }
    sc[r] = send_idx_.size() - sd[r];
  }
  const std::vector<int64_t>& mine = owned_[static_cast<size_t>(rank_)];
  const int64_t my_bags = static_cast<int64_t>(mine.size());
  size_t total = 0;
  for (size_t r = 0; r < R; ++r) {
    rd[r] = total;
    rc[r] = static_cast<size_t>(recv_meta_[r * kMeta] * my_bags + recv_meta_[r * kMeta + 1]);
    total += rc[r];
  }
  recv_idx_.resize(std::max<size_t>(total, 1));
  if (send_idx_.empty()) send_idx_.push_back(0);  // a valid pointer; no count refers to it
  control_.all_to_allv(send_idx_.data(), sc, sd, recv_idx_.data(), rc, rd, DType::I32, Where::Host);

  // 3. Pool this rank's bags for every source: one [samples, own width] block per source.
  const size_t es = dtype_size(mem_.type);
  const int64_t my_width = owned_width_[static_cast<size_t>(rank_)];
  std::vector<size_t> psc(R), psd(R), prc(R), prd(R);
  size_t pool_total = 0, recv_total = 0;
  for (size_t r = 0; r < R; ++r) {
    psd[r] = pool_total;
    psc[r] = static_cast<size_t>(recv_meta_[r * kMeta] * my_width);
    pool_total += psc[r];
    prd[r] = recv_total;
    prc[r] = static_cast<size_t>(n * owned_width_[r]);
    recv_total += prc[r];
  }
  char* pool_send = static_cast<char*>(data_buffer(0, std::max<size_t>(pool_total, 1) * es));
  char* pool_recv = static_cast<char*>(data_buffer(1, std::max<size_t>(recv_total, 1) * es));
  for (size_t r = 0; r < R; ++r) {
    const int64_t m = recv_meta_[r * kMeta];
    if (m == 0 || my_bags == 0) continue;
    const int32_t* lengths = recv_idx_.data() + rd[r];
    const int32_t* idx = lengths + m * my_bags;
    for (int64_t k = 0; k < my_bags; ++k) {
      offsets_.resize(static_cast<size_t>(m + 1));
      offsets_[0] = 0;
      for (int64_t i = 0; i < m; ++i) offsets_[static_cast<size_t>(i + 1)] = offsets_[static_cast<size_t>(i)] + lengths[k * m + i];
      char* out = pool_send + (psd[r] + static_cast<size_t>(owned_col_[static_cast<size_t>(rank_)][static_cast<size_t>(k)])) * es;
      pool_(mine[static_cast<size_t>(k)], offsets_.data(), idx, m, out, my_width);
      idx += offsets_[static_cast<size_t>(m)];
    }
  }

  // 4. The pooled rows back to their samples' ranks.
  data_.all_to_allv(pool_send, psc, psd, pool_recv, prc, prd, mem_.type, mem_.where, mem_.stream);

  // 5. Into [n, ld_pooled], each bag at its column.
  if (n == 0) return false;
  for (size_t o = 0; o < R; ++o) {
    const int64_t w = owned_width_[o];
    for (size_t k = 0; k < owned_[o].size(); ++k) {
      const int64_t b = owned_[o][k];
      const int64_t dim = cfg_.tables[static_cast<size_t>(cfg_.bags[static_cast<size_t>(b)].table)].dim;
      mem_.copy2d(static_cast<char*>(pooled) + static_cast<size_t>(bag_col_[static_cast<size_t>(b)]) * es,
                  static_cast<size_t>(ld_pooled) * es, pool_recv + (prd[o] + static_cast<size_t>(owned_col_[o][k])) * es,
                  static_cast<size_t>(w) * es, static_cast<size_t>(dim) * es, static_cast<size_t>(n));
    }
  }
  return false;
}

void ShardExchange::drain() {
  while (!step(nullptr, true, nullptr, 0)) {
  }
}

}  // namespace flurry::dlrm
