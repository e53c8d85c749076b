// GPU encoder front end (models/whisper/gpu/conv_frontend.cuh) against the CPU reference: conv1d_k3_cpu +
// gelu_erf_inplace for both convolutions, then + positions, per window, in fp32 from inputs rounded
// to the kernel's dtype. The GPU rounds h1 to the dtype between the convolutions (the reference
// does not): one more rounding of 2^-9 (bf16) or 2^-12 (fp16) relative, well inside the per-dtype
// relative-norm bound. Weights are scaled so that pre-activations are of unit size and the GELU's
// curved region is exercised. Outputs are poisoned, and a guard region after the output must keep
// its poison. Shapes: Whisper base (d 384, 80 mels), large-v3 (d 1280, 128 mels) with batch 2,
// and short odd lengths with widths that are not a multiple of 8 (the scalar paths).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "models/whisper/gpu/conv_frontend.cuh"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/cuda/stream.h"
#include "runtime/ref/ops.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry {
namespace {

using test::DeviceBuffer;
using test::shared_gemm_lt;
using test::shared_gemm_workspace;

struct Case {
  int64_t batch, n_mels, t_in, d;
  DType type;
};

std::string name_of(const Case& c) {
  return std::string("conv_frontend_") + dtype_name(c.type) + "_b" + std::to_string(c.batch) + "_m" +
         std::to_string(c.n_mels) + "_t" + std::to_string(c.t_in) + "_d" + std::to_string(c.d);
}

std::vector<float> rounded(size_t n, std::mt19937_64& rng, float scale, DType t) {
  std::vector<float> v = test::random_vector(n, rng, -scale, scale);
  test::round_inplace(v, t);
  return v;
}

void check_case(const Case& c, std::mt19937_64& rng) {
  const int64_t t_out = conv_frontend_out_len(c.t_in);
  ASSERT_EQ(t_out, conv1d_out_len(c.t_in, 2));
  const int64_t n_pos = t_out + 3;  // the table may be longer than what is used
  const DType t = c.type;
  // Unit-variance pre-activations: K products of U(-1,1) x U(-a,a) have variance K a^2 / 9.
  const float a1 = 3.0f / std::sqrt(static_cast<float>(3 * c.n_mels));
  const float a2 = 3.0f / std::sqrt(static_cast<float>(3 * c.d)) * 1.5f;  // GELU output is not unit-sized
  const std::vector<float> mel = rounded(static_cast<size_t>(c.batch * c.n_mels * c.t_in), rng, 1.0f, t);
  const std::vector<float> w1 = rounded(static_cast<size_t>(c.d * c.n_mels * 3), rng, a1, t);
  const std::vector<float> b1 = rounded(static_cast<size_t>(c.d), rng, 0.5f, t);
  const std::vector<float> w2 = rounded(static_cast<size_t>(c.d * c.d * 3), rng, a2, t);
  const std::vector<float> b2 = rounded(static_cast<size_t>(c.d), rng, 0.5f, t);
  const std::vector<float> pos = rounded(static_cast<size_t>(n_pos * c.d), rng, 1.0f, t);

  // Reference, one window at a time.
  const size_t out_n = static_cast<size_t>(c.batch * t_out * c.d);
  std::vector<float> ref(out_n), h1(static_cast<size_t>(c.t_in * c.d));
  for (int64_t b = 0; b < c.batch; ++b) {
    conv1d_k3_cpu(mel.data() + b * c.n_mels * c.t_in, false, w1.data(), b1.data(), h1.data(), c.n_mels,
                  c.t_in, c.d, 1);
    gelu_erf_inplace(h1.data(), static_cast<int64_t>(h1.size()));
    float* o = ref.data() + b * t_out * c.d;
    conv1d_k3_cpu(h1.data(), true, w2.data(), b2.data(), o, c.d, c.t_in, c.d, 2);
    gelu_erf_inplace(o, t_out * c.d);
    add_cpu(o, pos.data(), o, t_out * c.d);
  }

  const size_t e = dtype_size(t);
  constexpr size_t kGuard = 64;
  DeviceBuffer d_mel(mel.size() * e), d_w1(w1.size() * e), d_b1(b1.size() * e), d_w2(w2.size() * e),
      d_b2(b2.size() * e), d_pos(pos.size() * e), d_out((out_n + kGuard) * e);
  test::upload(d_mel.get(), mel, t);
  test::upload(d_w1.get(), w1, t);
  test::upload(d_b1.get(), b1, t);
  test::upload(d_w2.get(), w2, t);
  test::upload(d_b2.get(), b2, t);
  test::upload(d_pos.get(), pos, t);
  d_out.poison();

  ConvFrontendArgs a;
  a.mel = d_mel.get();
  a.w1 = d_w1.get();
  a.b1 = d_b1.get();
  a.w2 = d_w2.get();
  a.b2 = d_b2.get();
  a.pos = d_pos.get();
  a.out = d_out.get();
  a.type = t;
  a.batch = c.batch;
  a.n_mels = c.n_mels;
  a.t_in = c.t_in;
  a.d = c.d;
  DeviceBuffer ws(conv_frontend_workspace_bytes(a));
  ws.poison();  // stale scratch must not leak into the result (padding rows are written as zeros)
  Stream stream;
  conv_frontend(shared_gemm_lt(), a, ws.get(), ws.size(), shared_gemm_workspace().get(),
                shared_gemm_workspace().size(), stream);
  stream.synchronize();

  std::vector<uint8_t> raw((out_n + kGuard) * e);
  CUDA_CHECK(cudaMemcpy(raw.data(), d_out.get(), raw.size(), cudaMemcpyDeviceToHost));
  std::vector<float> out(out_n);
  convert_to_f32(raw.data(), out.data(), out_n, t);
  for (size_t i = out_n * e; i < raw.size(); ++i) {
    ASSERT_EQ(raw[i], 0xFF) << name_of(c) << ": wrote past the output (byte " << i << ")";
  }
  EXPECT_TRUE(test::close_in_norm(name_of(c), out, ref, test::rel_norm_bound(t)));
  std::printf("[conv_frontend] %s: rel norm error %.3g\n", name_of(c).c_str(),
              test::rel_norm_error(out.data(), ref.data(), out.size()));
}

TEST(ConvFrontendGpu, WhisperBase) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("ConvFrontendGpu.base");
  check_case({1, 80, 3000, 384, DType::F16}, rng);
  check_case({2, 80, 3000, 384, DType::BF16}, rng);
}

