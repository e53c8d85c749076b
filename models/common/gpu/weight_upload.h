// Device copies of a model's weights, made straight from the memory-mapped checkpoint: each group
// of the weight table (fused as the table says) converted on the host into a pinned staging buffer
// and copied asynchronously, two buffers in turn so conversion overlaps the copy. Host memory is
// the two staging buffers, never an fp32 copy of the model (large-v3 would be 6 GB per rank).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <string>

#include "io/safetensors.h"
#include "models/common/weight_table.h"
#include "runtime/arena.h"
#include "runtime/dtype.h"

namespace flurry::models {

// The device pointer of every group, by the table's key.
class DeviceWeights {
 public:
  // Throws naming the key when the table had no such group.
  const void* get(const std::string& key) const;
  bool has(const std::string& key) const { return ptrs_.count(key) != 0; }
  void set(const std::string& key, const void* p) { ptrs_[key] = p; }

 private:
  std::map<std::string, const void*> ptrs_;
};

constexpr size_t kDefaultStagingBytes = size_t{16} << 20;

// Converts every group of `table` (from a validated `ck`) to `dtype` (F16, BF16 or F32) and copies
// it into `arena` (a device arena; each group 256-byte aligned, table_bytes() in all) on `stream`.
// Returns after every copy has completed, so the checkpoint may be closed afterwards.
DeviceWeights upload_weights(const WeightTable& table, const Checkpoint& ck, DType dtype, Arena& arena,
                             cudaStream_t stream, size_t staging_bytes = kDefaultStagingBytes);

}  // namespace flurry::models
