// The weight table and the helpers every backend shares over it (see weight_table.h).
#include "models/common/weight_table.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "io/json_file.h"
#include "runtime/check.h"

namespace flurry::models {
namespace {

int64_t product(const std::vector<int64_t>& shape, size_t from = 0) {
  int64_t n = 1;
  for (size_t i = from; i < shape.size(); ++i) n *= shape[i];
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < shape.size(); ++i) o << (i ? ", " : "") << shape[i];
  o << "]";
  return o.str();
}

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    default: FLURRY_FAIL("weight table: random checkpoints are F32, F16 or BF16, not " << dtype_name(t));
  }
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Converts `count` stored elements of `e` starting at element `first` to fp32, times `scale`.
// The mapping gives no alignment guarantee for 16-bit data, so the bytes are copied out first.
void stored_to_f32(const TensorEntry& e, int64_t first, int64_t count, float scale, float* out,
                   std::vector<uint8_t>& raw) {
  const size_t es = dtype_size(e.dtype);
  raw.resize(static_cast<size_t>(count) * es);
  std::memcpy(raw.data(), static_cast<const uint8_t*>(e.data) + static_cast<size_t>(first) * es, raw.size());
  convert_to_f32(raw.data(), out, static_cast<size_t>(count), e.dtype);
  if (scale != 1.0f) {
    for (int64_t i = 0; i < count; ++i) out[i] *= scale;
  }
}

// Fills `out` with `n` values of entry `index` starting at element `first`, from (seed, index, i).
void random_values(const WeightEntry& e, uint64_t seed, size_t index, int64_t first, int64_t n, float* out) {
  float lo = e.init.lo, hi = e.init.hi;
  if (e.init.kind == WeightInit::FanIn) {
    const int64_t fan_in = std::max<int64_t>(1, product(e.shape, 1));
    hi = e.init.hi / std::sqrt(static_cast<float>(fan_in));
    lo = -hi;
  }
  const uint64_t key = splitmix64(seed * 0x100000001B3ull + index);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t bits = splitmix64(key ^ static_cast<uint64_t>(first + i)) >> 40;  // 24 random bits
    const float u = static_cast<float>(static_cast<double>(bits) * (1.0 / 16777216.0));
    out[i] = lo + u * (hi - lo);
  }
}

}  // namespace

int64_t WeightEntry::numel() const { return product(shape); }
int64_t WeightGroup::numel() const { return product(shape); }

void WeightTable::add(const std::string& key, const std::string& name, std::vector<int64_t> shape,
                      WeightInit init, bool optional) {
  add_fused(key, {FusedPart{name, std::move(shape), init, 1.0f, optional}});
}

void WeightTable::add_fused(const std::string& key, const std::vector<FusedPart>& parts) {
  FLURRY_CHECK(!parts.empty(), "weight table: group '" << key << "' has no parts");
  FLURRY_CHECK(by_key_.count(key) == 0, "weight table: group '" << key << "' added twice");
  WeightGroup g;
  g.key = key;
  g.shape = parts.front().shape;
  FLURRY_CHECK(!g.shape.empty(), "weight table: '" << parts.front().name << "' has no dims");
  g.shape[0] = 0;
  for (const FusedPart& p : parts) {
    // Stacking along dim 0 is only a concatenation of the stored bytes when the rest agrees.
    FLURRY_CHECK(p.shape.size() == g.shape.size() &&
                     std::equal(p.shape.begin() + 1, p.shape.end(), g.shape.begin() + 1),
                 "weight table: '" << p.name << "' " << shape_str(p.shape) << " cannot stack into '" << key
                                   << "'");
    g.shape[0] += p.shape[0];
    g.parts.push_back(WeightPart{entries_.size(), p.scale});
    entries_.push_back(WeightEntry{p.name, p.shape, p.init, p.optional});
  }
  by_key_[key] = groups_.size();
  groups_.push_back(std::move(g));
}

const WeightGroup& WeightTable::group(const std::string& key) const {
  const auto it = by_key_.find(key);
  FLURRY_CHECK(it != by_key_.end(), "weight table: no group '" << key << "'");
  return groups_[it->second];
}

void validate_checkpoint(const WeightTable& table, const Checkpoint& ck) {
  for (const WeightEntry& e : table.entries()) {
    if (!ck.has(e.name)) {
      if (e.optional) continue;
      FLURRY_FAIL(ck.dir() << ": tensor '" << e.name << "' is missing (expected shape " << shape_str(e.shape)
                           << ")");
    }
    const TensorEntry& t = ck.get(e.name);
    if (t.shape != e.shape) {
      FLURRY_FAIL(ck.dir() << ": tensor '" << e.name << "' has shape " << shape_str(t.shape) << ", expected "
                           << shape_str(e.shape));
    }
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16) {
      FLURRY_FAIL(ck.dir() << ": tensor '" << e.name << "' has dtype " << dtype_name(t.dtype)
                           << ", expected F32, F16 or BF16");
    }
  }
}

