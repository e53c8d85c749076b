// Whole-input log-mel as openai-whisper's transcribe() computes it: the audio with 30 s of
// silence appended, one spectrogram over all of it, clamped to (global max - 8). Windows are then
// cut from it (and zero-padded to 3000 frames) by the long-form driver. The single-window
// reference (runtime/ref/logmel.h) normalises each window by its own maximum instead, which is
// what Hugging Face's feature extractor does for one 30 s input.
#pragma once

#include <cstdint>
#include <vector>

namespace flurry::whisper {

struct LogMel {
  int n_mels = 0;
  int64_t n_frames = 0;        // all frames, padding included: (n_samples + 480000) / 160
  int64_t content_frames = 0;  // frames of real audio: n_samples / 160
  std::vector<float> data;     // [n_mels, n_frames] row-major

  // Copies frames [seek, seek + n) into out [n_mels, 3000], zero-filling past n or past the end.
  void window(int64_t seek, int64_t n, float* out) const;
};

// Computed in blocks of frames so the double-precision power spectrum never holds the whole file.
LogMel log_mel_whole(const float* samples, int64_t n_samples, int n_mels);

}  // namespace flurry::whisper
