// The DLRM kernels (kernels/dlrm) against their CPU oracles in models/dlrm/model.h: embedding_bags
// vs embedding_bag_ref, dot / outer / cat vs interaction_ref, cross_layer vs cross_layer_ref, and
// topk_rows vs a stable sort. Fresh random inputs rounded to the kernel's dtype, outputs poisoned
// (0xFF bytes: NaN) with padding columns that must stay poisoned, a relative-norm bound per dtype
// (fp32 1e-5, fp16/bf16 1e-2); odd sizes, empty bags, one-sample and empty batches, multi-hot bags,
// the seed's 33,024-wide outer product, more bags than one launch describes, and top-k with ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dlrm/embedding_bag.cuh"
#include "kernels/dlrm/interaction.cuh"
#include "kernels/dlrm/topk.cuh"
#include "models/dlrm/config.h"
#include "models/dlrm/model.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry::dlrm {
namespace {

using test::DeviceBuffer;

template <typename T>
void upload_raw(void* dst, const std::vector<T>& v) {
  if (!v.empty()) CUDA_CHECK(cudaMemcpy(dst, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
}
template <typename T>
std::vector<T> download_raw(const void* src, size_t n) {
  std::vector<T> v(n);
  if (n > 0) CUDA_CHECK(cudaMemcpy(v.data(), src, n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

// Columns [c0, c1) of each of n rows of stride ld.
std::vector<float> columns(const std::vector<float>& m, int64_t n, int64_t ld, int64_t c0, int64_t c1) {
  std::vector<float> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), m.begin() + i * ld + c0, m.begin() + i * ld + c1);
  return out;
}

// Every element of columns [c0, c1) is NaN: never written.
::testing::AssertionResult untouched(const std::vector<float>& m, int64_t n, int64_t ld, int64_t c0, int64_t c1) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = c0; c < c1; ++c) {
      if (!std::isnan(m[static_cast<size_t>(i * ld + c)])) {
        return ::testing::AssertionFailure() << "row " << i << " column " << c << " was written (outside the output)";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

double bound_for(DType a, DType b) { return std::max(test::rel_norm_bound(a), test::rel_norm_bound(b)); }

// ---- embedding_bags ----

struct BagCase {
  std::vector<int64_t> dims;  // one table per bag
  int64_t rows = 50;          // table rows
  int64_t n = 0;
  int max_len = 3;            // bag lengths uniform in [0, max_len] (0: empty bags)
  int64_t first_col = 0;      // slot of bag 0 (columns before it must stay untouched)
  int64_t pad = 0;            // columns after the last slot
  bool mean = false;
};

void run_bags(const BagCase& c, DType table_t, DType out_t, std::mt19937_64& rng) {
  const int64_t nb = static_cast<int64_t>(c.dims.size());
  int64_t width = c.first_col;
  for (int64_t d : c.dims) width += d;
  const int64_t ld = width + c.pad;
  std::uniform_int_distribution<int> len_dist(0, c.max_len);
  std::uniform_int_distribution<int32_t> row_dist(0, static_cast<int32_t>(c.rows - 1));
  std::vector<int32_t> offsets{0}, indices;
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t i = 0; i < c.n; ++i) {
      const int len = len_dist(rng);
      for (int e = 0; e < len; ++e) indices.push_back(row_dist(rng));
      offsets.push_back(static_cast<int32_t>(indices.size()));
    }
  }
  std::vector<std::vector<float>> tables;
  std::vector<std::unique_ptr<DeviceBuffer>> dtables;
  for (int64_t d : c.dims) {
    tables.push_back(test::random_vector(static_cast<size_t>(c.rows * d), rng));
    test::round_inplace(tables.back(), table_t);
    dtables.push_back(std::make_unique<DeviceBuffer>(tables.back().size() * dtype_size(table_t)));
    test::upload(dtables.back()->get(), tables.back(), table_t);
  }
  std::vector<float> ref(static_cast<size_t>(c.n * ld), std::numeric_limits<float>::quiet_NaN());
  EmbeddingBagsArgs a;
  int64_t col = c.first_col;
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t d = c.dims[static_cast<size_t>(b)];
    if (c.n > 0) {
      embedding_bag_ref(tables[static_cast<size_t>(b)].data(), c.rows, d, offsets.data() + b * c.n, indices.data(),
                        c.n, c.mean ? Pooling::kMean : Pooling::kSum, ref.data() + col, ld);
    }
    a.bags.push_back(EmbeddingBagSpec{dtables[static_cast<size_t>(b)]->get(), d, col,
                                      c.mean ? BagPooling::Mean : BagPooling::Sum});
    col += d;
  }
  DeviceBuffer doff(offsets.size() * sizeof(int32_t)), didx(std::max<size_t>(indices.size(), 1) * sizeof(int32_t)),
      dout(static_cast<size_t>(std::max<int64_t>(c.n * ld, 1)) * dtype_size(out_t));
  upload_raw(doff.get(), offsets);
  upload_raw(didx.get(), indices);
  dout.poison();
  a.table_type = table_t;
  a.offsets = static_cast<const int32_t*>(doff.get());
  a.indices = static_cast<const int32_t*>(didx.get());
  a.n = c.n;
  a.out = dout.get();
  a.out_type = out_t;
  a.ld_out = ld;
  embedding_bags(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  if (c.n == 0) return;
  const std::vector<float> out = test::download(dout.get(), static_cast<size_t>(c.n * ld), out_t);
  test::round_inplace(ref, out_t);
  const std::vector<float> got = columns(out, c.n, ld, c.first_col, width);
  if (c.max_len == 0) {
    // Every bag empty: exact zeros (and a relative norm would have nothing to compare against).
    EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](float v) { return v == 0.0f; }));
  } else {
    EXPECT_TRUE(test::close_in_norm("embedding_bags", got, columns(ref, c.n, ld, c.first_col, width),
                                    bound_for(table_t, out_t)));
  }
  EXPECT_TRUE(untouched(out, c.n, ld, 0, c.first_col));
  EXPECT_TRUE(untouched(out, c.n, ld, width, ld));
}