void read_group(const WeightTable& table, const Checkpoint& ck, const WeightGroup& g, int64_t first,
                int64_t count, DType out, void* dst) {
  FLURRY_CHECK(first >= 0 && count >= 0 && first + count <= g.numel(),
               "weight table: elements [" << first << ", " << first + count << ") outside '" << g.key << "' ("
                                          << g.numel() << ")");
  constexpr int64_t kChunk = int64_t{1} << 16;  // bounds the fp32 scratch; large enough to amortise
  const size_t os = dtype_size(out);
  std::vector<float> f32(static_cast<size_t>(std::min(count, kChunk)));
  std::vector<uint8_t> raw;
  int64_t part_begin = 0;  // group element where the current part starts
  for (const WeightPart& p : g.parts) {
    const WeightEntry& e = table.entries()[p.entry];
    const int64_t part_end = part_begin + e.numel();
    const int64_t lo = std::max(first, part_begin), hi = std::min(first + count, part_end);
    const TensorEntry* t = ck.has(e.name) ? &ck.get(e.name) : nullptr;
    // Cheap guards so an unvalidated checkpoint cannot make this read past a tensor's bytes.
    FLURRY_CHECK(t != nullptr || e.optional, ck.dir() << ": tensor '" << e.name << "' is missing");
    FLURRY_CHECK(t == nullptr || (t->shape == e.shape && is_float(t->dtype)),
                 ck.dir() << ": tensor '" << e.name << "' does not match the weight table (validate first)");
    for (int64_t at = lo; at < hi; at += kChunk) {
      const int64_t n = std::min(kChunk, hi - at);
      if (t != nullptr) {
        stored_to_f32(*t, at - part_begin, n, p.scale, f32.data(), raw);
      } else {
        std::fill(f32.begin(), f32.begin() + n, 0.0f);  // absent optional part (a missing bias)
      }
      convert_from_f32(f32.data(), static_cast<uint8_t*>(dst) + static_cast<size_t>(at - first) * os,
                       static_cast<size_t>(n), out);
    }
    part_begin = part_end;
  }
}

std::vector<float> bind_f32(const WeightTable& table, const Checkpoint& ck, const std::string& key) {
  const WeightGroup& g = table.group(key);
  std::vector<float> v(static_cast<size_t>(g.numel()));
  read_group(table, ck, g, 0, g.numel(), DType::F32, v.data());
  return v;
}

LinearW bind_linear(const WeightTable& table, const Checkpoint& ck, const std::string& key) {
  const WeightGroup& w = table.group(key + ".weight");
  LinearW l;
  l.out = w.shape[0];
  l.in = product(w.shape, 1);
  l.w = bind_f32(table, ck, w.key);
  if (table.has(key + ".bias")) l.b = bind_f32(table, ck, key + ".bias");
  return l;
}

LayerNormW bind_layernorm(const WeightTable& table, const Checkpoint& ck, const std::string& key) {
  return LayerNormW{bind_f32(table, ck, key + ".weight"), bind_f32(table, ck, key + ".bias")};
}

size_t table_bytes(const WeightTable& table, DType dtype, size_t align) {
  size_t total = 0;
  for (const WeightGroup& g : table.groups()) {
    const size_t b = static_cast<size_t>(g.numel()) * dtype_size(dtype);
    total += (b + align - 1) / align * align;
  }
  return total;
}

void write_random_checkpoint(const WeightTable& table, const std::string& path,
                             const RandomCheckpointOptions& o) {
  const char* dname = safetensors_dtype(o.dtype);
  const size_t es = dtype_size(o.dtype);
  Json header = Json::object();
  size_t off = 0;
  for (const WeightEntry& e : table.entries()) {
    if (e.optional) continue;
    const size_t bytes = static_cast<size_t>(e.numel()) * es;
    header[e.name] = {{"dtype", dname}, {"shape", e.shape}, {"data_offsets", {off, off + bytes}}};
    off += bytes;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');  // keeps every tensor aligned to its element size
  std::ofstream out(path, std::ios::binary);
  FLURRY_CHECK(out.good(), path << ": cannot create the random checkpoint");
  const uint64_t len = h.size();
  out.write(reinterpret_cast<const char*>(&len), 8);  // little-endian host
  out.write(h.data(), static_cast<std::streamsize>(h.size()));

  const int threads = std::max(1, o.threads);
  constexpr int64_t kPiece = int64_t{1} << 20;
  std::vector<uint8_t> bytes;
  for (size_t idx = 0; idx < table.entries().size(); ++idx) {
    const WeightEntry& e = table.entries()[idx];
    if (e.optional) continue;
    const int64_t n = e.numel();
    bytes.resize(static_cast<size_t>(n) * es);
    // Pieces of 1 Mi elements, handed out round-robin; small tensors stay on this thread.
    const int64_t pieces = (n + kPiece - 1) / kPiece;
    const auto work = [&](int64_t t0, int64_t step) {
      std::vector<float> f(static_cast<size_t>(std::min(n, kPiece)));
      for (int64_t p = t0; p < pieces; p += step) {
        const int64_t b = p * kPiece, m = std::min(kPiece, n - b);
        random_values(e, o.seed, idx, b, m, f.data());
        convert_from_f32(f.data(), bytes.data() + static_cast<size_t>(b) * es, static_cast<size_t>(m), o.dtype);
      }
    };
    const int use = static_cast<int>(std::min<int64_t>(threads, pieces));
    if (use <= 1) {
      work(0, 1);
    } else {
      std::vector<std::thread> pool;
      for (int t = 0; t < use; ++t) pool.emplace_back(work, t, use);
      for (std::thread& th : pool) th.join();
    }
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  FLURRY_CHECK(out.good(), path << ": writing the random checkpoint failed");
}

}  // namespace flurry::models
