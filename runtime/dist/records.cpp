#include "runtime/dist/records.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/check.h"
#include "runtime/log.h"

namespace fs = std::filesystem;

namespace flurry::dist {

namespace {

// Cuts the file after its last newline: what follows it is a record a killed writer never finished.
void cut_torn_tail(int fd, const std::string& path) {
  struct stat st {};
  FLURRY_CHECK(::fstat(fd, &st) == 0, "stat " << path << ": " << std::strerror(errno));
  off_t end = st.st_size;
  char buf[4096];
  while (end > 0) {
    const off_t start = std::max<off_t>(0, end - static_cast<off_t>(sizeof(buf)));
    const ssize_t n = ::pread(fd, buf, static_cast<size_t>(end - start), start);
    FLURRY_CHECK(n == end - start, "read " << path << ": " << std::strerror(errno));
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (buf[i] == '\n') {
        const off_t keep = start + i + 1;
        if (keep != st.st_size) {
          LOG_WARN(path << ": dropping " << (st.st_size - keep) << " bytes of an unfinished record");
          FLURRY_CHECK(::ftruncate(fd, keep) == 0, "truncate " << path << ": " << std::strerror(errno));
        }
        return;
      }
    }
    end = start;
  }
  if (st.st_size > 0) {
    LOG_WARN(path << ": dropping " << st.st_size << " bytes of an unfinished record");
    FLURRY_CHECK(::ftruncate(fd, 0) == 0, "truncate " << path << ": " << std::strerror(errno));
  }
}

bool valid_record(const Json& j) {
  return j.is_object() && j.contains("id") && j["id"].is_string() && j.contains("status") &&
         j["status"].is_string() && (j["status"] == "ok" || j["status"] == "error");
}

}  // namespace

void write_fd_fully(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    FLURRY_CHECK(w > 0, "write to " << path << " failed: " << std::strerror(errno));
    data += w;
    n -= static_cast<size_t>(w);
  }
}

std::string shard_dir(const std::string& output_dir) { return output_dir + "/shards"; }
std::string shard_path(const std::string& output_dir, int rank) {
  return shard_dir(output_dir) + "/rank-" + std::to_string(rank) + ".jsonl";
}

ShardWriter::ShardWriter(std::string path, int sync_every)
    : path_(std::move(path)), sync_every_(std::max(1, sync_every)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  FLURRY_CHECK(fd_ >= 0, "cannot open shard " << path_ << ": " << std::strerror(errno));
  cut_torn_tail(fd_, path_);
}

ShardWriter::~ShardWriter() {
  if (fd_ >= 0) {
    (void)::fsync(fd_);
    ::close(fd_);
  }
}

void ShardWriter::append(const Json& record) {
  // One write per record: a kill leaves at most one torn line, which readers and cut_torn_tail drop.
  std::string line = record.dump(-1, ' ', false, Json::error_handler_t::replace);
  line += '\n';
  std::lock_guard<std::mutex> lock(mutex_);
  write_fd_fully(fd_, line.data(), line.size(), path_);
  if (++unsynced_ >= sync_every_) {
    FLURRY_CHECK(::fsync(fd_) == 0, "fsync " << path_ << ": " << std::strerror(errno));
    unsynced_ = 0;
  }
}

void ShardWriter::sync() {
  std::lock_guard<std::mutex> lock(mutex_);
  FLURRY_CHECK(::fsync(fd_) == 0, "fsync " << path_ << ": " << std::strerror(errno));
  unsynced_ = 0;
}

std::vector<Json> read_records(const std::string& path) {
  std::vector<Json> out;
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) return out;
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  while (pos < content.size()) {
    const size_t nl = content.find('\n', pos);
    if (nl == std::string::npos) break;  // torn last line
    Json j = Json::parse(content.begin() + static_cast<std::ptrdiff_t>(pos),
                         content.begin() + static_cast<std::ptrdiff_t>(nl), nullptr, false);
    if (!j.is_discarded() && valid_record(j)) out.push_back(std::move(j));
    pos = nl + 1;
  }
  return out;
}

std::unordered_map<std::string, Json> load_records(const std::string& output_dir,
                                                   const std::function<bool(const Json&)>& sound) {
  std::unordered_map<std::string, Json> by_id;
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::is_directory(shard_dir(output_dir), ec)) {
    for (const auto& e : fs::directory_iterator(shard_dir(output_dir), ec)) {
      if (e.path().extension() == ".jsonl") files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  files.push_back(output_dir + "/results.jsonl");
  for (const auto& f : files) {
    for (auto& rec : read_records(f)) {
      const std::string id = rec["id"].get<std::string>();
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        by_id.emplace(id, std::move(rec));
      } else if (it->second["status"] != "ok" && rec["status"] == "ok") {
        it->second = std::move(rec);
      } else if (sound && rec["status"] == "ok" && !sound(it->second) && sound(rec)) {
        it->second = std::move(rec);
      }
    }
  }
  return by_id;
}

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FLURRY_CHECK(fd >= 0, "cannot create " << tmp << ": " << std::strerror(errno));
  try {
    write_fd_fully(fd, content.data(), content.size(), tmp);
    FLURRY_CHECK(::fsync(fd) == 0, "fsync " << tmp << ": " << std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  FLURRY_CHECK(::rename(tmp.c_str(), path.c_str()) == 0,
               "rename " << tmp << " -> " << path << ": " << std::strerror(errno));
  // Make the rename itself durable.
  const std::string dir = fs::path(path).parent_path().empty() ? "." : fs::path(path).parent_path().string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace flurry::dist