TEST(DlrmKernels, EmbeddingBagsMatchTheReference) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmKernels.EmbeddingBags");
  const std::vector<std::pair<DType, DType>> types = {{DType::F32, DType::F32}, {DType::F16, DType::F16},
                                                      {DType::BF16, DType::BF16}, {DType::F32, DType::F16},
                                                      {DType::F16, DType::F32}};
  for (const auto& [tt, ot] : types) {
    SCOPED_TRACE(std::string(dtype_name(tt)) + " -> " + dtype_name(ot));
    for (bool mean : {false, true}) {
      SCOPED_TRACE(mean ? "mean" : "sum");
      BagCase c;
      c.mean = mean;
      // The seed: a 128-wide bottom slot, one 128-dim bag, 1..8-hot.
      c.dims = {128};
      c.first_col = 128;
      c.n = 257;
      c.max_len = 8;
      run_bags(c, tt, ot, rng);
      // Criteo-like: 26 one-hot bags of dim 16 after a 16-wide bottom slot; small rows use lane groups.
      c.dims.assign(26, 16);
      c.first_col = 16;
      c.n = 33;
      c.max_len = 1;
      run_bags(c, tt, ot, rng);
      // DLRM-v2-like multi-hot, empty bags included, mixed dims, the widest rows.
      c.dims = {256, 64, 8, 256};
      c.first_col = 8;
      c.n = 19;
      c.max_len = 40;
      run_bags(c, tt, ot, rng);
      // Odd dims and an odd slot: the scalar path; a padded row stride.
      c.dims = {7, 3, 33};
      c.first_col = 5;
      c.pad = 3;
      c.n = 37;
      c.max_len = 5;
      run_bags(c, tt, ot, rng);
      // Aligned loads but an unaligned slot (the scalar-store path).
      c.dims = {32, 32};
      c.first_col = 1;
      c.pad = 0;
      c.n = 5;
      run_bags(c, tt, ot, rng);
      // One sample; every bag empty; the empty batch.
      c.dims = {64, 16};
      c.first_col = 0;
      c.n = 1;
      run_bags(c, tt, ot, rng);
      c.max_len = 0;
      c.n = 9;
      run_bags(c, tt, ot, rng);
      c.n = 0;
      run_bags(c, tt, ot, rng);
    }
  }
  // More bags than one launch describes (64).
  BagCase many;
  many.dims.assign(70, 4);
  many.n = 11;
  many.max_len = 3;
  run_bags(many, DType::F32, DType::F32, rng);
}

