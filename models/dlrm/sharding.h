// Table-wise sharding of a DLRM's embedding tables over the ranks of a job, for tables that do not
// fit one device (or one host): each rank owns whole tables, binds only those, and pools every bag
// over its tables for the samples of all ranks (app/shard_exchange.h moves indices and pooled
// vectors). Row-wise sharding (one table over several ranks) is not done: the MLPerf Terabyte
// tables, the largest case, are 40M x 128 at most, 10 GiB in fp16, within one GPU.
//
// The plan is greedy by bytes (largest table first, each to the rank holding the fewest bytes so
// far, ties to the lower rank and the lower table index): deterministic, so every rank computes the
// same plan from the config without talking, and within the largest table of the best balance.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "models/dlrm/config.h"

namespace flurry::dlrm {

struct TablePlan {
  int ranks = 1;
  int64_t bytes_per_value = 4;          // what the sizes count (4: fp32 CPU tables, 2: fp16 on a GPU)
  std::vector<int> owner;               // per config table
  std::vector<int64_t> rank_bytes;      // per rank: bytes of the tables it owns

  int owner_of_bag(const DlrmConfig& c, int64_t bag) const { return owner[static_cast<size_t>(c.bags[static_cast<size_t>(bag)].table)]; }
  // One flag per config table: does `rank` own it (what load_dlrm_cpu binds there).
  std::vector<bool> owned_by(int rank) const;
  // The bags whose table `rank` owns, in bag order.
  std::vector<int64_t> bags_of(const DlrmConfig& c, int rank) const;
  // "26 tables over 3 ranks: rank 0 9 tables 1.2 MiB (C3 C7 ...), ..."
  std::string describe(const DlrmConfig& c) const;
  // For the manifest: ranks, per rank its tables and bytes.
  Json to_json(const DlrmConfig& c) const;
};

TablePlan plan_tables(const DlrmConfig& c, int ranks, int64_t bytes_per_value = 4);

}  // namespace flurry::dlrm