TEST(ConvFrontendGpu, LargeV3BatchOfTwo) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("ConvFrontendGpu.large");
  check_case({2, 128, 3000, 1280, DType::F16}, rng);
  check_case({2, 128, 3000, 1280, DType::BF16}, rng);
}

TEST(ConvFrontendGpu, ShortOddLengthsAndWidths) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("ConvFrontendGpu.odd");
  for (DType t : {DType::F16, DType::BF16}) {
    check_case({3, 128, 7, 384, t}, rng);   // t_out 4: windows of 7 frames, not a tile multiple
    check_case({2, 5, 33, 36, t}, rng);     // 5 mels; d = 36 takes the scalar GELU + positions path
    check_case({1, 80, 1, 64, t}, rng);     // a single frame: both taps outside the input
    check_case({2, 80, 66, 40, t}, rng);    // even length: the last output sees the final frame
  }
}

// The same window alone and inside a batch gives the same output.
TEST(ConvFrontendGpu, BatchingDoesNotChangeResults) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("ConvFrontendGpu.batching");
  const Case c{3, 80, 250, 128, DType::F16};
  const int64_t t_out = conv_frontend_out_len(c.t_in);
  const DType t = c.type;
  const std::vector<float> mel = rounded(static_cast<size_t>(c.batch * c.n_mels * c.t_in), rng, 1.0f, t);
  const std::vector<float> w1 = rounded(static_cast<size_t>(c.d * c.n_mels * 3), rng, 0.2f, t);
  const std::vector<float> w2 = rounded(static_cast<size_t>(c.d * c.d * 3), rng, 0.1f, t);
  const std::vector<float> bias = rounded(static_cast<size_t>(c.d), rng, 0.5f, t);
  const std::vector<float> pos = rounded(static_cast<size_t>(t_out * c.d), rng, 1.0f, t);
  const size_t e = dtype_size(t);
  DeviceBuffer d_mel(mel.size() * e), d_w1(w1.size() * e), d_w2(w2.size() * e), d_bias(bias.size() * e),
      d_pos(pos.size() * e), d_out(static_cast<size_t>(c.batch * t_out * c.d) * e);
  test::upload(d_mel.get(), mel, t);
  test::upload(d_w1.get(), w1, t);
  test::upload(d_w2.get(), w2, t);
  test::upload(d_bias.get(), bias, t);
  test::upload(d_pos.get(), pos, t);
  ConvFrontendArgs a;
  a.w1 = d_w1.get();
  a.b1 = a.b2 = d_bias.get();
  a.w2 = d_w2.get();
  a.pos = d_pos.get();
  a.type = t;
  a.n_mels = c.n_mels;
  a.t_in = c.t_in;
  a.d = c.d;
  auto run = [&](int64_t first, int64_t count) {
    a.mel = d_mel.bytes_ptr() + first * c.n_mels * c.t_in * e;
    a.out = d_out.get();
    a.batch = count;
    d_out.poison();
    DeviceBuffer ws(conv_frontend_workspace_bytes(a));
    conv_frontend(shared_gemm_lt(), a, ws.get(), ws.size(), shared_gemm_workspace().get(),
                  shared_gemm_workspace().size(), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    return test::download(d_out.get(), static_cast<size_t>(count * t_out * c.d), t);
  };
  const std::vector<float> all = run(0, c.batch);
  const size_t per = static_cast<size_t>(t_out * c.d);
  for (int64_t b = 0; b < c.batch; ++b) {
    const std::vector<float> alone = run(b, 1);
    // cuBLASLt may pick another algorithm for another m: equal to the dtype's rounding.
    EXPECT_TRUE(test::close_in_norm("alone_vs_batch_" + std::to_string(b), all.data() + b * per,
                                    alone.data(), per, 2e-3));
  }
}

TEST(ConvFrontendGpu, RejectsBadArguments) {
  FLURRY_REQUIRE_GPU();
  DeviceBuffer buf(1 << 16);
  ConvFrontendArgs a;
  a.mel = a.w1 = a.b1 = a.w2 = a.b2 = a.pos = buf.get();
  a.out = buf.get();
  a.batch = 1;
  a.n_mels = 8;
  a.t_in = 8;
  a.d = 8;
  a.type = DType::F32;
  EXPECT_THROW(conv_frontend(shared_gemm_lt(), a, buf.get(), buf.size(), shared_gemm_workspace().get(),
                             shared_gemm_workspace().size(), nullptr),
               Error);
  a.type = DType::F16;
  EXPECT_THROW(conv_frontend(shared_gemm_lt(), a, buf.get(), 16, shared_gemm_workspace().get(),
                             shared_gemm_workspace().size(), nullptr),
               Error)
      << "workspace too small";
  a.t_in = 0;
  EXPECT_THROW(conv_frontend(shared_gemm_lt(), a, buf.get(), buf.size(), shared_gemm_workspace().get(),
                             shared_gemm_workspace().size(), nullptr),
               Error);
}

}  // namespace
}  // namespace flurry