TEST(DlrmKernels, EmbeddingBagsRefuseSlotsOutsideTheRow) {
  EmbeddingBagsArgs a;
  a.bags.push_back(EmbeddingBagSpec{reinterpret_cast<const void*>(0x100), 16, 8, BagPooling::Sum});
  a.offsets = reinterpret_cast<const int32_t*>(0x100);
  a.out = reinterpret_cast<void*>(0x100);
  a.n = 4;
  a.ld_out = 20;
  EXPECT_THROW(embedding_bags(a, nullptr), Error);
}

// ---- interactions ----

// A config whose interaction_ref reads feature rows of `bottom` then bags of the given dims.
DlrmConfig interaction_config(InteractionType type, Pairs pairs, bool include_dense, int64_t bottom,
                              const std::vector<int64_t>& dims) {
  DlrmConfig c;
  c.dense_features = {"x"};
  c.bottom_mlp = {bottom};
  for (size_t b = 0; b < dims.size(); ++b) {
    c.tables.push_back(TableConfig{"t" + std::to_string(b), 4, dims[b]});
    BagConfig bag;
    bag.name = "b" + std::to_string(b);
    bag.table = static_cast<int>(b);
    c.bags.push_back(bag);
  }
  c.interaction.type = type;
  c.interaction.pairs = pairs;
  c.interaction.include_dense = include_dense;
  c.top_mlp = {1};
  return c;
}

PairOrder order_of(Pairs p) {
  switch (p) {
    case Pairs::kStrictLower: return PairOrder::StrictLower;
    case Pairs::kLowerWithDiag: return PairOrder::LowerWithDiag;
    case Pairs::kStrictUpper: return PairOrder::StrictUpper;
    case Pairs::kUpperWithDiag: return PairOrder::UpperWithDiag;
  }
  return PairOrder::StrictLower;
}

const Pairs kAllPairs[] = {Pairs::kStrictLower, Pairs::kLowerWithDiag, Pairs::kStrictUpper, Pairs::kUpperWithDiag};

// Runs dot (vecs vectors of dim d) or outer (bottom + dims) on n random rows of stride ld_feats.
void run_interaction(const DlrmConfig& c, int64_t n, int64_t feats_pad, int64_t out_pad, DType t, std::mt19937_64& rng) {
  const int64_t concat = c.concat_width(), width = c.interaction_out();
  const int64_t ld_feats = concat + feats_pad, ld_out = width + out_pad;
  std::vector<float> feats = test::random_vector(static_cast<size_t>(std::max<int64_t>(n * ld_feats, 1)), rng);
  test::round_inplace(feats, t);
  std::vector<float> ref(static_cast<size_t>(n * width));
  if (n > 0) interaction_ref(c, feats.data(), ld_feats, n, ref.data());
  test::round_inplace(ref, t);
  const size_t es = dtype_size(t);
  DeviceBuffer dfeats(feats.size() * es), dout(static_cast<size_t>(std::max<int64_t>(n * ld_out, 1)) * es);
  test::upload(dfeats.get(), feats, t);
  dout.poison();
  if (c.interaction.type == InteractionType::kDot) {
    DotInteractionArgs a;
    a.feats = dfeats.get();
    a.ld_feats = ld_feats;
    a.n = n;
    a.m = 1 + c.num_bags();
    a.dim = c.bottom_out();
    a.pairs = order_of(c.interaction.pairs);
    a.include_first = c.interaction.include_dense;
    a.out = dout.get();
    a.ld_out = ld_out;
    a.type = t;
    dot_interaction(a, nullptr);
  } else if (c.interaction.type == InteractionType::kOuter) {
    OuterInteractionArgs a;
    a.feats = dfeats.get();
    a.ld_feats = ld_feats;
    a.n = n;
    a.width = concat;
    a.prefix = c.bottom_out();
    a.pairs = order_of(c.interaction.pairs);
    a.out = dout.get();
    a.ld_out = ld_out;
    a.type = t;
    outer_interaction(a, nullptr);
  } else {
    cat_interaction(dfeats.get(), ld_feats, n, concat, dout.get(), ld_out, t, nullptr);
  }
  CUDA_CHECK(cudaDeviceSynchronize());
  if (n == 0 || width == 0) return;
  const std::vector<float> out = test::download(dout.get(), static_cast<size_t>(n * ld_out), t);
  EXPECT_TRUE(test::close_in_norm(std::string("interaction_") + interaction_name(c.interaction.type),
                                  columns(out, n, ld_out, 0, width), ref, test::rel_norm_bound(t)));
  EXPECT_TRUE(untouched(out, n, ld_out, width, ld_out));
}

