#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>

#include "io/json_file.h"
#include "runtime/check.h"

namespace flurry {

namespace {

namespace fs = std::filesystem;

// The safetensors header nests at most three levels (root / tensor / shape); anything deeper is
// damage, and refusing it early bounds the parser's work on hostile input.
constexpr int kMaxHeaderDepth = 3;

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

// Safetensors' dtype names. The ones flurry has no DType for are known by name so the message can
// say "unsupported" rather than "unknown" (an F64 checkpoint is real, a "F33" one is damaged).
bool lookup_dtype(const std::string& s, DType* out, bool* known) {
  static const struct { const char* name; DType t; } kSupported[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
      {"I32", DType::I32}, {"I64", DType::I64}, {"U8", DType::U8}};
  static const char* const kOther[] = {"F64", "I8", "I16", "U16", "U32", "U64", "BOOL",
                                       "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2",
                                       "F4", "C64"};
  for (const auto& d : kSupported) {
    if (s == d.name) {
      *out = d.t;
      *known = true;
      return true;
    }
  }
  *known = std::find_if(std::begin(kOther), std::end(kOther),
                        [&](const char* n) { return s == n; }) != std::end(kOther);
  return false;
}

// A JSON number that is a non-negative integer no larger than `cap`.
bool as_count(const Json& v, uint64_t cap, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    const int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = static_cast<uint64_t>(s);
  } else {
    return false;
  }
  return *out <= cap;
}

void parse_metadata(const Json& v, const std::string& where, std::map<std::string, std::string>* metadata) {
  if (!v.is_object()) FLURRY_FAIL(where << ": __metadata__ must be an object, got " << v.type_name());
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!it.value().is_string()) {
      FLURRY_FAIL(where << ": __metadata__ value for '" << it.key() << "' must be a string, got "
                        << it.value().type_name());
    }
    if (metadata) (*metadata)[it.key()] = it.value().get<std::string>();
  }
}

TensorEntry parse_entry(const std::string& name, const Json& v, size_t data_size, const std::string& where) {
  const std::string at = where + ": tensor '" + name + "'";
  if (!v.is_object()) FLURRY_FAIL(at << ": expected an object, got " << v.type_name());
  TensorEntry e;
  e.name = name;

  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) FLURRY_FAIL(at << ": missing or non-string 'dtype'");
  const std::string dname = dt->get<std::string>();
  bool known = false;
  if (!lookup_dtype(dname, &e.dtype, &known)) {
    FLURRY_FAIL(at << ": " << (known ? "unsupported" : "unknown") << " dtype '" << dname
                   << "' (flurry reads F32, F16, BF16, I32, I64, U8)");
  }

  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) FLURRY_FAIL(at << ": missing or non-array 'shape'");
  bool has_zero = false;
  for (const Json& d : *sh) {
    uint64_t n = 0;
    if (!as_count(d, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), &n)) {
      FLURRY_FAIL(at << ": shape entry " << d.dump() << " is not a non-negative integer");
    }
    e.shape.push_back(static_cast<int64_t>(n));
    has_zero = has_zero || n == 0;
  }
  // The product of the non-zero dimensions must fit even when a zero dimension makes the tensor
  // empty, so that stride and element counts computed from the shape later cannot overflow.
  uint64_t bytes = dtype_size(e.dtype);
  for (int64_t d : e.shape) {
    if (d != 0 && (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes) ||
                   bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
      FLURRY_FAIL(at << ": shape " << shape_string(e.shape) << " overflows the byte count");
    }
  }
  const uint64_t want = has_zero ? 0 : bytes;

  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2) {
    FLURRY_FAIL(at << ": 'data_offsets' must be an array [begin, end]");
  }
  uint64_t begin = 0, end = 0;
  const uint64_t cap = std::numeric_limits<uint64_t>::max();
  if (!as_count((*off)[0], cap, &begin) || !as_count((*off)[1], cap, &end)) {
    FLURRY_FAIL(at << ": data_offsets " << off->dump() << " are not non-negative integers");
  }
  if (begin > end) FLURRY_FAIL(at << ": data_offsets begin " << begin << " > end " << end);
  if (end > data_size) {
    FLURRY_FAIL(at << ": data_offsets [" << begin << ", " << end << "] run past the data area of "
                   << data_size << " bytes");
  }
  if (end - begin != want) {
    FLURRY_FAIL(at << ": shape " << shape_string(e.shape) << " " << dname << " needs " << want
                   << " bytes but data_offsets [" << begin << ", " << end << "] hold " << (end - begin));
  }
  e.begin = static_cast<size_t>(begin);
  e.end = static_cast<size_t>(end);
  return e;
}

