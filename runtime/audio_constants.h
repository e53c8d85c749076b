// The audio geometry Whisper fixes, defined once for every layer that needs it (audio decoding in
// io/, the log-mel reference and kernel, the Whisper model and its decoding): 16 kHz mono input,
// 30 s windows, a 25 ms analysis window (400 samples) every 10 ms (160 samples), so a window holds
// 3000 mel frames; the encoder halves the frame rate, so a timestamp token step is 20 ms.
#pragma once

#include <cstdint>

namespace flurry {

constexpr int kAudioSampleRate = 16000;
constexpr int kAudioWindowSeconds = 30;
constexpr int64_t kAudioWindowSamples = int64_t{kAudioWindowSeconds} * kAudioSampleRate;  // 480000
constexpr int kMelNfft = 400;
constexpr int kMelHop = 160;
constexpr int kMelBins = kMelNfft / 2 + 1;  // 201 one-sided DFT bins
constexpr int kMelWindowFrames = static_cast<int>(kAudioWindowSamples / kMelHop);  // 3000
static_assert(kMelWindowFrames == 3000, "Whisper's window is 3000 mel frames");

}  // namespace flurry