TEST(DlrmKernels, DotInteractionMatchesTheReference) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmKernels.Dot");
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(t));
    for (Pairs p : kAllPairs) {
      SCOPED_TRACE(pairs_name(p));
      for (bool dense : {true, false}) {
        SCOPED_TRACE(dense ? "include_dense" : "pairs only");
        // Criteo / facebookresearch/dlrm: 26 bags of dim 128 (the usual config uses 16; both run).
        run_interaction(interaction_config(InteractionType::kDot, p, dense, 128, std::vector<int64_t>(26, 128)), 37, 0,
                        3, t, rng);
        run_interaction(interaction_config(InteractionType::kDot, p, dense, 16, std::vector<int64_t>(26, 16)), 64, 8,
                        0, t, rng);
        // Odd dims, one bag, one sample, an empty batch.
        run_interaction(interaction_config(InteractionType::kDot, p, dense, 7, {7, 7}), 5, 1, 1, t, rng);
        run_interaction(interaction_config(InteractionType::kDot, p, dense, 33, {33}), 1, 0, 0, t, rng);
        run_interaction(interaction_config(InteractionType::kDot, p, dense, 8, {8}), 0, 0, 0, t, rng);
      }
    }
    // 64 vectors of dim 256: more than 48 KiB of shared memory (the opt-in path).
    run_interaction(interaction_config(InteractionType::kDot, Pairs::kStrictLower, true, 256,
                                       std::vector<int64_t>(63, 256)),
                    3, 0, 0, t, rng);
  }
}

TEST(DlrmKernels, OuterInteractionMatchesTheReference) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmKernels.Outer");
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(t));
    // The seed: bottom 128 + one bag of 128, upper_with_diag: 128 + 32,896 = 33,024 columns.
    const DlrmConfig seed = interaction_config(InteractionType::kOuter, Pairs::kUpperWithDiag, true, 128, {128});
    ASSERT_EQ(seed.interaction_out(), 33024);
    run_interaction(seed, 5, 0, 0, t, rng);
    run_interaction(seed, 1, 0, 8, t, rng);
    for (Pairs p : kAllPairs) {
      SCOPED_TRACE(pairs_name(p));
      // Odd widths: a ragged last chunk and (odd ld_out) the scalar-store path.
      run_interaction(interaction_config(InteractionType::kOuter, p, true, 3, {5, 4}), 7, 1, 1, t, rng);
      run_interaction(interaction_config(InteractionType::kOuter, p, true, 16, {16, 16}), 9, 0, 0, t, rng);
      run_interaction(interaction_config(InteractionType::kOuter, p, true, 1, {}), 3, 0, 0, t, rng);
      run_interaction(interaction_config(InteractionType::kOuter, p, true, 8, {8}), 0, 0, 0, t, rng);
    }
  }
}

TEST(DlrmKernels, CatInteractionCopiesTheRow) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmKernels.Cat");
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(t));
    run_interaction(interaction_config(InteractionType::kCat, Pairs::kStrictLower, true, 13, {16, 7, 64}), 21, 3, 5,
                    t, rng);
    run_interaction(interaction_config(InteractionType::kCat, Pairs::kStrictLower, true, 13, {16}), 0, 0, 0, t, rng);
  }
  // In place (the feature row already is the concatenation): nothing is enqueued, nothing changes.
  DeviceBuffer d(64 * sizeof(float));
  const std::vector<float> v = test::random_vector(64, rng);
  test::upload(d.get(), v, DType::F32);
  cat_interaction(d.get(), 16, 4, 16, d.get(), 16, DType::F32, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(test::download(d.get(), 64, DType::F32), v);
}

// ---- the DCNv2 cross layer ----

