#include "kernels/audio/logmel.cuh"
#include "runtime/cuda/device_types.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cufft.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/ref/audio/logmel.h"

#define CUFFT_CHECK(expr)                                                                      \
  do {                                                                                         \
    const cufftResult flurry_cufft_st_ = (expr);                                               \
    if (flurry_cufft_st_ != CUFFT_SUCCESS) {                                                   \
      ::flurry::throw_check_failure("cuFFT", #expr, __FILE__, __LINE__,                        \
                                    "status " + std::to_string(static_cast<int>(flurry_cufft_st_))); \
    }                                                                                          \
  } while (0)

namespace flurry {

namespace {

constexpr int kPad = kMelNfft / 2;           // centred frames: frame t is centred on sample t * hop
constexpr int kFrameElems = kMelWindowFrames * kMelNfft;  // 1.2M windowed samples per window
constexpr int kTileFrames = 32;              // frames per block of the mel kernel: one per lane
constexpr int kMelThreads = 256;
constexpr float kLogFloor = 1e-10f;

size_t align256(size_t n) { return (n + 255) & ~size_t{255}; }

size_t frames_bytes(int batch) {
  return align256(static_cast<size_t>(batch) * kFrameElems * sizeof(float));
}
size_t spectrum_bytes(int batch) {
  return align256(static_cast<size_t>(batch) * kMelWindowFrames * kMelBins * sizeof(cufftComplex));
}

// Order-preserving map of a float onto an unsigned int, so that atomicMax on the code is a float
// max. Code 0 lies below every float's code (it is what a memset to zero gives).
__device__ __forceinline__ unsigned int float_to_ordered(float f) {
  const unsigned int u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float ordered_to_float(unsigned int e) {
  return __uint_as_float((e & 0x80000000u) ? (e & 0x7fffffffu) : ~e);
}

// frames[b, f, n] = hann[n] * x_b[reflect(f * 160 + n - 200)], where x_b is window b padded with
// zeros (or trimmed) to 480000 samples first, as the reference does; in context mode
// hann[n] * buf_b[f * 160 + n] (the caller padded the signal). grid = (ceil(1.2M / threads), batch).
__global__ void frames_kernel(const float* __restrict__ samples, int64_t sample_stride,
                              const int32_t* __restrict__ lengths, bool context, const float* __restrict__ hann,
                              float* __restrict__ frames) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= kFrameElems) return;
  const int b = blockIdx.y;
  const int f = i / kMelNfft;
  const int n = i - f * kMelNfft;
  int j = f * kMelHop + n;  // context mode: the buffer starts kPad samples before frame 0's centre
  int cap = static_cast<int>(kLogMelContextSamples);
  if (!context) {
    j -= kPad;
    if (j < 0) j = -j;  // numpy "reflect": the edge sample is not repeated
    if (j >= kMelWindowSamples) j = 2 * (static_cast<int>(kMelWindowSamples) - 1) - j;
    cap = static_cast<int>(kMelWindowSamples);
  }
  const int len = lengths ? min(max(lengths[b], 0), cap) : cap;
  const float x = j < len ? samples[static_cast<int64_t>(b) * sample_stride + j] : 0.0f;
  frames[static_cast<int64_t>(b) * kFrameElems + i] = hann[n] * x;
}

// One block: kTileFrames consecutive frames of window blockIdx.y. Power spectra go to shared memory
// (row stride 201, odd, so the 32 lanes reading 32 frames at one bin hit 32 banks); warp w computes
// mel rows w, w + 8, ..., lane t frame f0 + t, so the log10 stores are 128-byte coalesced along
// time. The filter weights read are warp-uniform (one broadcast per k).
__global__ void __launch_bounds__(kMelThreads) mel_log_kernel(
    const cufftComplex* __restrict__ spec, const float* __restrict__ filters,
    const int2* __restrict__ spans, int n_mels, float* __restrict__ log_out,
    unsigned int* __restrict__ peak) {
  __shared__ float power[kTileFrames * kMelBins];
  __shared__ float warp_max[kMelThreads / 32];
  const int b = blockIdx.y;
  const int f0 = blockIdx.x * kTileFrames;
  const int nf = min(kTileFrames, kMelWindowFrames - f0);
  const cufftComplex* s =
      spec + (static_cast<int64_t>(b) * kMelWindowFrames + f0) * kMelBins;
  for (int i = threadIdx.x; i < nf * kMelBins; i += kMelThreads) {
    const cufftComplex c = s[i];
    power[i] = c.x * c.x + c.y * c.y;
  }
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float local_max = -INFINITY;
  if (lane < nf) {
    const float* p = power + lane * kMelBins;
    for (int m = warp; m < n_mels; m += kMelThreads / 32) {
      const int2 span = spans[m];
      const float* w = filters + static_cast<int64_t>(m) * kMelBins;
      float acc = 0.0f;
      for (int k = span.x; k < span.y; ++k) acc = fmaf(w[k], p[k], acc);
      const float l = log10f(fmaxf(acc, kLogFloor));
      log_out[(static_cast<int64_t>(b) * n_mels + m) * kMelWindowFrames + f0 + lane] = l;
      local_max = fmaxf(local_max, l);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) local_max = fmaxf(local_max, __shfl_xor_sync(0xffffffffu, local_max, o));
  if (lane == 0) warp_max[warp] = local_max;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = warp_max[0];
#pragma unroll
    for (int w = 1; w < kMelThreads / 32; ++w) m = fmaxf(m, warp_max[w]);
    atomicMax(peak + b, float_to_ordered(m));
  }
}


// out[b, i] = (max(L, floor_b) + 4) / 4 with floor_b = floors[b] or peak_b - 8, and 0 for frames
// at or past valid_frames[b]; four elements per thread (n_mels * 3000 is a multiple
// of 4, and every buffer starts 16-byte aligned). `in` may alias `out` when T is float.
// A pack of 4 never crosses a mel row (3000 % 4 == 0), so one frame index t0 covers it.
template <typename T>
__global__ void clamp_scale_kernel(const float* in, const unsigned int* __restrict__ peak,
                                   const float* __restrict__ floors, const int32_t* __restrict__ valid_frames,
                                   int64_t per_window, T* out) {
  struct alignas(4 * sizeof(T)) Pack {
    T v[4];
  };
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (i >= per_window) return;
  const int b = blockIdx.y;
  const float floor_v = floors ? floors[b] : ordered_to_float(peak[b]) - 8.0f;
  const int valid = valid_frames ? valid_frames[b] : kMelWindowFrames;
  const int t0 = static_cast<int>(i % kMelWindowFrames);
  const float4 l = *reinterpret_cast<const float4*>(in + b * per_window + i);
  Pack p;
  p.v[0] = from_f32<T>(t0 + 0 < valid ? (fmaxf(l.x, floor_v) + 4.0f) * 0.25f : 0.0f);
  p.v[1] = from_f32<T>(t0 + 1 < valid ? (fmaxf(l.y, floor_v) + 4.0f) * 0.25f : 0.0f);
  p.v[2] = from_f32<T>(t0 + 2 < valid ? (fmaxf(l.z, floor_v) + 4.0f) * 0.25f : 0.0f);
  p.v[3] = from_f32<T>(t0 + 3 < valid ? (fmaxf(l.w, floor_v) + 4.0f) * 0.25f : 0.0f);
  *reinterpret_cast<Pack*>(out + b * per_window + i) = p;
}

template <typename T>
void launch_clamp_scale(const float* in, const unsigned int* peak, const float* floors, const int32_t* valid_frames,
                        int n_mels, int batch, void* out, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t per_window = static_cast<int64_t>(n_mels) * kMelWindowFrames;
  const unsigned gx = static_cast<unsigned>((per_window / 4 + kThreads - 1) / kThreads);
  clamp_scale_kernel<T><<<dim3(gx, static_cast<unsigned>(batch)), kThreads, 0, stream>>>(
      in, peak, floors, valid_frames, per_window, static_cast<T*>(out));
  FLURRY_LAUNCH_CHECK("clamp_scale_kernel", stream);
}

__global__ void peak_out_kernel(const unsigned int* __restrict__ peak, int batch, float* __restrict__ out) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b < batch) out[b] = ordered_to_float(peak[b]);
}

}  // namespace

