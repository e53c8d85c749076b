// Whisper's log-mel spectrogram on the GPU: a batch of 30 s windows -> [batch, n_mels, 3000].
//
// The definition is runtime/ref/audio/logmel.h's (the CPU reference and test oracle): reflect pad 200,
// periodic Hann 400, hop 160, 3000 frames, power of the 201 one-sided bins, Slaney mel filters,
// log10(max(mel, 1e-10)), clamp at the window's max - 8, then (x + 4) / 4.
//
// Stages (four launches and one cuFFT call per batch):
//   1. frames: reflect-padded, Hann-windowed frames [batch * 3000, 400] fp32 (one pass over the
//      audio, 2.5x its size: 4.8 MB per window, a few microseconds);
//   2. cuFFT R2C, n = 400, batched over every frame of every window -> [batch * 3000, 201] complex.
//      Chosen over a DFT-as-GEMM (a [402, 400] cos/sin matrix through gemm_gpu) because the FFT
//      costs O(n log n) instead of 400 MACs per bin and its fp32 round-off grows like log n, not
//      like sqrt(n), which matters for the quiet bins that still lie above the max - 8 floor;
//   3. mel + log + max, fused: a block takes 32 frames, turns their spectra into power in shared
//      memory, applies the filter bank using only each filter's nonzero span (about 2 nonzero
//      weights per bin in total instead of a dense [n_mels, 201] GEMM), writes log10 values and
//      folds the block's maximum into the window's peak with one atomic;
//   4. clamp to peak - 8 and scale, writing fp32 (in place) or fp16/bf16 for the encoder.
// Each window is normalised by its own peak, so a window gives the same result alone and in a batch.
//
// Long-form windows (openai-whisper's transcribe(): one spectrogram of the whole file padded with
// 30 s of silence, clamped at the file's peak - 8, cut at `seek` and zero-padded past the segment;
// models/whisper/app/features.h) use three options: `context` (the caller stages the window's
// samples with the 200 samples either side that its edge frames read, so nothing is reflected at
// the window's edges), `floors` (the file's clamp value instead of the window's) and `valid_frames`
// (frames past the segment written as 0, the zero padding of the log-mel segment). `peak_out`
// returns each window's peak, which a first pass over a file's tiles reduces to its floor.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "runtime/dtype.h"

namespace flurry {

struct LogMelArgs {
  // Window b's samples start at samples + b * sample_stride (device, fp32, 16 kHz mono). Without
  // `lengths` every window holds 480000 samples (already padded or trimmed, as the reference does).
  // With `lengths` (device, [batch]) window b holds lengths[b] samples; those past the end, and all
  // past 480000, read as silence, so the row needs only min(lengths[b], 480000) valid samples.
  const float* samples = nullptr;
  int64_t sample_stride = 0;
  const int32_t* lengths = nullptr;
  int batch = 0;
  // With `context`, window b's buffer holds kLogMelContextSamples (480400) samples of the signal,
  // the first being 200 samples before its frame 0's centre: frames read it as it is (the caller
  // has applied the signal's own padding), and `lengths` (optional) counts the valid ones in it.
  bool context = false;
  // Optional device [batch]: the clamp value (log10 units) of window b, instead of its peak - 8.
  const float* floors = nullptr;
  // Optional device [batch]: frames t >= valid_frames[b] of window b are written as 0.
  const int32_t* valid_frames = nullptr;
  // Optional device [batch]: window b's peak (max log10 mel over its 3000 frames) is written here.
  float* peak_out = nullptr;
  // [batch, n_mels, 3000] row-major, F32, F16 or BF16. May be null when peak_out is set (a peak
  // pass: nothing else is written).
  void* out = nullptr;
  DType out_type = DType::F32;
};

// Samples per window buffer in LogMelArgs::context mode: 480000 and 200 either side.
constexpr int64_t kLogMelContextSamples = 480400;

// Holds the filter bank, the Hann window and the cuFFT plans for one n_mels. Not thread-safe: one
// run at a time (the plans are bound to the stream of each run).
class LogMelGpu {
 public:
  explicit LogMelGpu(int n_mels);  // uploads the filter bank (cudaMalloc: start-up only)
  ~LogMelGpu();
  LogMelGpu(const LogMelGpu&) = delete;
  LogMelGpu& operator=(const LogMelGpu&) = delete;

  int n_mels() const;

  // Scratch run() needs for `batch` windows (frames, spectra, per-window peaks), 256-byte aligned
  // pieces; about 9.7 MB per window.
  static size_t workspace_bytes(int batch);

  // Builds the cuFFT plan for `batch` windows. run() builds a missing plan itself, but plan
  // creation allocates device memory, so call this at start-up for each batch size you will run.
  void prepare(int batch);

  // Enqueues the whole computation on `stream`. `workspace` (device) holds workspace_bytes(batch).
  void run(const LogMelArgs& args, void* workspace, size_t workspace_bytes, cudaStream_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flurry