void run_cross(int64_t n, int64_t width, int64_t rank, int64_t pad, bool in_place, DType t, std::mt19937_64& rng) {
  SCOPED_TRACE("n " + std::to_string(n) + " width " + std::to_string(width) + " rank " + std::to_string(rank) +
               (in_place ? " in place" : ""));
  DlrmModel::Cross l;
  l.v = test::random_vector(static_cast<size_t>(rank * width), rng, -0.3f, 0.3f);
  l.w = test::random_vector(static_cast<size_t>(width * rank), rng, -0.3f, 0.3f);
  l.b = test::random_vector(static_cast<size_t>(width), rng, -0.1f, 0.1f);
  std::vector<float> x0 = test::random_vector(static_cast<size_t>(n * width), rng);
  std::vector<float> x = test::random_vector(static_cast<size_t>(n * width), rng);
  for (auto* v : {&l.v, &l.w, &x0, &x}) test::round_inplace(*v, t);
  std::vector<float> ref = x, scratch(static_cast<size_t>(n * rank));
  cross_layer_ref(l, x0.data(), ref.data(), n, width, rank, scratch.data());

  // Device rows carry `pad` extra columns (the feature row's padded stride).
  const int64_t ld = width + pad;
  auto padded = [&](const std::vector<float>& m) {
    std::vector<float> p(static_cast<size_t>(n * ld), 0.0f);
    for (int64_t i = 0; i < n; ++i) std::copy(m.begin() + i * width, m.begin() + (i + 1) * width, p.begin() + i * ld);
    return p;
  };
  const size_t es = dtype_size(t);
  DeviceBuffer dx0(static_cast<size_t>(n * ld) * es), dx(static_cast<size_t>(n * ld) * es),
      dxo(static_cast<size_t>(n * ld) * es), dv(l.v.size() * es), dw(l.w.size() * es), db(l.b.size() * sizeof(float)),
      dt(static_cast<size_t>(n * rank) * es), du(static_cast<size_t>(n * width) * sizeof(float));
  test::upload(dx0.get(), padded(x0), t);
  test::upload(dx.get(), padded(x), t);
  test::upload(dv.get(), l.v, t);
  test::upload(dw.get(), l.w, t);
  test::upload(db.get(), l.b, DType::F32);
  dxo.poison();
  dt.poison();
  du.poison();
  CrossLayerArgs a;
  a.x0 = dx0.get();
  a.ld_x0 = ld;
  a.x_in = dx.get();
  a.x_out = in_place ? dx.get() : dxo.get();
  a.ld_x = ld;
  a.n = n;
  a.width = width;
  a.rank = rank;
  a.v = dv.get();
  a.w = dw.get();
  a.bias = static_cast<const float*>(db.get());
  a.t = dt.get();
  a.u = static_cast<float*>(du.get());
  a.type = t;
  cross_layer(test::shared_gemm_lt(), a, test::shared_gemm_workspace().get(), test::shared_gemm_workspace().size(),
              nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> out = test::download(a.x_out, static_cast<size_t>(n * ld), t);
  test::round_inplace(ref, t);
  EXPECT_TRUE(test::close_in_norm("cross_layer", columns(out, n, ld, 0, width), ref, test::rel_norm_bound(t) * 2));
  if (!in_place) {
    EXPECT_TRUE(untouched(out, n, ld, width, ld));
  }
}

TEST(DlrmKernels, CrossLayerMatchesTheReference) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmKernels.Cross");
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(t));
    run_cross(64, 128, 64, 0, false, t, rng);
    run_cross(19, 37, 5, 3, true, t, rng);
    run_cross(1, 432, 16, 0, false, t, rng);  // DLRM-v2-like width, one sample
  }
}

// ---- top-k ----

// Stable descending order of the valid columns: the oracle of topk_rows.
void topk_ref(const std::vector<float>& s, const std::vector<uint8_t>& mask, int64_t rows, int64_t cols, int k,
              std::vector<float>* vals, std::vector<int32_t>* idx) {
  vals->assign(static_cast<size_t>(rows * k), -std::numeric_limits<float>::infinity());
  idx->assign(static_cast<size_t>(rows * k), -1);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int32_t> ok;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = s[static_cast<size_t>(r * cols + c)];
      if ((mask.empty() || mask[static_cast<size_t>(r * cols + c)]) && v > -std::numeric_limits<float>::infinity()) {
        ok.push_back(static_cast<int32_t>(c));
      }
    }
    std::stable_sort(ok.begin(), ok.end(), [&](int32_t a, int32_t b) {
      return s[static_cast<size_t>(r * cols + a)] > s[static_cast<size_t>(r * cols + b)];
    });
    for (int e = 0; e < k && e < static_cast<int>(ok.size()); ++e) {
      (*idx)[static_cast<size_t>(r * k + e)] = ok[static_cast<size_t>(e)];
      (*vals)[static_cast<size_t>(r * k + e)] = s[static_cast<size_t>(r * cols + ok[static_cast<size_t>(e)])];
    }
  }
}

