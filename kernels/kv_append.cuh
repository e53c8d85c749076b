// Decoder K/V cache append: the new key and value rows of every live sequence of a decoder call
// written into that sequence's cache slot at its own position, in ONE launch (the per-sequence
// cudaMemcpy2DAsync it replaces cost ~1.4 million API calls in a 640-clip run). Slots and positions
// are device arrays, so a captured step stays valid while they change.
//
//   for b in [0, batch), t in [0, row_starts[b+1] - row_starts[b]):
//     r   = row_starts[b] + t                               (row of the call's new K/V)
//     dst = slots[b] * slot_stride + (positions[b] + t) * cache_ld
//     k_cache[dst .. dst + width) = k_src[r * src_ld .. + width); likewise v
//
// A pure copy: bytes are moved, nothing is converted or rounded, so the cache holds exactly the
// projection's output. Rows whose destination falls outside the cache (slot outside [0, slots),
// position outside [0, max_len)) are not written and set kKvAppendOutOfRange in *error when an
// error word is given; the host reference is a memcpy per row.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/dtype.h"

namespace flurry {

// Bit OR-ed into KvAppendArgs::error (distinct from the embedding kernel's bits 1 and 2, so both
// can share one word).
constexpr int32_t kKvAppendOutOfRange = 4;

struct KvAppendArgs {
  const void* k_src = nullptr;  // new keys, row r at k_src + r * src_ld (e.g. column d of fused QKV)
  const void* v_src = nullptr;  // new values, likewise
  int64_t src_ld = 0;
  void* k_cache = nullptr;      // [slots, max_len] rows of cache_ld elements, slot s at s * slot_stride
  void* v_cache = nullptr;
  int64_t cache_ld = 0, slot_stride = 0;
  int slots = 0, max_len = 0;   // bounds every destination
  int64_t width = 0;            // elements per row copied (d)
  DType type = DType::F16;      // element size only (any dtype)
  int batch = 0;                              // sequences, <= 65535
  const int32_t* seq_slots = nullptr;         // device [batch]
  const int32_t* seq_positions = nullptr;     // device [batch]: cache rows before this call
  const int32_t* row_starts = nullptr;        // device [batch + 1]: first new row of each sequence
  int max_new = 1;  // grid hint: the most new rows of one sequence (longer ones are still copied)
  int32_t* error = nullptr;  // optional device word, see kKvAppendOutOfRange
};

// Requirements (checked): width * element size a multiple of 16 bytes; every pointer 16-byte
// aligned and every stride a multiple of 16 bytes, so rows move as 16-byte vectors.
void kv_append(const KvAppendArgs& args, cudaStream_t stream);

}  // namespace flurry
