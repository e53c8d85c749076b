#include "io/writers.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "runtime/check.h"

namespace flurry {

namespace {

namespace fs = std::filesystem;

// Python's round(): nearest integer, ties to even. Spelled out rather than std::nearbyint so that
// a changed floating-point rounding mode cannot change the output.
int64_t round_half_even(double x) {
  const double f = std::floor(x);
  const double diff = x - f;
  double r = f;
  if (diff > 0.5 || (diff == 0.5 && std::fmod(f, 2.0) != 0.0)) r = f + 1.0;
  return static_cast<int64_t>(r);
}

int64_t to_millis(double seconds) {
  // The upper bound (31 000 years) only keeps the conversion to int64 defined.
  FLURRY_CHECK(std::isfinite(seconds) && seconds >= 0.0 && seconds < 1e12,
               "timestamp must be a non-negative number of seconds, got " << seconds);
  return round_half_even(seconds * 1000.0);
}

// Python's str.strip() for the whitespace a decoded segment carries (ASCII spaces, tabs, newlines).
std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return std::string();
  const size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

// Subtitle text: stripped, and "-->" defused so it cannot be read as a cue timing line.
std::string cue_text(const Segment& s) { return replace_all(strip(s.text), "-->", "->"); }

void write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) FLURRY_FAIL(path << ": write failed: " << std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

// Temporary names are unique per process and call, so ranks or threads writing the same basename
// into a shared folder never write into one another's file.
void write_atomically(const std::string& path, const std::string& data) {
  static std::atomic<unsigned> counter{0};
  const fs::path p(path);
  const std::string tmp = (p.parent_path() / ("." + p.filename().string() + ".tmp." + std::to_string(::getpid()) +
                                              "." + std::to_string(counter++)))
                              .string();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) FLURRY_FAIL(tmp << ": cannot create: " << std::strerror(errno));
  try {
    write_all(fd, data, tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    FLURRY_FAIL(tmp << ": close failed: " << std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    FLURRY_FAIL(path << ": cannot rename " << tmp << " into place: " << std::strerror(err));
  }
}

std::string format_one(const Transcript& t, const std::string& fmt) {
  if (fmt == "txt") return format_txt(t);
  if (fmt == "srt") return format_srt(t);
  if (fmt == "vtt") return format_vtt(t);
  if (fmt == "tsv") return format_tsv(t);
  if (fmt == "json") return format_json(t);
  std::ostringstream os;
  os << "unknown output format '" << fmt << "' (choose from";
  for (const auto& f : transcript_formats()) os << " " << f;
  os << " all)";
  throw Error(os.str());
}

}  // namespace

std::string format_timestamp(double seconds, bool always_include_hours, char decimal_marker) {
  int64_t ms = to_millis(seconds);
  const int64_t hours = ms / 3600000;
  ms -= hours * 3600000;
  const int64_t minutes = ms / 60000;
  ms -= minutes * 60000;
  const int64_t secs = ms / 1000;
  ms -= secs * 1000;
  char buf[64];
  if (always_include_hours || hours > 0) {
    std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld%c%03lld", static_cast<long long>(hours),
                  static_cast<long long>(minutes), static_cast<long long>(secs), decimal_marker,
                  static_cast<long long>(ms));
  } else {
    std::snprintf(buf, sizeof buf, "%02lld:%02lld%c%03lld", static_cast<long long>(minutes),
                  static_cast<long long>(secs), decimal_marker, static_cast<long long>(ms));
  }
  return buf;
}

std::string format_txt(const Transcript& t) {
  std::string out;
  for (const Segment& s : t.segments) out += strip(s.text) + "\n";
  return out;
}

std::string format_srt(const Transcript& t) {
  std::string out;
  int index = 1;
  for (const Segment& s : t.segments) {
    out += std::to_string(index++) + "\n" + format_timestamp(s.start, true, ',') + " --> " +
           format_timestamp(s.end, true, ',') + "\n" + cue_text(s) + "\n\n";
  }
  return out;
}

std::string format_vtt(const Transcript& t) {
  std::string out = "WEBVTT\n\n";
  for (const Segment& s : t.segments) {
    out += format_timestamp(s.start, false, '.') + " --> " + format_timestamp(s.end, false, '.') + "\n" +
           cue_text(s) + "\n\n";
  }
  return out;
}

std::string format_tsv(const Transcript& t) {
  std::string out = "start\tend\ttext\n";
  for (const Segment& s : t.segments) {
    out += std::to_string(to_millis(s.start)) + "\t" + std::to_string(to_millis(s.end)) + "\t" +
           replace_all(strip(s.text), "\t", " ") + "\n";
  }
  return out;
}

nlohmann::json transcript_to_json(const Transcript& t) {
  nlohmann::json segs = nlohmann::json::array();
  for (size_t i = 0; i < t.segments.size(); ++i) {
    const Segment& s = t.segments[i];
    segs.push_back({{"id", i},
                    {"seek", s.seek},
                    {"start", s.start},
                    {"end", s.end},
                    {"text", s.text},
                    {"tokens", s.tokens},
                    {"temperature", s.temperature},
                    {"avg_logprob", s.avg_logprob},
                    {"compression_ratio", s.compression_ratio},
                    {"no_speech_prob", s.no_speech_prob}});
  }
  return {{"id", t.id},
          {"text", t.text},
          {"language", t.language},
          {"duration", t.duration},
          {"segments", std::move(segs)}};
}

std::string format_json(const Transcript& t) {
  return transcript_to_json(t).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

const std::vector<std::string>& transcript_formats() {
  static const std::vector<std::string> kFormats = {"txt", "vtt", "srt", "tsv", "json"};
  return kFormats;
}

std::vector<std::string> write_transcript_files(const Transcript& t, const std::string& out_dir,
                                                const std::string& basename,
                                                const std::vector<std::string>& formats) {
  FLURRY_CHECK(!basename.empty() && basename.find('/') == std::string::npos,
               "output basename must be a plain file name, got '" << basename << "'");
  std::vector<std::string> wanted;
  for (const std::string& f : formats) {
    if (f == "all") {
      wanted.insert(wanted.end(), transcript_formats().begin(), transcript_formats().end());
    } else {
      wanted.push_back(f);
    }
  }
  std::vector<std::string> unique;
  for (const std::string& f : wanted) {
    if (std::find(unique.begin(), unique.end(), f) == unique.end()) unique.push_back(f);
  }
  wanted.swap(unique);
  // Render everything before touching the disk: an unknown format leaves no partial set of files.
  std::vector<std::pair<std::string, std::string>> files;
  for (const std::string& f : wanted) files.emplace_back(f, format_one(t, f));

  std::error_code ec;
  fs::create_directories(out_dir.empty() ? "." : out_dir, ec);
  if (ec) FLURRY_FAIL(out_dir << ": cannot create output folder: " << ec.message());
  std::vector<std::string> paths;
  for (const auto& [fmt, text] : files) {
    const std::string path = (fs::path(out_dir.empty() ? "." : out_dir) / (basename + "." + fmt)).string();
    write_atomically(path, text);
    paths.push_back(path);
  }
  return paths;
}

}  // namespace flurry
