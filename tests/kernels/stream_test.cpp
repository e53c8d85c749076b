// GPU tests of the CUDA runtime helpers: the device arena, streams and events (ordering and
// timing), pinned staging buffers, and graph capture/replay of kernels and of a cuBLASLt GEMM.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "runtime/cuda/gemm_gpu.h"
#include "runtime/arena.h"
#include "runtime/check.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/cuda/stream.h"
#include "runtime/gemm.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry {
namespace {

// Adds bias[j] to every row of a [rows, cols] fp32 matrix on `stream` (one bias_act launch).
void add_bias(float* c, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  BiasActArgs a;
  a.c = c;
  a.bias = bias;
  a.type = DType::F32;
  a.rows = rows;
  a.cols = cols;
  a.ldc = cols;
  a.epilogue = Epilogue::Bias;
  bias_act(a, stream);
}

TEST(DeviceArena, AlignedSubAllocationsHoldData) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("DeviceArena");
  Arena arena(size_t{8} << 20, Where::Device, "test-device-arena");
  ASSERT_EQ(arena.where(), Where::Device);
  const int64_t rows = 33, cols = 7;
  Tensor x = arena.alloc_tensor(DType::F32, {rows, cols}, "x");
  void* odd = arena.alloc(3, "odd");
  Tensor bias = arena.alloc_tensor(DType::F32, {cols}, "bias");
  EXPECT_TRUE(x.on_device());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x.data) % Arena::kDefaultAlign, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(bias.data) % Arena::kDefaultAlign, 0u);
  EXPECT_NE(odd, nullptr);

  std::vector<float> hx = test::random_vector(rows * cols, rng), hb = test::random_vector(cols, rng);
  Stream stream;
  PinnedBuffer staging((hx.size() + hb.size()) * sizeof(float));
  std::memcpy(staging.as<float>(), hx.data(), hx.size() * sizeof(float));
  std::memcpy(staging.as<float>() + hx.size(), hb.data(), hb.size() * sizeof(float));
  CUDA_CHECK(cudaMemcpyAsync(x.data, staging.data(), x.nbytes(), cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaMemcpyAsync(bias.data, staging.as<float>() + hx.size(), bias.nbytes(),
                             cudaMemcpyHostToDevice, stream));
  add_bias(x.ptr<float>(), bias.ptr<float>(), rows, cols, stream);
  test::poison(staging.data(), staging.size());
  CUDA_CHECK(cudaMemcpyAsync(staging.data(), x.data, x.nbytes(), cudaMemcpyDeviceToHost, stream));
  Event done(false);
  done.record(stream);
  done.synchronize();
  EXPECT_TRUE(done.done());

  std::vector<float> want(hx.size());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) want[i * cols + j] = hx[i * cols + j] + hb[j];
  }
  EXPECT_TRUE(test::close_in_norm("arena_bias", staging.as<float>(), want.data(), want.size(), 1e-6));

  // Stack-order release gives the space back; the high-water mark remembers the peak.
  const size_t mark = arena.mark();
  arena.alloc(size_t{1} << 20, "scratch");
  EXPECT_GE(arena.high_water(), mark + (size_t{1} << 20));
  arena.release(mark);
  EXPECT_EQ(arena.used(), mark);
  EXPECT_THROW(arena.alloc(size_t{64} << 20, "too big"), Error);
}

TEST(StreamEvent, CrossStreamOrderingAndTiming) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("StreamEvent");
  const int64_t rows = 256, cols = 1024;
  std::vector<float> hx = test::random_vector(rows * cols, rng), hb = test::random_vector(cols, rng);
  test::DeviceBuffer dx(hx.size() * 4), db(hb.size() * 4);
  Stream copy, compute;
  Event start, uploaded(false), end;
  start.record(copy);
  CUDA_CHECK(cudaMemcpyAsync(dx.get(), hx.data(), dx.size(), cudaMemcpyHostToDevice, copy));
  CUDA_CHECK(cudaMemcpyAsync(db.get(), hb.data(), db.size(), cudaMemcpyHostToDevice, copy));
  uploaded.record(copy);
  compute.wait(uploaded);  // the kernel must see the uploads
  add_bias(static_cast<float*>(dx.get()), static_cast<const float*>(db.get()), rows, cols, compute);
  end.record(compute);
  const float ms = end.elapsed_ms_since(start);
  EXPECT_GE(ms, 0.0f);
  EXPECT_LT(ms, 10000.0f);

  const std::vector<float> out = test::download(dx.get(), hx.size(), DType::F32);
  std::vector<float> want(hx.size());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) want[i * cols + j] = hx[i * cols + j] + hb[j];
  }
  EXPECT_TRUE(test::close_in_norm("cross_stream", out, want, 1e-6));

  // Moves leave the source empty, and the moved-to objects still work.
  Stream moved = std::move(compute);
  EXPECT_EQ(compute.get(), nullptr);
  moved.synchronize();
  PinnedBuffer p1(64), p2;
  p2 = std::move(p1);
  EXPECT_EQ(p1.data(), nullptr);
  EXPECT_EQ(p2.size(), 64u);
}

