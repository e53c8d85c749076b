// CPU reference of Whisper's log-mel spectrogram, the input of the encoder.
//
// Definition (openai-whisper audio.py, and Hugging Face's WhisperFeatureExtractor, which this
// matches frame for frame):
//   1. pad with zeros or trim the 16 kHz input to 480000 samples (30 s);
//   2. centered STFT: reflect-pad 200 samples each side, frames of 400 samples every 160 samples,
//      each multiplied by the 400-point periodic Hann window w[n] = 0.5 - 0.5 cos(2 pi n / 400);
//      480000 samples give 3001 frames, and the last is dropped, leaving 3000;
//   3. power spectrum |X_k|^2 of the 201 one-sided DFT bins (n_fft = 400);
//   4. mel = filters [n_mels, 201] x power (Slaney mel scale, Slaney area normalisation,
//      0 to 8000 Hz; see mel_filters);
//   5. L = log10(max(mel, 1e-10)); L = max(L, max(L) - 8) with the max over the whole window's
//      [n_mels, 3000] matrix; out = (L + 4) / 4.
// Computed in double precision (own mixed-radix FFT) and stored as fp32.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/audio_constants.h"

namespace flurry {

constexpr int64_t kMelWindowSamples = kAudioWindowSamples;  // 30 s at 16 kHz

// Slaney-style mel filter bank as librosa.filters.mel(sr=16000, n_fft=400, n_mels, htk=False,
// norm="slaney") and HF's mel_filter_bank(..., norm="slaney", mel_scale="slaney") define it:
// row-major [n_mels, 201]. n_mels is 80 (Whisper up to large-v2) or 128 (large-v3), but any
// positive count works.
std::vector<float> mel_filters(int n_mels);

// Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per
// factor 6.4 of frequency).
double hz_to_mel_slaney(double hz);
double mel_to_hz_slaney(double mel);

// Power spectrogram of a centered, reflect-padded STFT of `samples` (any length >= 201, the
// reflect pad needs that many): n_frames = 1 + n_samples / 160 frames, written [n_frames, 201]
// row-major into `power`. Exposed for tests of the FFT against a direct DFT.
void stft_power(const float* samples, int64_t n_samples, double* power);

// Whisper's log-mel of one 30 s window: `samples` (16 kHz mono, n_samples of them, any count >= 0)
// is zero-padded or trimmed to 480000, and `out` receives [n_mels, 3000] row-major.
void log_mel_window(const float* samples, int64_t n_samples, int n_mels, float* out);

// The same for `batch` independent windows; out is [batch, n_mels, 3000]. Each window is
// normalised by its own maximum, so a window gives the same result alone and inside a batch.
void log_mel_batch(const float* const* samples, const int64_t* n_samples, int batch, int n_mels,
                   float* out);

}  // namespace flurry
