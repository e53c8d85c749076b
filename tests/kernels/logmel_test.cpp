// GPU log-mel (kernels/audio/logmel.cuh) against the double-precision CPU reference log_mel_window.
//
// Bounds. The GPU computes in fp32 (cuFFT R2C, fp32 power, fp32 filter sums, log10f) against a
// reference in double. For bins well above the floor the error is a few fp32 ulps of the log
// (~1e-6 relative). The exception is the quietest bins that still sit above the max - 8 clamp: a
// mel value 1e-8 below the window's peak power has an amplitude 1e-4 of the peak, while the fp32
// FFT's round-off is ~1e-7 of the frame's largest amplitude, so such a value carries up to ~1e-3
// relative error in power, i.e. ~5e-4 in log10 and ~1e-4 after the / 4. A pure tone puts many
// bins there. Hence 1e-4 on the relative norm (ten times fp32's 1e-5; in practice random audio
// lands near 1e-6) and 2e-3 absolute per element. fp16/bf16 outputs add one rounding of values in
// [-1, 2]: the per-dtype bound of test_util.
//
// Inputs: fresh random audio (uniform noise at several levels), a pure sine, a chirp with
// amplitude modulation, a short window padded with silence, and a window longer than 30 s that
// must be trimmed. Outputs are poisoned; with `lengths`, the samples past each window's length
// are NaN, so reading one fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "kernels/audio/logmel.cuh"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/stream.h"
#include "runtime/ref/audio/logmel.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry {
namespace {

using test::DeviceBuffer;

constexpr double kF32Bound = 1e-4;
constexpr double kF32Atol = 2e-3;

std::vector<float> sine(int64_t n, double hz, double amp) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    x[static_cast<size_t>(i)] =
        static_cast<float>(amp * std::sin(2.0 * 3.14159265358979323846 * hz * i / 16000.0));
  }
  return x;
}

std::vector<float> chirp(int64_t n, std::mt19937_64& rng) {
  std::vector<float> x = test::random_vector(static_cast<size_t>(n), rng, -0.02f, 0.02f);
  for (int64_t i = 0; i < n; ++i) {
    const double t = i / 16000.0;
    const double phase = 2.0 * 3.14159265358979323846 * (100.0 * t + 120.0 * t * t);
    x[static_cast<size_t>(i)] += static_cast<float>(0.4 * std::sin(phase) * (0.6 + 0.4 * std::sin(9.0 * t)));
  }
  return x;
}

// Runs the GPU log-mel over `windows` (any lengths). With use_lengths the windows are uploaded as
// they are, with NaN past each length; otherwise padded or trimmed to 480000 on the host.
std::vector<float> run_gpu(LogMelGpu& mel, const std::vector<std::vector<float>>& windows,
                           DType out_type, bool use_lengths) {
  const int batch = static_cast<int>(windows.size());
  int64_t stride = kMelWindowSamples;
  if (use_lengths) {
    stride = 1;
    for (const auto& w : windows) stride = std::max<int64_t>(stride, static_cast<int64_t>(w.size()));
    stride = std::min<int64_t>(stride + 3, kMelWindowSamples + 3);  // odd stride on purpose
  }
  std::vector<float> host(static_cast<size_t>(stride * batch), std::numeric_limits<float>::quiet_NaN());
  std::vector<int32_t> lengths(static_cast<size_t>(batch));
  for (int b = 0; b < batch; ++b) {
    const auto& w = windows[static_cast<size_t>(b)];
    const int64_t keep = std::min<int64_t>(static_cast<int64_t>(w.size()), stride);
    float* row = host.data() + b * stride;
    std::copy(w.begin(), w.begin() + keep, row);
    if (!use_lengths) std::fill(row + keep, row + stride, 0.0f);
    lengths[static_cast<size_t>(b)] = static_cast<int32_t>(w.size());
  }
  DeviceBuffer d_samples(host.size() * sizeof(float)), d_len(lengths.size() * sizeof(int32_t));
  CUDA_CHECK(cudaMemcpy(d_samples.get(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(d_len.get(), lengths.data(), lengths.size() * sizeof(int32_t),
                        cudaMemcpyHostToDevice));
  const size_t n_out = static_cast<size_t>(batch) * mel.n_mels() * kMelWindowFrames;
  DeviceBuffer d_out(n_out * dtype_size(out_type));
  DeviceBuffer ws(LogMelGpu::workspace_bytes(batch));
  d_out.poison();
  ws.poison();

  LogMelArgs a;
  a.samples = static_cast<const float*>(d_samples.get());
  a.sample_stride = stride;
  a.lengths = use_lengths ? static_cast<const int32_t*>(d_len.get()) : nullptr;
  a.batch = batch;
  a.out = d_out.get();
  a.out_type = out_type;
  Stream stream;
  mel.run(a, ws.get(), ws.size(), stream);
  stream.synchronize();
  return test::download(d_out.get(), n_out, out_type);
}

std::vector<float> run_ref(const std::vector<std::vector<float>>& windows, int n_mels) {
  const size_t per = static_cast<size_t>(n_mels) * kMelWindowFrames;
  std::vector<float> ref(per * windows.size());
  for (size_t b = 0; b < windows.size(); ++b) {
    log_mel_window(windows[b].data(), static_cast<int64_t>(windows[b].size()), n_mels, ref.data() + b * per);
  }
  return ref;
}

void expect_close(const std::string& name, const std::vector<float>& out, const std::vector<float>& ref,
                  DType t) {
  if (t == DType::F32) {
    EXPECT_TRUE(test::close_in_norm(name, out, ref, kF32Bound));
    EXPECT_TRUE(test::close_elementwise(name, out.data(), ref.data(), out.size(), kF32Atol, 0.0));
    std::printf("[logmel] %s: rel norm error %.3g\n", name.c_str(),
                test::rel_norm_error(out.data(), ref.data(), out.size()));
  } else {
    std::vector<float> want = ref;
    test::round_inplace(want, t);
    EXPECT_TRUE(test::close_in_norm(name, out, want, test::rel_norm_bound(t)));
  }
}

TEST(LogMelGpu, RandomAudio80And128Mels) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LogMelGpu.random");
  for (int n_mels : {80, 128}) {
    LogMelGpu mel(n_mels);
    const std::vector<std::vector<float>> one = {
        test::random_vector(static_cast<size_t>(kMelWindowSamples), rng, -0.5f, 0.5f)};
    expect_close("random_b1_m" + std::to_string(n_mels), run_gpu(mel, one, DType::F32, false),
                 run_ref(one, n_mels), DType::F32);
  }
}

TEST(LogMelGpu, MixedBatchOfThree) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LogMelGpu.batch3");
  // A 440 Hz tone over the whole window, a 7.3 s chirp padded with silence, and 31 s of quiet
  // noise that must be trimmed: three very different peaks, each window normalised by its own.
  const std::vector<std::vector<float>> windows = {
      sine(kMelWindowSamples, 440.0, 0.5), chirp(116800, rng),
      test::random_vector(static_cast<size_t>(kMelWindowSamples + 16000), rng, -1e-3f, 1e-3f)};
  for (int n_mels : {80, 128}) {
    LogMelGpu mel(n_mels);
    const std::vector<float> ref = run_ref(windows, n_mels);
    for (bool use_lengths : {false, true}) {
      const std::string nm = "batch3_m" + std::to_string(n_mels) + (use_lengths ? "_lengths" : "_padded");
      expect_close(nm, run_gpu(mel, windows, DType::F32, use_lengths), ref, DType::F32);
    }
  }
}

