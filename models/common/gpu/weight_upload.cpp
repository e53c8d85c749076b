// Weight upload from the mapped checkpoint through a double-buffered pinned staging area.
#include "models/common/gpu/weight_upload.h"

#include <algorithm>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/stream.h"

namespace flurry::models {

const void* DeviceWeights::get(const std::string& key) const {
  const auto it = ptrs_.find(key);
  FLURRY_CHECK(it != ptrs_.end(), "device weights: no weight '" << key << "'");
  return it->second;
}

DeviceWeights upload_weights(const WeightTable& table, const Checkpoint& ck, DType dtype, Arena& arena,
                             cudaStream_t stream, size_t staging_bytes) {
  FLURRY_CHECK(arena.where() == Where::Device, "weight upload: weights need a device arena");
  const size_t es = dtype_size(dtype);
  const int64_t chunk = static_cast<int64_t>(std::max(staging_bytes, es) / es);  // elements per buffer
  PinnedBuffer staging[2] = {PinnedBuffer(static_cast<size_t>(chunk) * es),
                             PinnedBuffer(static_cast<size_t>(chunk) * es)};
  // copied[i] marks when the last copy out of staging[i] has finished, so the host may refill it.
  Event copied[2] = {Event(false), Event(false)};
  bool in_use[2] = {false, false};
  int turn = 0;
  DeviceWeights out;
  try {
    for (const WeightGroup& g : table.groups()) {
      const size_t bytes = static_cast<size_t>(g.numel()) * es;
      char* dst = static_cast<char*>(arena.alloc(bytes, g.key.c_str()));
      out.set(g.key, dst);
      for (int64_t at = 0; at < g.numel(); at += chunk) {
        const int64_t n = std::min(chunk, g.numel() - at);
        if (in_use[turn]) copied[turn].synchronize();
        read_group(table, ck, g, at, n, dtype, staging[turn].data());
        CUDA_CHECK(cudaMemcpyAsync(dst + static_cast<size_t>(at) * es, staging[turn].data(),
                                   static_cast<size_t>(n) * es, cudaMemcpyHostToDevice, stream));
        copied[turn].record(stream);
        in_use[turn] = true;
        turn ^= 1;
      }
    }
  } catch (...) {
    // A copy may still be reading a staging buffer; let it finish before the buffers are freed. Its
    // status is not checked: the error already in flight is the one to report.
    (void)cudaStreamSynchronize(stream);
    throw;
  }
  CUDA_CHECK(cudaStreamSynchronize(stream));  // the staging buffers die with this frame
  return out;
}

}  // namespace flurry::models
