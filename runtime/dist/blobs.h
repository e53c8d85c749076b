// Binary per-item outputs (an embeddings block, a score matrix) that the runner assembles into one
// file in input order, exactly once, after the job.
//
// Each rank appends an item's bytes to OUTPUT_DIR/shards/rank-K.bin BEFORE it writes the item's
// record, and the record says where they are: "data": {"file": "rank-K.bin", "offset", "bytes",
// "fnv"}. The data file is fsynced after every `sync_bytes` bytes (and at the end) rather than per
// item, so small items do not pay an fsync each; a record whose bytes did not all reach the data
// file (a crash between the two writes, a power loss before the sync) is found on resume by its
// range and checksum and the item is done again. Records of errors carry no data.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace flurry::dist {

struct WorkItem;

std::string blob_shard_name(int rank);  // "rank-3.bin"
uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 1469598103934665603ull);

class BlobWriter {
 public:
  BlobWriter(std::string path, int64_t sync_bytes);
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Appends `n` bytes and returns the record's "data" object. Thread-safe.
  nlohmann::json append(const void* data, size_t n, const std::string& file_name);
  void sync();

 private:
  std::string path_;
  int fd_ = -1;
  int64_t sync_bytes_;
  int64_t unsynced_ = 0;
  uint64_t end_ = 0;
  std::mutex mutex_;
};

// True when the record's "data" range lies inside its shard file and matches its checksum
// (always true for a record without data). Reads the bytes: use on the records of one job only.
bool blob_intact(const std::string& output_dir, const nlohmann::json& record);

// Rank 0 after the job: writes OUTPUT_DIR/<name> as header(total data bytes) followed by the data of
// every ok record in input order (streamed, checksum verified, atomic rename). `records` are the
// merged records in input order; each one with data gets "data_offset" (from the start of the data,
// after the header) and "data_bytes" in place of "data". Returns the total data bytes.
uint64_t merge_blobs(const std::string& output_dir, const std::string& name,
                     const std::function<std::string(uint64_t)>& header, std::vector<nlohmann::ordered_json>& records);

}  // namespace flurry::dist
