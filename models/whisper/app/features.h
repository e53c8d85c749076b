// Log-mel input for long-form transcription, as openai-whisper's transcribe() computes it: the
// audio with 30 s of silence appended, one spectrogram over all of it, clamped to (global max - 8).
// Windows are cut from it (and zero-padded to 3000 frames) by the long-form driver. The single-
// window reference (runtime/ref/audio/logmel.h) normalises each window by its own maximum instead, which
// is what Hugging Face's feature extractor does for one 30 s input.
//
// Two forms with the same numbers:
//  - LogMel: the whole spectrogram in memory (simple; the tests' oracle for the streaming form);
//  - StreamingLogMel: bounded memory for inputs hours long. A first pass streams the file once to
//    find the length and the global maximum; windows are then computed on demand from a rolling
//    buffer of samples while a second stream moves forward with the driver's seek.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace flurry {
class AudioStream;
}

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

class StreamingLogMel {
 public:
  // Streams `path` once (first pass); throws flurry::Error for a bad file.
  StreamingLogMel(const std::string& path, int n_mels);
  ~StreamingLogMel();

  int64_t n_samples() const { return n_samples_; }
  int64_t n_frames() const { return n_frames_; }
  int64_t content_frames() const { return n_samples_ / 160; }
  double duration_s() const { return static_cast<double>(n_samples_) / 16000.0; }

  // As LogMel::window. Seeks normally move forward; an earlier seek restarts the stream.
  void window(int64_t seek, int64_t n, float* out);

 private:
  // Makes buf_ hold padded-signal samples [s0, s1) (zeros past the audio), reading forward.
  void fill(int64_t s0, int64_t s1);

  std::string path_;
  int n_mels_;
  int64_t n_samples_ = 0, n_frames_ = 0;
  float floor_ = 0.0f;  // global max - 8, in log10 units
  std::vector<float> filters_;
  std::unique_ptr<AudioStream> stream_;
  std::vector<float> buf_;  // padded-signal samples [buf_start_, buf_start_ + buf_.size())
  int64_t buf_start_ = 0;
  bool stream_done_ = false;
  std::vector<float> chunk_, block_;
  std::vector<double> power_;
};

}  // namespace flurry::whisper