TEST(CudaGraph, ReplaysCapturedKernels) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("CudaGraph.kernels");
  const int64_t rows = 7, cols = 33;
  std::vector<float> hx = test::random_vector(rows * cols, rng), hb = test::random_vector(cols, rng);
  test::DeviceBuffer dx(hx.size() * 4), db(hb.size() * 4);
  test::upload(dx.get(), hx, DType::F32);
  test::upload(db.get(), hb, DType::F32);
  Stream stream;
  CudaGraph graph;
  graph.capture(stream, [&] {
    add_bias(static_cast<float*>(dx.get()), static_cast<const float*>(db.get()), rows, cols, stream);
    add_bias(static_cast<float*>(dx.get()), static_cast<const float*>(db.get()), rows, cols, stream);
  });
  ASSERT_TRUE(graph.ready());
  EXPECT_EQ(graph.num_nodes(), 2u);
  // Capture only records: nothing ran yet.
  stream.synchronize();
  EXPECT_EQ(test::download(dx.get(), hx.size(), DType::F32), hx);
  const int replays = 3;
  for (int i = 0; i < replays; ++i) graph.launch(stream);
  stream.synchronize();
  std::vector<float> want(hx.size());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) want[i * cols + j] = hx[i * cols + j] + 2 * replays * hb[j];
  }
  EXPECT_TRUE(test::close_in_norm("graph_replay", test::download(dx.get(), hx.size(), DType::F32),
                                  want, 1e-6));

  // A failure inside the capture ends it cleanly; the stream stays usable.
  EXPECT_THROW(graph.capture(stream, [] { throw Error("inside capture"); }), Error);
  EXPECT_FALSE(graph.ready());
  add_bias(static_cast<float*>(dx.get()), static_cast<const float*>(db.get()), rows, cols, stream);
  stream.synchronize();
}

TEST(CudaGraph, ReplaysCublasLtGemm) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("CudaGraph.gemm");
  const int64_t m = 33, n = 64, k = 40;
  GemmArgs g = gemm_dense(m, n, k, false, true, DType::F16, DType::F16);
  g.epilogue = Epilogue::BiasGeluErf;
  g.alpha = 0.25f;
  std::vector<float> a = test::random_vector(m * k, rng), b = test::random_vector(n * k, rng),
                     bias = test::random_vector(n, rng), ref(m * n);
  test::round_inplace(a, DType::F16);
  test::round_inplace(b, DType::F16);
  test::round_inplace(bias, DType::F16);
  GemmArgs r = g;
  r.ab_type = r.c_type = DType::F32;
  r.a = a.data();
  r.b = b.data();
  r.bias = bias.data();
  r.c = ref.data();
  gemm_cpu(r);

  test::DeviceBuffer da(a.size() * 2), dbm(b.size() * 2), dbias(bias.size() * 2), dc(ref.size() * 2),
      ws(GemmLt::kWorkspaceBytes);
  test::upload(da.get(), a, DType::F16);
  test::upload(dbm.get(), b, DType::F16);
  test::upload(dbias.get(), bias, DType::F16);
  g.a = da.get();
  g.b = dbm.get();
  g.bias = dbias.get();
  g.c = dc.get();
  GemmLt lt;
  Stream stream;
  // One eager run builds the plan, so the capture records only the launches.
  gemm_gpu(lt, g, ws.get(), ws.size(), stream);
  stream.synchronize();
  dc.poison();
  CudaGraph graph;
  graph.capture(stream, [&] { gemm_gpu(lt, g, ws.get(), ws.size(), stream); });
  graph.launch(stream);
  stream.synchronize();
  EXPECT_TRUE(test::close_in_norm("graph_gemm", test::download(dc.get(), ref.size(), DType::F16), ref,
                                  test::rel_norm_bound(DType::F16)));
}

}  // namespace
}  // namespace flurry
