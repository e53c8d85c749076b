// Fused embedding-bag gather + pooling: every bag of every sample in one launch, each pooled vector
// written straight into its slot of the per-sample feature row, so no [bags, n, dim] intermediate
// and no concatenation pass.
//
// The batch layout is TorchRec's KeyedJaggedTensor, bag-major (the DlrmBatch of a recommender):
//   bag b of sample i pools indices[offsets[b * n + i] .. offsets[b * n + i + 1]) of bag b's table,
// offsets holding num_bags * n + 1 int32 values. Semantics are those of a plain loop in fp32: sum of
// the rows (or their mean: the sum times 1 / count), an empty bag gives zeros. Accumulation is fp32
// whatever the table dtype; the result is rounded once to the output dtype.
//
// Indices are NOT checked on the device: the host validates them against each table's rows before
// the launch (an index out of range reads arbitrary memory).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "runtime/dtype.h"

namespace flurry {

enum class BagPooling : uint8_t { Sum, Mean };

struct EmbeddingBagSpec {
  const void* table = nullptr;  // device [rows, dim] row-major, EmbeddingBagsArgs::table_type
  int64_t dim = 0;
  int64_t out_col = 0;  // first column of this bag's slot in each output row
  BagPooling pooling = BagPooling::Sum;
};

// out row i (element stride 1, row stride ld_out, dtype out_type) receives bag b's pooled vector in
// columns [bags[b].out_col, bags[b].out_col + bags[b].dim). Other columns are left untouched.
struct EmbeddingBagsArgs {
  std::vector<EmbeddingBagSpec> bags;  // host-side description, in the offsets' bag order
  DType table_type = DType::F32;       // every table (F32, F16 or BF16)
  const int32_t* offsets = nullptr;    // device [bags.size() * n + 1]
  const int32_t* indices = nullptr;    // device
  int64_t n = 0;                       // samples
  void* out = nullptr;                 // device [n, ld_out]
  DType out_type = DType::F32;         // F32, F16 or BF16
  int64_t ld_out = 0;
};

// Throws flurry::Error on an inconsistent description (a slot past ld_out, a null table, ...).
// 16-byte vector loads are used when every dim is a multiple of 16 / sizeof(table_type) and every
// table is 16-byte aligned; the same arithmetic otherwise.
void embedding_bags(const EmbeddingBagsArgs& args, cudaStream_t stream);

}  // namespace flurry
