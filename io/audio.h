// Audio input: decode a file (WAV, FLAC, Ogg/Vorbis, Ogg/Opus, MP3, and whatever else the
// installed libsndfile reads), mix it to mono and resample it to 16 kHz float32 with libsoxr,
// which is what Whisper's feature extractor consumes.
//
// Only built when libsndfile and libsoxr are found (FLURRY_HAVE_AUDIO=1 for users of flurry_io).
//
// Every failure is a flurry::Error whose message starts with the path and says what is wrong with
// that one file (missing, empty, not audio, truncated, zero-length, unsupported encoding), so the
// runner can turn it into an error record and go on with the next input.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/audio_constants.h"

namespace flurry {

// Whisper's input rate and window (runtime/audio_constants.h).
constexpr int64_t kAudioChunkSamples = kAudioWindowSamples;

struct AudioInfo {
  std::string path;
  int sample_rate = 0;    // of the file, before resampling
  int channels = 0;
  int64_t frames = 0;     // samples per channel, as the header declares them
  double duration_s = 0;  // frames / sample_rate
  std::string container;  // libsndfile's name of the major format, e.g. "WAV (Microsoft)"
  std::string encoding;   // libsndfile's name of the subtype, e.g. "Signed 16 bit PCM"

  // Number of samples load_audio_16k produces for this file (libsoxr rounds n * 16000 / rate).
  int64_t samples_16k() const;
};

// Reads the header only (no decoding): rate, channels, length and format. Fails for files that are
// missing, empty, not audio, of an unsupported encoding, zero-length, or whose length is unknown.
AudioInfo probe_audio(const std::string& path);

// Decodes the whole file to 16 kHz mono float32 (channels averaged; libsoxr's high-quality filter,
// SOXR_HQ; no resampling when the file already is 16 kHz). Integer PCM is scaled to [-1, 1) the way
// libsndfile does it (s16 / 32768, as Whisper's ffmpeg path does). Fails, in addition to the cases
// of probe_audio, when the file decodes to fewer frames than its header declares (truncated).
std::vector<float> load_audio_16k(const std::string& path);

// Streams a file as successive chunks of 16 kHz mono samples in bounded memory (a few blocks plus
// one chunk), for inputs hours long. Concatenated, the chunks equal load_audio_16k's result to
// within libsoxr's block-size-dependent rounding (the tests bound it).
class AudioStream {
 public:
  // chunk_samples: samples per chunk at 16 kHz; every chunk but the last has exactly this many.
  explicit AudioStream(const std::string& path, int64_t chunk_samples = kAudioChunkSamples);
  ~AudioStream();
  AudioStream(AudioStream&&) noexcept;
  AudioStream& operator=(AudioStream&&) noexcept;
  AudioStream(const AudioStream&) = delete;
  AudioStream& operator=(const AudioStream&) = delete;

  const AudioInfo& info() const;
  // Replaces `chunk` with the next chunk; returns false (and leaves `chunk` empty) at the end.
  // Throws flurry::Error when the file turns out to be truncated or corrupt part-way.
  bool next(std::vector<float>& chunk);
  // 16 kHz samples handed out so far.
  int64_t position() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flurry
