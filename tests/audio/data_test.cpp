// Checks against data from outside the repository, each skipping with a reason when it is absent:
// jfk.wav from ../shared/data (decode, and log-mel against HF's golden) and openai-whisper's shipped
// filter banks (fetched into models-cache/ by tools/fetch_openai_whisper.sh). A separate binary so
// that CTest's skip detection never masks the self-contained tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/ref/audio/logmel.h"
#include "tests/audio/mel_golden.h"
#include "tests/common/test_util.h"
#ifdef FLURRY_HAVE_AUDIO
#include "io/audio.h"
#endif

namespace flurry {
namespace {

// Minimal .npy reader for the fetched openai-whisper banks: little-endian float32, C order, 2-D.
std::vector<float> read_npy_f32(const std::string& path, int64_t& rows, int64_t& cols) {
  std::ifstream in(path, std::ios::binary);
  FLURRY_CHECK(in, path << ": cannot open");
  char magic[8];
  in.read(magic, 8);
  FLURRY_CHECK(in && std::memcmp(magic, "\x93NUMPY", 6) == 0, path << ": not an .npy file");
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    in.read(reinterpret_cast<char*>(b), 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  std::string header(hlen, '\0');
  in.read(&header[0], hlen);
  FLURRY_CHECK(header.find("'<f4'") != std::string::npos, path << ": not float32: " << header);
  FLURRY_CHECK(header.find("'fortran_order': False") != std::string::npos, path << ": not C order");
  size_t lp = header.find('('), comma = header.find(',', lp), rp = header.find(')', lp);
  rows = std::stoll(header.substr(lp + 1, comma - lp - 1));
  cols = std::stoll(header.substr(comma + 1, rp - comma - 1));
  std::vector<float> v(static_cast<size_t>(rows * cols));
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  FLURRY_CHECK(in, path << ": short data");
  return v;
}

TEST(LogMel, FiltersMatchOpenaiWhisperAssets) {
  const std::string dir = std::string(FLURRY_SOURCE_DIR) + "/models-cache/openai-whisper/";
  for (int n_mels : {80, 128}) {
    const std::string path = dir + "mel_" + std::to_string(n_mels) + ".npy";
    if (!std::ifstream(path)) {
      FLURRY_REQUIRE_MODEL_DATA(false, path << " absent (run make models: tools/fetch_openai_whisper.sh)");
    }
    int64_t rows = 0, cols = 0;
    std::vector<float> ref = read_npy_f32(path, rows, cols);
    ASSERT_EQ(rows, n_mels);
    ASSERT_EQ(cols, kMelBins);
    std::vector<float> got = mel_filters(n_mels);
    EXPECT_TRUE(test::close_in_norm("mel_filters_whisper_" + std::to_string(n_mels), got, ref, 1e-6));
  }
}

TEST(LogMel, MatchesHuggingFaceOnJfk) {
#ifndef FLURRY_HAVE_AUDIO
  GTEST_SKIP() << "built without libsndfile/libsoxr";
#else
  const std::string wav = test::shared_data_path("speech/jfk.wav");
  if (wav.empty()) GTEST_SKIP() << "../shared/data/speech/jfk.wav absent";
  const std::vector<float> audio = load_audio_16k(wav);
  int checked = 0;
  const Json idx = test::golden_index();  // keep the document alive while iterating into it
  for (const Json& c : idx.at("cases")) {
    if (c.at("name").get<std::string>() != "jfk") continue;
    test::check_golden(c, audio);
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no jfk golden (make_mel_goldens.py ran without shared data)";
#endif
}

#ifdef FLURRY_HAVE_AUDIO
TEST(AudioJfk, DecodesToElevenSeconds) {
  const std::string wav = test::shared_data_path("speech/jfk.wav");
  if (wav.empty()) GTEST_SKIP() << "../shared/data/speech/jfk.wav absent";
  const AudioInfo info = probe_audio(wav);
  EXPECT_EQ(info.sample_rate, 16000);
  EXPECT_EQ(info.channels, 1);
  EXPECT_EQ(info.frames, 176000);
  EXPECT_DOUBLE_EQ(info.duration_s, 11.0);
  const std::vector<float> x = load_audio_16k(wav);
  ASSERT_EQ(x.size(), 176000u);
  double peak = 0;
  for (float v : x) {
    peak = std::max(peak, static_cast<double>(std::abs(v)));
    // 16-bit PCM scaled by 1/32768: every sample is a multiple of 2^-15.
    ASSERT_EQ(static_cast<double>(v) * 32768.0, std::round(static_cast<double>(v) * 32768.0));
  }
  EXPECT_GT(peak, 0.1);
  EXPECT_LE(peak, 1.0);
}
#endif

}  // namespace
}  // namespace flurry
