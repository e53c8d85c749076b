// Result records on disk: one JSON object per line, per rank shard, written so that a crash at any
// moment never leaves a record that a later run trusts.
//
// A record is {"index", "id", "status": "ok"|"error", ["error"], result fields..., "rank"}. The
// writer appends whole lines with one write(2) each and fsyncs every `sync_every` records; on open
// it cuts a torn last line (no newline) left by a killed run, so that appending never glues a new
// record onto half of an old one. The reader skips a last line without a newline and any line that
// is not a JSON object with a string id and a status.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace flurry::dist {

using Json = nlohmann::json;

class ShardWriter {
 public:
  ShardWriter(std::string path, int sync_every);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Thread-safe; the record is on disk (page cache) when this returns, durable after sync().
  void append(const Json& record);
  void sync();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  int sync_every_ = 1;
  int unsynced_ = 0;
  std::mutex mutex_;
};

// The trustworthy records of a file (empty when it does not exist).
std::vector<Json> read_records(const std::string& path);

// Every record under `output_dir` (shards/*.jsonl, then results.jsonl), one per id: an "ok"
// record wins over an "error" one, otherwise the first seen; when an id has several ok records and
// `sound` is given, a later one replaces an earlier one that is not sound (an item done again on
// resume because its data was damaged). `sound` runs only on such duplicates.
std::unordered_map<std::string, Json> load_records(const std::string& output_dir,
                                                   const std::function<bool(const Json&)>& sound = nullptr);

// Writes `content` to `path` through a temporary file in the same directory, fsync and rename, so
// readers see the old file or the new one, never a part.
void write_file_atomic(const std::string& path, const std::string& content);

// write(2) until all `n` bytes are written (EINTR retried); throws naming `path` on failure.
void write_fd_fully(int fd, const char* data, size_t n, const std::string& path);

std::string shard_dir(const std::string& output_dir);
std::string shard_path(const std::string& output_dir, int rank);

}  // namespace flurry::dist