Json parse_header_json(const char* json, size_t json_len, const std::string& where) {
  // The callback sees every value as it is opened; throwing there stops a deeply nested header
  // before it costs memory.
  const Json::parser_callback_t depth_guard = [&](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxHeaderDepth) FLURRY_FAIL(where << ": header JSON nests deeper than a safetensors header");
    return true;
  };
  try {
    return Json::parse(json, json + json_len, depth_guard);
  } catch (const Json::exception& ex) {
    FLURRY_FAIL(where << ": header is not valid JSON: " << ex.what());
  }
}

}  // namespace

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<TensorEntry> parse_safetensors_header(const char* json, size_t json_len, size_t data_size,
                                                  const std::string& where,
                                                  std::map<std::string, std::string>* metadata) {
  const Json root = parse_header_json(json, json_len, where);
  if (!root.is_object()) FLURRY_FAIL(where << ": header must be a JSON object, got " << root.type_name());

  std::vector<TensorEntry> out;
  out.reserve(root.size());
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      parse_metadata(it.value(), where, metadata);
    } else {
      out.push_back(parse_entry(it.key(), it.value(), data_size, where));
    }
  }

  // File order makes the overlap check one pass. Empty tensors occupy no bytes and cannot overlap.
  std::sort(out.begin(), out.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const TensorEntry* prev = nullptr;
  for (const TensorEntry& e : out) {
    if (e.begin == e.end) continue;
    if (prev && e.begin < prev->end) {
      FLURRY_FAIL(where << ": tensors '" << prev->name << "' [" << prev->begin << ", " << prev->end
                        << ") and '" << e.name << "' [" << e.begin << ", " << e.end << ") overlap");
    }
    prev = &e;
  }
  return out;
}

std::vector<TensorEntry> parse_safetensors_buffer(const void* bytes, size_t size, const std::string& where,
                                                  std::map<std::string, std::string>* metadata) {
  if (size < 8) {
    FLURRY_FAIL(where << ": file is " << size << " bytes, too short for the 8-byte header length");
  }
  const auto* p = static_cast<const unsigned char*>(bytes);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | p[i];  // little-endian whatever the host
  if (n > kMaxSafetensorsHeader) {
    FLURRY_FAIL(where << ": header length " << n << " exceeds the " << kMaxSafetensorsHeader
                      << "-byte cap (damaged or not a safetensors file)");
  }
  if (n > size - 8) {
    FLURRY_FAIL(where << ": header length " << n << " runs past the end of the " << size
                      << "-byte file (truncated?)");
  }
  const char* json = reinterpret_cast<const char*>(p + 8);
  const size_t data_size = size - 8 - static_cast<size_t>(n);
  std::vector<TensorEntry> out = parse_safetensors_header(json, static_cast<size_t>(n), data_size, where, metadata);
  const unsigned char* data = p + 8 + n;
  for (TensorEntry& e : out) e.data = data + e.begin;
  return out;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) FLURRY_FAIL(path << ": cannot open: " << std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    FLURRY_FAIL(path << ": cannot stat: " << std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    FLURRY_FAIL(path << ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    FLURRY_FAIL(path << ": file is " << size << " bytes, too short for the 8-byte header length");
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (m == MAP_FAILED) FLURRY_FAIL(path << ": mmap of " << size << " bytes failed: " << std::strerror(map_err));
  f->map_ = m;
  f->map_size_ = size;
  f->tensors_ = parse_safetensors_buffer(m, size, path, &f->metadata_);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->by_name_[f->tensors_[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

namespace {

// Shard names in an index are file names beside it; an absolute path or ".." would read files
// outside the checkpoint.
void check_shard_name(const std::string& shard, const std::string& tensor, const std::string& where) {
  const fs::path p(shard);
  bool bad = shard.empty() || p.is_absolute();
  for (const auto& part : p) bad = bad || part == "..";
  if (bad) FLURRY_FAIL(where << ": weight_map entry for '" << tensor << "' names shard '" << shard
                             << "', which is not a file inside the checkpoint folder");
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint ck;
  ck.dir_ = dir;
  std::error_code ec;
  // A single .safetensors file given directly works too: handy for tests and converted weights.
  if (fs::is_regular_file(dir, ec)) {
    ck.files_.push_back(SafetensorsFile::open(dir));
    for (const TensorEntry& e : ck.files_.back()->tensors()) ck.index_[e.name] = &e;
    return ck;
  }
  if (!fs::is_directory(dir, ec)) FLURRY_FAIL(dir << ": checkpoint folder does not exist");

  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(single, ec)) {
    ck.files_.push_back(SafetensorsFile::open(single.string()));
    for (const TensorEntry& e : ck.files_.back()->tensors()) ck.index_[e.name] = &e;
    return ck;
  }
  if (!fs::exists(index, ec)) {
    FLURRY_FAIL(dir << ": no model.safetensors or model.safetensors.index.json in the checkpoint folder");
  }

  const std::string where = index.string();
  const Json j = read_json_file(where);
  if (!j.is_object()) FLURRY_FAIL(where << ": expected a JSON object, got " << j.type_name());
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) FLURRY_FAIL(where << ": missing or non-object 'weight_map'");
  if (wm->empty()) FLURRY_FAIL(where << ": 'weight_map' lists no tensors");

  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;  // each opened once
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) {
      FLURRY_FAIL(where << ": weight_map entry for '" << it.key() << "' must be a file name, got "
                        << it.value().type_name());
    }
    const std::string shard = it.value().get<std::string>();
    check_shard_name(shard, it.key(), where);
    auto& file = shards[shard];
    if (!file) {
      file = SafetensorsFile::open((fs::path(dir) / shard).string());
      ck.files_.push_back(file);
    }
    const TensorEntry* e = file->find(it.key());
    if (!e) FLURRY_FAIL(where << ": tensor '" << it.key() << "' is listed in shard '" << shard
                              << "' but that file does not hold it");
    ck.index_[it.key()] = e;
  }
  return ck;
}

bool Checkpoint::has(const std::string& name) const { return index_.count(name) != 0; }

const TensorEntry& Checkpoint::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it != index_.end()) return *it->second;
  // Prefix mismatches ("model.encoder.x" vs "encoder.x") are the usual cause; name the candidates.
  std::vector<std::string> near;
  for (const auto& kv : index_) {
    const std::string& k = kv.first;
    const bool suffix = (k.size() > name.size() && k.compare(k.size() - name.size(), name.size(), name) == 0) ||
                        (name.size() > k.size() && name.compare(name.size() - k.size(), k.size(), k) == 0);
    if (suffix && near.size() < 3) near.push_back(k);
  }
  std::ostringstream os;
  os << dir_ << ": no tensor '" << name << "' in the checkpoint (" << index_.size() << " tensors)";
  if (!near.empty()) {
    os << "; similar names:";
    for (const auto& n : near) os << " '" << n << "'";
  }
  throw Error(os.str());
}

