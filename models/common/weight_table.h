// The weight table: one list per model of the tensors its checkpoint holds (Hugging Face name,
// shape, whether it may be absent, how a random checkpoint fills it) and how they bind (groups: a
// tensor alone, or several stacked along dim 0 with a per-part scale, e.g. q, k, v -> [3d, d] with
// the query scaling folded in). Everything that walks a model's weights reads this one list:
//
//   validate_checkpoint(table, ck);                  // missing / wrong shape / wrong dtype -> Error
//   LinearW fc1 = bind_linear(table, ck, "...fc1");  // fp32 CPU weights, fused as the group says
//   read_group(table, ck, g, first, n, DType::F16, dst);  // a slice of a group, for device upload
//   write_random_checkpoint(table, path, {seed});    // a random checkpoint of the table's shapes
//
// A model builds its table from its config in one function (models/whisper/weights.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "runtime/dtype.h"

namespace flurry::models {

// How write_random_checkpoint fills a tensor. FanIn keeps activations O(1) layer to layer:
// uniform in +-gain / sqrt(fan_in), fan_in = the product of every dim but the first (a conv's
// c_in * kernel).
struct WeightInit {
  enum Kind : uint8_t { Uniform, FanIn };
  Kind kind = Uniform;
  float lo = -0.1f, hi = 0.1f;  // Uniform range; FanIn uses hi as the gain
  static WeightInit uniform(float lo, float hi) { return WeightInit{Uniform, lo, hi}; }
  static WeightInit fan_in(float gain = 1.7f) { return WeightInit{FanIn, 0.0f, gain}; }
};

struct WeightEntry {
  std::string name;             // full tensor name in the checkpoint
  std::vector<int64_t> shape;
  WeightInit init;
  // May be absent from a checkpoint (reads as zeros: Whisper's k_proj has no bias); random
  // checkpoints leave it out, as the real ones do.
  bool optional = false;
  int64_t numel() const;
};

// One part of a group: a table entry and the factor its values are multiplied by when bound.
struct WeightPart {
  size_t entry = 0;
  float scale = 1.0f;
};

// What the model binds: its parts stacked along dim 0, shape [sum of dim 0, trailing dims].
struct WeightGroup {
  std::string key;  // the model's name for it, independent of the checkpoint's prefix
  std::vector<WeightPart> parts;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

// A part of add_fused: the entry it adds and its scale.
struct FusedPart {
  std::string name;
  std::vector<int64_t> shape;
  WeightInit init;
  float scale = 1.0f;
  bool optional = false;
};

class WeightTable {
 public:
  // A tensor bound on its own under `key`.
  void add(const std::string& key, const std::string& name, std::vector<int64_t> shape, WeightInit init,
           bool optional = false);
  // Tensors bound stacked under `key`; their trailing dims must agree (checked here).
  void add_fused(const std::string& key, const std::vector<FusedPart>& parts);

  const std::vector<WeightEntry>& entries() const { return entries_; }
  const std::vector<WeightGroup>& groups() const { return groups_; }
  bool has(const std::string& key) const { return by_key_.count(key) != 0; }
  // Throws naming the key when the table has no such group (a model/table mismatch: a bug).
  const WeightGroup& group(const std::string& key) const;

 private:
  std::vector<WeightEntry> entries_;
  std::vector<WeightGroup> groups_;
  std::map<std::string, size_t> by_key_;
};

// Checks every entry of the table against the checkpoint: present (unless optional), the table's
// shape, and a floating dtype (F32, F16, BF16). Throws flurry::Error "<dir>: tensor '<name>' ..."
// naming the first offending tensor and the reason. Tensors the table does not list are ignored.
void validate_checkpoint(const WeightTable& table, const Checkpoint& ck);

// Elements [first, first + count) of the group (its parts stacked, each multiplied by its scale
// in fp32, then rounded to `out`) written to `dst` as `out` (F32, F16 or BF16). An absent optional
// part reads as zeros. Meant for a validated checkpoint (a tensor that does not match its entry is
// refused, never read past). This is the one conversion every backend uses, so the CPU and device
// copies of a weight hold the same values.
void read_group(const WeightTable& table, const Checkpoint& ck, const WeightGroup& g, int64_t first,
                int64_t count, DType out, void* dst);

// The whole group in fp32.
std::vector<float> bind_f32(const WeightTable& table, const Checkpoint& ck, const std::string& key);

// nn.Linear (or a conv flattened to [c_out, c_in * k]): w [out, in] row-major, b [out] (empty when
// the layer has no bias).
struct LinearW {
  std::vector<float> w, b;
  int64_t in = 0, out = 0;
};
struct LayerNormW {
  std::vector<float> gamma, beta;
};

// <key>.weight and, when the table has it, <key>.bias.
LinearW bind_linear(const WeightTable& table, const Checkpoint& ck, const std::string& key);
// <key>.weight (gamma) and <key>.bias (beta).
LayerNormW bind_layernorm(const WeightTable& table, const Checkpoint& ck, const std::string& key);

// Bytes the groups take as `dtype` when each starts on an `align`-byte boundary (device sizing).
size_t table_bytes(const WeightTable& table, DType dtype, size_t align);

struct RandomCheckpointOptions {
  uint64_t seed = 0;
  DType dtype = DType::F16;
  int threads = 1;  // values depend on (seed, tensor, element) only, never on the thread count
};

// Writes every non-optional entry as one safetensors file at `path`, filled per its WeightInit.
// Streams tensor by tensor, so a large-v3-sized table needs one tensor's memory, not the model's.
void write_random_checkpoint(const WeightTable& table, const std::string& path,
                             const RandomCheckpointOptions& options);

}  // namespace flurry::models