struct LogMelGpu::Impl {
  int n_mels = 0;
  float* filters = nullptr;  // [n_mels, 201]
  int2* spans = nullptr;     // [n_mels]: nonzero columns [x, y) of each filter row
  float* hann = nullptr;     // [400]
  std::map<int, cufftHandle> plans;  // by batch size

  cufftHandle plan_for(int batch) {
    auto it = plans.find(batch);
    if (it != plans.end()) return it->second;
    cufftHandle h = 0;
    int n[1] = {kMelNfft};
    // Packed layout (null embeds): frame i's 400 reals at i * 400, its 201 bins at i * 201.
    CUFFT_CHECK(cufftPlanMany(&h, 1, n, nullptr, 1, kMelNfft, nullptr, 1, kMelBins, CUFFT_R2C,
                              batch * kMelWindowFrames));
    plans.emplace(batch, h);
    return h;
  }
};

LogMelGpu::LogMelGpu(int n_mels) : impl_(std::make_unique<Impl>()) {
  FLURRY_CHECK(n_mels > 0, "LogMelGpu: n_mels must be positive, got " << n_mels);
  impl_->n_mels = n_mels;
  const std::vector<float> f = mel_filters(n_mels);
  std::vector<int2> spans(static_cast<size_t>(n_mels));
  for (int m = 0; m < n_mels; ++m) {
    const float* row = f.data() + static_cast<size_t>(m) * kMelBins;
    int b = 0, e = kMelBins;
    while (b < kMelBins && row[b] == 0.0f) ++b;
    while (e > b && row[e - 1] == 0.0f) --e;
    spans[static_cast<size_t>(m)] = make_int2(b, e);
  }
  // The periodic Hann window in double, rounded once (the reference multiplies in double).
  std::vector<float> hann(kMelNfft);
  for (int j = 0; j < kMelNfft; ++j) {
    hann[static_cast<size_t>(j)] =
        static_cast<float>(0.5 - 0.5 * std::cos(2.0 * 3.14159265358979323846 * j / kMelNfft));
  }
  CUDA_CHECK(cudaMalloc(&impl_->filters, f.size() * sizeof(float)));
  CUDA_CHECK(cudaMalloc(&impl_->spans, spans.size() * sizeof(int2)));
  CUDA_CHECK(cudaMalloc(&impl_->hann, hann.size() * sizeof(float)));
  CUDA_CHECK(cudaMemcpy(impl_->filters, f.data(), f.size() * sizeof(float), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(impl_->spans, spans.data(), spans.size() * sizeof(int2),
                        cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(impl_->hann, hann.data(), hann.size() * sizeof(float), cudaMemcpyHostToDevice));
}

LogMelGpu::~LogMelGpu() {
  for (auto& [batch, h] : impl_->plans) (void)cufftDestroy(h);
  (void)cudaFree(impl_->filters);
  (void)cudaFree(impl_->spans);
  (void)cudaFree(impl_->hann);
}

int LogMelGpu::n_mels() const { return impl_->n_mels; }

size_t LogMelGpu::workspace_bytes(int batch) {
  // The frames region is reused for the fp32 log-mel values once the FFT has consumed it (n_mels
  // * 3000 <= 400 * 3000 floats for any n_mels <= 400).
  return frames_bytes(batch) + spectrum_bytes(batch) + align256(static_cast<size_t>(batch) * 4);
}

void LogMelGpu::prepare(int batch) {
  FLURRY_CHECK(batch > 0, "LogMelGpu::prepare: batch must be positive, got " << batch);
  (void)impl_->plan_for(batch);
}

void LogMelGpu::run(const LogMelArgs& a, void* workspace, size_t ws_bytes, cudaStream_t stream) {
  const int n_mels = impl_->n_mels;
  FLURRY_CHECK(a.batch > 0, "log_mel: batch must be positive, got " << a.batch);
  FLURRY_CHECK(a.samples != nullptr && (a.out != nullptr || a.peak_out != nullptr),
               "log_mel: null samples or output");
  const int64_t window_samples = a.context ? kLogMelContextSamples : kMelWindowSamples;
  FLURRY_CHECK(a.batch == 1 || a.sample_stride >= (a.lengths ? 0 : window_samples),
               "log_mel: sample_stride " << a.sample_stride << " < " << window_samples);
  FLURRY_CHECK(n_mels <= kMelNfft, "log_mel: n_mels " << n_mels << " > 400 does not fit the scratch");
  FLURRY_CHECK(a.out_type == DType::F32 || a.out_type == DType::F16 || a.out_type == DType::BF16,
               "log_mel: output dtype " << dtype_name(a.out_type) << " is not f32, f16 or bf16");
  FLURRY_CHECK((reinterpret_cast<uintptr_t>(a.out) & 15u) == 0, "log_mel: output not 16-byte aligned");
  const bool peak_only = a.out == nullptr;
  FLURRY_CHECK(workspace != nullptr && (reinterpret_cast<uintptr_t>(workspace) & 255u) == 0,
               "log_mel: workspace null or not 256-byte aligned");
  FLURRY_CHECK(ws_bytes >= workspace_bytes(a.batch),
               "log_mel: workspace " << ws_bytes << " bytes < " << workspace_bytes(a.batch));

  char* ws = static_cast<char*>(workspace);
  float* frames = reinterpret_cast<float*>(ws);
  auto* spec = reinterpret_cast<cufftComplex*>(ws + frames_bytes(a.batch));
  auto* peak = reinterpret_cast<unsigned int*>(ws + frames_bytes(a.batch) + spectrum_bytes(a.batch));
  const unsigned batch_u = static_cast<unsigned>(a.batch);

  constexpr int kThreads = 256;
  frames_kernel<<<dim3((kFrameElems + kThreads - 1) / kThreads, batch_u), kThreads, 0, stream>>>(
      a.samples, a.sample_stride, a.lengths, a.context, impl_->hann, frames);
  FLURRY_LAUNCH_CHECK("frames_kernel", stream);

  const cufftHandle plan = impl_->plan_for(a.batch);
  CUFFT_CHECK(cufftSetStream(plan, stream));
  CUFFT_CHECK(cufftExecR2C(plan, frames, spec));

  // fp32 output: the log values go straight to `out` and are finished in place; otherwise (and in
  // a peak pass) they wait in the (now free) frames region.
  float* logs = a.out_type == DType::F32 && !peak_only ? static_cast<float*>(a.out) : frames;
  CUDA_CHECK(cudaMemsetAsync(peak, 0, static_cast<size_t>(a.batch) * sizeof(unsigned int), stream));
  const unsigned tiles = (kMelWindowFrames + kTileFrames - 1) / kTileFrames;
  mel_log_kernel<<<dim3(tiles, batch_u), kMelThreads, 0, stream>>>(spec, impl_->filters, impl_->spans,
                                                                   n_mels, logs, peak);
  FLURRY_LAUNCH_CHECK("mel_log_kernel", stream);
  if (a.peak_out != nullptr) {
    peak_out_kernel<<<(batch_u + 127) / 128, 128, 0, stream>>>(peak, a.batch, a.peak_out);
    FLURRY_LAUNCH_CHECK("peak_out_kernel", stream);
  }
  if (peak_only) return;

  const float* fl = a.floors;
  const int32_t* vf = a.valid_frames;
  switch (a.out_type) {
    case DType::F32: launch_clamp_scale<float>(logs, peak, fl, vf, n_mels, a.batch, a.out, stream); break;
    case DType::F16: launch_clamp_scale<__half>(logs, peak, fl, vf, n_mels, a.batch, a.out, stream); break;
    case DType::BF16:
      launch_clamp_scale<__nv_bfloat16>(logs, peak, fl, vf, n_mels, a.batch, a.out, stream);
      break;
    default: break;
  }
}

}  // namespace flurry