void run_topk(int64_t rows, int64_t cols, int k, bool with_mask, int distinct, std::mt19937_64& rng) {
  SCOPED_TRACE("rows " + std::to_string(rows) + " cols " + std::to_string(cols) + " k " + std::to_string(k) +
               (with_mask ? " masked" : "") + " distinct " + std::to_string(distinct));
  const size_t total = static_cast<size_t>(rows * cols);
  std::vector<float> s(total);
  std::uniform_int_distribution<int> level(0, distinct - 1);
  std::uniform_real_distribution<float> u(-5.0f, 5.0f);
  std::uniform_int_distribution<int> coin(0, 9);
  for (size_t i = 0; i < total; ++i) {
    // Few distinct values: many ties (the lower index must win). Some -inf (excluded), some -0.
    s[i] = distinct > 0 ? static_cast<float>(level(rng)) - 2.0f : u(rng);
    const int c = coin(rng);
    if (c == 0) s[i] = -std::numeric_limits<float>::infinity();
    if (c == 1 && distinct > 0) s[i] = (i % 2) ? 0.0f : -0.0f;
  }
  std::vector<uint8_t> mask;
  if (with_mask) {
    mask.resize(total);
    for (auto& m : mask) m = coin(rng) < 7 ? 1 : 0;
  }
  std::vector<float> ref_v;
  std::vector<int32_t> ref_i;
  topk_ref(s, mask, rows, cols, k, &ref_v, &ref_i);
  DeviceBuffer ds(std::max<size_t>(total, 1) * sizeof(float)), dm(std::max<size_t>(total, 1)),
      dv(static_cast<size_t>(std::max<int64_t>(rows * k, 1)) * sizeof(float)),
      di(static_cast<size_t>(std::max<int64_t>(rows * k, 1)) * sizeof(int32_t));
  upload_raw(ds.get(), s);
  upload_raw(dm.get(), mask);
  dv.poison();
  di.poison();
  TopKArgs a;
  a.scores = static_cast<const float*>(ds.get());
  a.ld_scores = cols;
  a.mask = with_mask ? static_cast<const uint8_t*>(dm.get()) : nullptr;
  a.ld_mask = cols;
  a.rows = rows;
  a.cols = cols;
  a.k = k;
  a.out_scores = static_cast<float*>(dv.get());
  a.out_index = static_cast<int32_t*>(di.get());
  topk_rows(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<int32_t> gi = download_raw<int32_t>(di.get(), static_cast<size_t>(rows * k));
  const std::vector<float> gv = download_raw<float>(dv.get(), static_cast<size_t>(rows * k));
  for (size_t e = 0; e < gi.size(); ++e) {
    ASSERT_EQ(gi[e], ref_i[e]) << "row " << e / static_cast<size_t>(k) << " rank " << e % static_cast<size_t>(k);
    ASSERT_EQ(gv[e], ref_v[e]) << "row " << e / static_cast<size_t>(k) << " rank " << e % static_cast<size_t>(k);
  }
}

TEST(DlrmKernels, TopKMatchesAStableSort) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DlrmKernels.TopK");
  for (int k : {1, 5, 64}) {
    for (bool mask : {false, true}) {
      run_topk(13, 1000, k, mask, 0, rng);     // distinct random scores
      run_topk(13, 1000, k, mask, 4, rng);     // heavy ties, -0 / +0
      run_topk(3, 7, k, mask, 3, rng);         // fewer valid columns than k: -1 / -inf padding
      run_topk(1, 1, k, mask, 0, rng);
      run_topk(2, 20000, k, mask, 50, rng);    // beyond the shared-memory cache
    }
  }
  run_topk(0, 100, 10, false, 0, rng);  // no rows
  run_topk(4, 0, 3, false, 0, rng);     // no columns: all padding
}

}  // namespace
}  // namespace flurry::dlrm
