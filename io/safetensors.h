// Checkpoints in Hugging Face layout: model.safetensors, or shards listed by
// model.safetensors.index.json. Files are memory-mapped; tensors are views into the mapping.
//
// The header is validated before anything is trusted: length cap, well-formed JSON, known dtypes,
// shape x dtype = byte size, offsets inside the data area, no two tensors overlapping. A damaged file
// is refused with a message naming the file, the tensor and what is wrong.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/tensor.h"

namespace flurry {

struct TensorEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  size_t begin = 0;  // byte offsets relative to the data area (after the header)
  size_t end = 0;
  const void* data = nullptr;  // into the mapping
  size_t nbytes() const { return end - begin; }
  int64_t numel() const;
};

// Parses and validates a header (the JSON text) against a data area of `data_size` bytes. Exposed
// for the fuzz target and the tests; `where` names the source in error messages.
std::vector<TensorEntry> parse_safetensors_header(const char* json, size_t json_len, size_t data_size,
                                                  const std::string& where,
                                                  std::map<std::string, std::string>* metadata);

// Parses a whole safetensors image held in memory (8-byte little-endian header length, header JSON,
// data area). Entries point into `bytes`. This is the path SafetensorsFile::open takes after mapping
// the file, and the one the fuzz target drives.
std::vector<TensorEntry> parse_safetensors_buffer(const void* bytes, size_t size, const std::string& where,
                                                  std::map<std::string, std::string>* metadata);

// Largest header accepted; real checkpoints stay far below (a few MiB for thousands of tensors).
constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

class SafetensorsFile {
 public:
  // Maps and validates; throws flurry::Error "<path>: <reason>" on any damage.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  const TensorEntry* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<TensorEntry> tensors_;
  std::map<std::string, size_t> by_name_;  // index into tensors_; checkpoints hold ~1000 tensors
  std::map<std::string, std::string> metadata_;
};

// A whole checkpoint folder: model.safetensors or the shards of model.safetensors.index.json.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);

  bool has(const std::string& name) const;
  // Throws naming the checkpoint and the missing tensor.
  const TensorEntry& get(const std::string& name) const;
  // Checks the stored shape equals `shape`; throws with both shapes otherwise.
  const TensorEntry& get(const std::string& name, const std::vector<int64_t>& shape) const;
  // Host view of the stored bytes (no copy). Its alignment is what the file gives: the safetensors
  // writer pads the header so every tensor is aligned to its element size, but older or foreign
  // writers may not; to_f32 copies and works either way.
  Tensor view(const std::string& name) const;
  // A copy converted to fp32 (F32, F16, BF16 stored tensors).
  std::vector<float> to_f32(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorEntry*> index_;
};

}  // namespace flurry
