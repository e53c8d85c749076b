// The streaming long-form log-mel (bounded memory) against the whole-file one, on a file long
// enough for several windows and stream chunks, read at the seeks a transcription makes.
#include <gtest/gtest.h>
#include <sndfile.h>

#include <filesystem>

#include "io/audio.h"
#include "models/whisper/app/features.h"
#include "runtime/ref/audio/logmel.h"
#include "tests/common/test_util.h"

namespace flurry::whisper {
namespace {

std::string write_test_wav(const std::vector<float>& x, const std::string& name) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  SF_INFO info{};
  info.samplerate = 16000;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  EXPECT_NE(f, nullptr);
  sf_write_float(f, x.data(), static_cast<sf_count_t>(x.size()));
  sf_close(f);
  return path;
}

TEST(StreamingLogMel, EqualsWholeFileSpectrogramAtEverySeek) {
  auto rng = test::test_rng("streaming-mel");
  // 75.3 s: two and a half windows and several 10 s stream chunks; a tone that rises so the
  // global maximum sits late in the file, where a per-window maximum would differ.
  const int64_t n = 16000 * 75 + 4800;
  std::vector<float> x = test::random_vector(static_cast<size_t>(n), rng, -0.01f, 0.01f);
  for (int64_t i = 0; i < n; ++i) x[i] += 0.5f * (float(i) / n) * std::sin(0.06f * float(i));
  const std::string path = write_test_wav(x, "flurry-stream-mel.wav");
  const std::vector<float> decoded = load_audio_16k(path);
  ASSERT_EQ(static_cast<int64_t>(decoded.size()), n);

  for (int n_mels : {80, 128}) {
    const LogMel whole = log_mel_whole(decoded.data(), n, n_mels);
    StreamingLogMel stream(path, n_mels);
    ASSERT_EQ(stream.n_frames(), whole.n_frames);
    ASSERT_EQ(stream.content_frames(), whole.content_frames);
    std::vector<float> a(static_cast<size_t>(n_mels) * kMelWindowFrames), b(a.size());
    // Forward seeks as long-form decoding makes them, a short last window, and one seek back.
    for (int64_t seek : {int64_t{0}, int64_t{2650}, int64_t{5650}, int64_t{7000}, int64_t{7500}, int64_t{1200}}) {
      const int64_t len = std::min<int64_t>(kMelWindowFrames, whole.content_frames - seek);
      whole.window(seek, len, a.data());
      test::poison(b.data(), b.size() * sizeof(float));
      stream.window(seek, len, b.data());
      EXPECT_TRUE(test::close_in_norm("mel seek " + std::to_string(seek), b, a, 1e-6)) << n_mels;
    }
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace flurry::whisper
