// GPU decoder embedding (kernels/embed.cuh) against embedding_cpu + add_cpu on rounded tables.
// The GPU adds the two rounded values in fp32 and rounds once, so the reference rounded to the
// dtype must match it exactly (to the last bit, modulo the host's and the device's identical
// round-to-nearest-even); we still compare with the per-dtype bound and additionally elementwise at
// one ulp. Shapes: large-v3 (d 1280) and base (d 384) widths, a width that is not a multiple of 8
// (scalar path), one new token per sequence (a decoding step) and several (the first step), the
// full large-v3 vocabulary. Bad ids and positions must be clamped (finite output, nothing read out
// of bounds) and flagged, without spoiling the other rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/embed.cuh"
#include "runtime/cuda/cuda_check.h"
#include "runtime/ref/ops.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry {
namespace {

using test::DeviceBuffer;

struct Case {
  int64_t n_seq, n_new, vocab, n_pos, d;
  DType type;
};

std::string name_of(const Case& c) {
  return std::string("embed_") + dtype_name(c.type) + "_s" + std::to_string(c.n_seq) + "_n" +
         std::to_string(c.n_new) + "_v" + std::to_string(c.vocab) + "_d" + std::to_string(c.d);
}

struct Result {
  std::vector<float> out;
  int32_t error = 0;
};

Result run_gpu(const Case& c, const std::vector<float>& tok, const std::vector<float>& pos,
               const std::vector<int32_t>& ids, const std::vector<int32_t>& offsets) {
  const size_t e = dtype_size(c.type);
  const size_t n_out = static_cast<size_t>(c.n_seq * c.n_new * c.d);
  DeviceBuffer d_tok(tok.size() * e), d_pos(pos.size() * e), d_out(n_out * e),
      d_ids(ids.size() * 4), d_off(offsets.size() * 4), d_err(4);
  test::upload(d_tok.get(), tok, c.type);
  test::upload(d_pos.get(), pos, c.type);
  CUDA_CHECK(cudaMemcpy(d_ids.get(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(d_off.get(), offsets.data(), offsets.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemset(d_err.get(), 0, 4));
  d_out.poison();
  EmbedArgs a;
  a.ids = static_cast<const int32_t*>(d_ids.get());
  a.offsets = static_cast<const int32_t*>(d_off.get());
  a.tok = d_tok.get();
  a.pos = d_pos.get();
  a.out = d_out.get();
  a.error = static_cast<int32_t*>(d_err.get());
  a.type = c.type;
  a.n_seq = c.n_seq;
  a.n_new = c.n_new;
  a.vocab = c.vocab;
  a.n_pos = c.n_pos;
  a.d = c.d;
  embed_tokens_positions(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  Result r;
  r.out = test::download(d_out.get(), n_out, c.type);
  CUDA_CHECK(cudaMemcpy(&r.error, d_err.get(), 4, cudaMemcpyDeviceToHost));
  return r;
}

void check_case(const Case& c, std::mt19937_64& rng) {
  std::vector<float> tok = test::random_vector(static_cast<size_t>(c.vocab * c.d), rng);
  std::vector<float> pos = test::random_vector(static_cast<size_t>(c.n_pos * c.d), rng, -0.5f, 0.5f);
  test::round_inplace(tok, c.type);
  test::round_inplace(pos, c.type);
  std::vector<int32_t> ids(static_cast<size_t>(c.n_seq * c.n_new)), offsets(static_cast<size_t>(c.n_seq));
  std::uniform_int_distribution<int32_t> id_dist(0, static_cast<int32_t>(c.vocab - 1));
  std::uniform_int_distribution<int32_t> off_dist(0, static_cast<int32_t>(c.n_pos - c.n_new));
  for (auto& id : ids) id = id_dist(rng);
  ids.front() = 0;
  ids.back() = static_cast<int32_t>(c.vocab - 1);  // the table's first and last rows
  for (auto& o : offsets) o = off_dist(rng);
  offsets.back() = static_cast<int32_t>(c.n_pos - c.n_new);  // up to the last position

  // Reference: gather, then add each token's position row.
  std::vector<float> ref(static_cast<size_t>(c.n_seq * c.n_new * c.d));
  embedding_cpu(tok.data(), c.vocab, c.d, ids.data(), static_cast<int64_t>(ids.size()), ref.data());
  for (int64_t s = 0; s < c.n_seq; ++s) {
    for (int64_t j = 0; j < c.n_new; ++j) {
      float* row = ref.data() + (s * c.n_new + j) * c.d;
      add_cpu(row, pos.data() + (offsets[static_cast<size_t>(s)] + j) * c.d, row, c.d);
    }
  }
  test::round_inplace(ref, c.type);

  const Result r = run_gpu(c, tok, pos, ids, offsets);
  EXPECT_EQ(r.error, 0) << name_of(c);
  EXPECT_TRUE(test::close_in_norm(name_of(c), r.out, ref, test::rel_norm_bound(c.type)));
  EXPECT_TRUE(test::close_elementwise(name_of(c), r.out.data(), ref.data(), r.out.size(), 0.0,
                                      c.type == DType::BF16 ? 1.0 / 128 : 1.0 / 1024));
}

TEST(EmbedGpu, MatchesGatherPlusPositions) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("EmbedGpu.match");
  for (DType t : {DType::F16, DType::BF16}) {
    check_case({5, 1, 51866, 448, 384, t}, rng);   // a greedy step over the whole vocabulary
    check_case({4, 4, 1000, 448, 1280, t}, rng);   // the first step: SOT sequence of 4
    check_case({7, 3, 333, 33, 36, t}, rng);       // d not a multiple of 8: scalar path
    check_case({1, 1, 2, 1, 1, t}, rng);           // degenerate: one column, one position
  }
}

TEST(EmbedGpu, BadIdsAndPositionsAreClampedAndFlagged) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("EmbedGpu.bad");
  const Case c{3, 2, 100, 10, 64, DType::F16};
  std::vector<float> tok = test::random_vector(static_cast<size_t>(c.vocab * c.d), rng);
  std::vector<float> pos = test::random_vector(static_cast<size_t>(c.n_pos * c.d), rng);
  test::round_inplace(tok, c.type);
  test::round_inplace(pos, c.type);
  const std::vector<int32_t> good_ids = {1, 2, 3, 4, 5, 6};
  const std::vector<int32_t> good_off = {0, 3, 8};
  const Result good = run_gpu(c, tok, pos, good_ids, good_off);
  EXPECT_EQ(good.error, 0);

  // Bad token ids only.
  std::vector<int32_t> ids = good_ids;
  ids[1] = -7;
  ids[4] = 100;
  Result r = run_gpu(c, tok, pos, ids, good_off);
  EXPECT_EQ(r.error, kEmbedBadToken);
  // Bad positions only: sequence 2 starts at 9, its second token would sit at 10 = n_pos.
  std::vector<int32_t> off = good_off;
  off[2] = 9;
  Result p = run_gpu(c, tok, pos, good_ids, off);
  EXPECT_EQ(p.error, kEmbedBadPosition);
  off[0] = -1;
  Result both = run_gpu(c, tok, pos, ids, off);
  EXPECT_EQ(both.error, kEmbedBadToken | kEmbedBadPosition);

  // Every element written and finite; the untouched rows equal the good run's.
  for (const Result* x : {&r, &p, &both}) {
    for (float v : x->out) ASSERT_TRUE(std::isfinite(v));
  }
  const size_t d = static_cast<size_t>(c.d);
  for (size_t row : {0u, 2u, 3u, 5u}) {
    for (size_t k = 0; k < d; ++k) EXPECT_EQ(r.out[row * d + k], good.out[row * d + k]) << row;
  }
  for (size_t row : {0u, 1u, 2u, 3u}) {  // row 4 moved with its sequence's offset
    for (size_t k = 0; k < d; ++k) EXPECT_EQ(p.out[row * d + k], good.out[row * d + k]) << row;
  }
}

TEST(EmbedGpu, RejectsBadArguments) {
  FLURRY_REQUIRE_GPU();
  DeviceBuffer buf(4096);
  EmbedArgs a;
  a.ids = a.offsets = static_cast<const int32_t*>(buf.get());
  a.tok = a.pos = buf.get();
  a.out = buf.get();
  a.n_seq = a.n_new = a.vocab = a.n_pos = a.d = 1;
  EXPECT_THROW(embed_tokens_positions(a, nullptr), Error) << "null error word";
  a.error = static_cast<int32_t*>(buf.get());
  a.type = DType::F32;
  EXPECT_THROW(embed_tokens_positions(a, nullptr), Error) << "f32 tables are not instantiated";
  a.type = DType::F16;
  a.n_new = 0;
  EXPECT_THROW(embed_tokens_positions(a, nullptr), Error);
}

}  // namespace
}  // namespace flurry
