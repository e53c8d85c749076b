#include "runtime/dist/blobs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "runtime/check.h"
#include "runtime/dist/records.h"

namespace fs = std::filesystem;

namespace flurry::dist {

namespace {

void pread_all(int fd, char* out, size_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, out, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    FLURRY_CHECK(r > 0, "read of " << path << " at " << offset << " failed: "
                                   << (r == 0 ? "unexpected end of file" : std::strerror(errno)));
    out += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

// The data object of a record, or null when it has none or it is malformed.
const nlohmann::json* data_of(const nlohmann::json& rec) {
  if (!rec.is_object() || !rec.contains("data")) return nullptr;
  const auto& d = rec["data"];
  if (!d.is_object() || !d.contains("file") || !d["file"].is_string() || !d.contains("offset") ||
      !d["offset"].is_number_unsigned() || !d.contains("bytes") || !d["bytes"].is_number_unsigned() ||
      !d.contains("fnv") || !d["fnv"].is_number_unsigned()) {
    return nullptr;
  }
  const std::string f = d["file"].get<std::string>();
  if (f.empty() || f.find('/') != std::string::npos) return nullptr;
  return &d;
}

constexpr size_t kCopyBlock = 8u << 20;

}  // namespace

std::string blob_shard_name(int rank) { return "rank-" + std::to_string(rank) + ".bin"; }

uint64_t fnv1a64(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

BlobWriter::BlobWriter(std::string path, int64_t sync_bytes) : path_(std::move(path)), sync_bytes_(sync_bytes) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  FLURRY_CHECK(fd_ >= 0, "cannot open data shard " << path_ << ": " << std::strerror(errno));
  struct stat st {};
  FLURRY_CHECK(::fstat(fd_, &st) == 0, "stat " << path_ << ": " << std::strerror(errno));
  // Bytes past the last record of an earlier run are garbage nobody points at: appending after them
  // is harmless, and records name their own offsets.
  end_ = static_cast<uint64_t>(st.st_size);
}

BlobWriter::~BlobWriter() {
  if (fd_ >= 0) {
    (void)::fsync(fd_);
    ::close(fd_);
  }
}

nlohmann::json BlobWriter::append(const void* data, size_t n, const std::string& file_name) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t offset = end_;
  write_fd_fully(fd_, static_cast<const char*>(data), n, path_);
  end_ += n;
  unsynced_ += static_cast<int64_t>(n);
  if (unsynced_ >= sync_bytes_) {
    FLURRY_CHECK(::fsync(fd_) == 0, "fsync " << path_ << ": " << std::strerror(errno));
    unsynced_ = 0;
  }
  return nlohmann::json{{"file", file_name}, {"offset", offset}, {"bytes", static_cast<uint64_t>(n)},
                        {"fnv", fnv1a64(data, n)}};
}

void BlobWriter::sync() {
  std::lock_guard<std::mutex> lock(mutex_);
  FLURRY_CHECK(::fsync(fd_) == 0, "fsync " << path_ << ": " << std::strerror(errno));
  unsynced_ = 0;
}

bool blob_intact(const std::string& output_dir, const nlohmann::json& record) {
  if (!record.is_object() || !record.contains("data")) return true;
  const nlohmann::json* d = data_of(record);
  if (d == nullptr) return false;
  const std::string path = shard_dir(output_dir) + "/" + (*d)["file"].get<std::string>();
  const uint64_t offset = (*d)["offset"].get<uint64_t>(), bytes = (*d)["bytes"].get<uint64_t>();
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec || offset + bytes > size) return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::vector<char> buf(std::min<uint64_t>(bytes, kCopyBlock));
  uint64_t h = 1469598103934665603ull, done = 0;
  bool ok = true;
  try {
    while (done < bytes) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes - done, buf.size()));
      pread_all(fd, buf.data(), n, offset + done, path);
      h = fnv1a64(buf.data(), n, h);
      done += n;
    }
  } catch (const Error&) {
    ok = false;
  }
  ::close(fd);
  return ok && h == (*d)["fnv"].get<uint64_t>();
}

uint64_t merge_blobs(const std::string& output_dir, const std::string& name,
                     const std::function<std::string(uint64_t)>& header,
                     std::vector<nlohmann::ordered_json>& records) {
  uint64_t total = 0;
  for (const auto& rec : records) {
    if (rec.contains("data") && rec["status"] == "ok") total += rec["data"]["bytes"].get<uint64_t>();
  }
  const std::string path = output_dir + "/" + name;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FLURRY_CHECK(out >= 0, "cannot create " << tmp << ": " << std::strerror(errno));
  std::vector<char> buf(kCopyBlock);
  std::string open_name;
  int in = -1;
  try {
    const std::string head = header ? header(total) : std::string();
    write_fd_fully(out, head.data(), head.size(), tmp);
    uint64_t at = 0;
    for (auto& rec : records) {
      if (!rec.contains("data")) continue;
      const nlohmann::json d = rec["data"];
      rec.erase("data");
      if (rec["status"] != "ok") continue;
      const std::string file = d["file"].get<std::string>();
      if (file != open_name) {
        if (in >= 0) ::close(in);
        open_name = file;
        in = ::open((shard_dir(output_dir) + "/" + file).c_str(), O_RDONLY | O_CLOEXEC);
        FLURRY_CHECK(in >= 0, "cannot open data shard " << file << ": " << std::strerror(errno));
      }
      const uint64_t offset = d["offset"].get<uint64_t>(), bytes = d["bytes"].get<uint64_t>();
      uint64_t h = 1469598103934665603ull;
      for (uint64_t done = 0; done < bytes;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes - done, buf.size()));
        pread_all(in, buf.data(), n, offset + done, file);
        h = fnv1a64(buf.data(), n, h);
        write_fd_fully(out, buf.data(), n, tmp);
        done += n;
      }
      FLURRY_CHECK(h == d["fnv"].get<uint64_t>(), "the data of input '" << rec["id"].get<std::string>() << "' in "
                                                     << file << " is damaged (checksum mismatch): rerun with --resume");
      rec["data_offset"] = at;
      rec["data_bytes"] = bytes;
      at += bytes;
    }
    FLURRY_CHECK(::fsync(out) == 0, "fsync " << tmp << ": " << std::strerror(errno));
  } catch (...) {
    if (in >= 0) ::close(in);
    ::close(out);
    ::unlink(tmp.c_str());
    throw;
  }
  if (in >= 0) ::close(in);
  ::close(out);
  FLURRY_CHECK(::rename(tmp.c_str(), path.c_str()) == 0,
               "rename " << tmp << " -> " << path << ": " << std::strerror(errno));
  return total;
}

}  // namespace flurry::dist