const TensorEntry& Checkpoint::get(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorEntry& e = get(name);
  if (e.shape != shape) {
    FLURRY_FAIL(dir_ << ": tensor '" << name << "' has shape " << shape_string(e.shape) << ", expected "
                     << shape_string(shape));
  }
  return e;
}

Tensor Checkpoint::view(const std::string& name) const {
  const TensorEntry& e = get(name);
  if (e.shape.size() > static_cast<size_t>(kMaxDims)) {
    FLURRY_FAIL(dir_ << ": tensor '" << name << "' has " << e.shape.size() << " dimensions, more than "
                     << kMaxDims);
  }
  // The mapping is read-only; Tensor's pointer is not const, so callers must not write through it.
  return Tensor::contiguous(const_cast<void*>(e.data), e.dtype, e.shape.data(),
                            static_cast<int>(e.shape.size()), Where::Host);
}

std::vector<float> Checkpoint::to_f32(const std::string& name) const {
  const TensorEntry& e = get(name);
  if (!is_float(e.dtype)) {
    FLURRY_FAIL(dir_ << ": tensor '" << name << "' is " << dtype_name(e.dtype)
                     << "; only F32, F16 and BF16 tensors convert to fp32");
  }
  const size_t n = e.nbytes() / dtype_size(e.dtype);
  std::vector<float> out(n);
  if (n == 0) return out;
  if (e.dtype == DType::F32) {
    std::memcpy(out.data(), e.data, e.nbytes());
  } else if (reinterpret_cast<uintptr_t>(e.data) % alignof(uint16_t) == 0) {
    convert_to_f32(e.data, out.data(), n, e.dtype);
  } else {
    // Files with unpadded headers can put 16-bit values at odd addresses; read them via a copy.
    std::vector<uint16_t> bits(n);
    std::memcpy(bits.data(), e.data, e.nbytes());
    convert_to_f32(bits.data(), out.data(), n, e.dtype);
  }
  return out;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

}  // namespace flurry