TEST(LogMelGpu, PureSine) {
  FLURRY_REQUIRE_GPU();
  LogMelGpu mel(128);
  const std::vector<std::vector<float>> w = {sine(kMelWindowSamples, 1000.0, 0.8)};
  expect_close("sine_1k_m128", run_gpu(mel, w, DType::F32, false), run_ref(w, 128), DType::F32);
}

TEST(LogMelGpu, HalfOutputsForTheEncoder) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LogMelGpu.half");
  LogMelGpu mel(128);
  const std::vector<std::vector<float>> windows = {chirp(kMelWindowSamples, rng),
                                                   test::random_vector(200001, rng, -0.3f, 0.3f)};
  const std::vector<float> ref = run_ref(windows, 128);
  for (DType t : {DType::F16, DType::BF16}) {
    expect_close(std::string("half_") + dtype_name(t), run_gpu(mel, windows, t, true), ref, t);
  }
}

// A window alone and inside a batch: the same function (cuFFT may pick another algorithm for
// another batch count, so equal to fp32 rounding, not bit for bit).
TEST(LogMelGpu, BatchingDoesNotChangeResults) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LogMelGpu.batching");
  LogMelGpu mel(80);
  const std::vector<std::vector<float>> windows = {
      test::random_vector(300000, rng, -0.2f, 0.2f), sine(kMelWindowSamples, 3000.0, 0.1),
      chirp(400000, rng), test::random_vector(1000, rng)};
  mel.prepare(1);
  mel.prepare(4);
  const std::vector<float> all = run_gpu(mel, windows, DType::F32, true);
  const size_t per = static_cast<size_t>(80) * kMelWindowFrames;
  for (size_t b = 0; b < windows.size(); ++b) {
    const std::vector<float> alone = run_gpu(mel, {windows[b]}, DType::F32, true);
    EXPECT_TRUE(test::close_in_norm("alone_vs_batch_" + std::to_string(b), all.data() + b * per,
                                    alone.data(), per, 1e-6));
  }
}

TEST(LogMelGpu, RejectsBadArguments) {
  FLURRY_REQUIRE_GPU();
  LogMelGpu mel(80);
  DeviceBuffer ws(LogMelGpu::workspace_bytes(1)), buf(1024);
  LogMelArgs a;
  a.samples = static_cast<const float*>(buf.get());
  a.batch = 1;
  a.out = buf.get();
  EXPECT_THROW(mel.run(a, ws.get(), ws.size() - 1, nullptr), Error) << "workspace too small";
  a.out_type = DType::I32;
  EXPECT_THROW(mel.run(a, ws.get(), ws.size(), nullptr), Error) << "integer output";
  EXPECT_THROW(LogMelGpu(0), Error);
}

}  // namespace
}  // namespace flurry
