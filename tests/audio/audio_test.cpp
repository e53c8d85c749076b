// io/audio: decode + mono mix + resample to 16 kHz, on files the test writes with libsndfile, every
// bad-input case, streaming against one-shot, and jfk.wav from the shared data when present.
#include <gtest/gtest.h>
#include <sndfile.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/audio.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

namespace fs = std::filesystem;
constexpr double kPi = 3.14159265358979323846;

// A per-test scratch folder under the system temp dir, removed afterwards.
class AudioFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("flurry_audio_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// Left = 0.6 sin(440) + 0.2 sin(1000), right = 0.2 sin(440) - 0.2 sin(1000): the mono mix is
// exactly 0.4 sin(2 pi 440 t), so averaging (not picking a channel, not summing) is checked too.
double left(double t) { return 0.6 * std::sin(2 * kPi * 440 * t) + 0.2 * std::sin(2 * kPi * 1000 * t); }
double right(double t) { return 0.2 * std::sin(2 * kPi * 440 * t) - 0.2 * std::sin(2 * kPi * 1000 * t); }
double mono(double t) { return 0.4 * std::sin(2 * kPi * 440 * t); }

void write_stereo(const std::string& p, int format, int rate, double seconds) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = 2;
  info.format = format;
  ASSERT_TRUE(sf_format_check(&info)) << "libsndfile cannot write format 0x" << std::hex << format;
  SNDFILE* f = sf_open(p.c_str(), SFM_WRITE, &info);
  ASSERT_NE(f, nullptr) << sf_strerror(nullptr);
  const int64_t n = static_cast<int64_t>(std::llround(seconds * rate));
  std::vector<float> buf(static_cast<size_t>(n) * 2);
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / rate;
    buf[2 * i] = static_cast<float>(left(t));
    buf[2 * i + 1] = static_cast<float>(right(t));
  }
  ASSERT_EQ(sf_writef_float(f, buf.data(), n), n);
  sf_close(f);
}

void write_mono(const std::string& p, int rate, const std::vector<float>& x, int format) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = 1;
  info.format = format;
  SNDFILE* f = sf_open(p.c_str(), SFM_WRITE, &info);
  ASSERT_NE(f, nullptr) << sf_strerror(nullptr);
  ASSERT_EQ(sf_write_float(f, x.data(), static_cast<sf_count_t>(x.size())), static_cast<sf_count_t>(x.size()));
  sf_close(f);
}

// Power at frequency f (Goertzel-style single-bin DFT) relative to the total power.
double power_fraction(const std::vector<float>& x, size_t begin, size_t end, double f) {
  double re = 0, im = 0, total = 0;
  for (size_t i = begin; i < end; ++i) {
    const double a = 2 * kPi * f * static_cast<double>(i) / kAudioSampleRate;
    re += x[i] * std::cos(a);
    im += x[i] * std::sin(a);
    total += static_cast<double>(x[i]) * x[i];
  }
  const double n = static_cast<double>(end - begin);
  return 2.0 * (re * re + im * im) / n / total;
}

void truncate_copy(const std::string& src, const std::string& dst, double keep_fraction) {
  std::ifstream in(src, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream out(dst, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() * keep_fraction));
}

// Expects a flurry::InputError (the file's own fault: the runner records it and goes on, where any
// other Error stops the rank) whose message names the file and contains `what`.
template <typename F>
void expect_error(F&& f, const std::string& path, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << path << ": expected an error containing '" << what << "'";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
  } catch (const Error& e) {
    ADD_FAILURE() << path << ": a bad file must raise InputError (an input error record), got a fatal Error: "
                  << e.what();
  }
}

struct Codec {
  const char* name;
  int format;
  int rate;
  bool lossless;
};

TEST_F(AudioFiles, DecodesEveryFormatTo16kMono) {
  const Codec codecs[] = {
      {"wav_pcm16.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, true},
      {"wav_float.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 44100, true},
      {"flac.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 44100, true},
      {"vorbis.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 44100, false},
      {"opus.opus", SF_FORMAT_OGG | SF_FORMAT_OPUS, 48000, false},  // Opus only runs at 8..48 kHz
      {"mp3.mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 44100, false},
  };
  const double seconds = 2.0;
  for (const Codec& c : codecs) {
    SCOPED_TRACE(c.name);
    const std::string p = path(c.name);
    write_stereo(p, c.format, c.rate, seconds);
    const AudioInfo info = probe_audio(p);
    EXPECT_EQ(info.sample_rate, c.rate);
    EXPECT_EQ(info.channels, 2);
    EXPECT_EQ(info.frames, static_cast<int64_t>(seconds * c.rate));
    EXPECT_NEAR(info.duration_s, seconds, 1e-9);
    EXPECT_FALSE(info.container.empty());
    EXPECT_FALSE(info.encoding.empty());

    const std::vector<float> x = load_audio_16k(p);
    ASSERT_NEAR(static_cast<double>(x.size()), static_cast<double>(info.samples_16k()), 1.0);
    EXPECT_NEAR(static_cast<double>(x.size()), seconds * kAudioSampleRate, 1.0);
    // Skip the edges, where the resampling filter (and lossy codecs' priming) has transients.
    const size_t b = 800, e = x.size() - 800;
    EXPECT_GT(power_fraction(x, b, e, 440.0), 0.98);   // the 440 Hz tone survives the mix
    EXPECT_LT(power_fraction(x, b, e, 1000.0), 1e-3);  // 1000 Hz cancels between the channels
    if (!c.lossless) continue;
    // Lossless input: the 16 kHz samples are the analytic mono sine (16-bit rounding: 3e-5;
    // soxr HQ's passband error is far smaller).
    double err = 0, ref = 0, worst = 0;
    for (size_t i = b; i < e; ++i) {
      const double want = mono(static_cast<double>(i) / kAudioSampleRate);
      err += (x[i] - want) * (x[i] - want);
      ref += want * want;
      worst = std::max(worst, std::abs(x[i] - want));
    }
    EXPECT_LT(std::sqrt(err / ref), 1e-3);
    EXPECT_LT(worst, 1e-3);
  }
}

TEST_F(AudioFiles, SixteenKiloHertzMonoPassesThroughUnchanged) {
  auto rng = test::test_rng("audio_passthrough");
  std::vector<float> x = test::random_vector(12345, rng, -0.9f, 0.9f);
  const std::string p = path("float16k.wav");
  write_mono(p, kAudioSampleRate, x, SF_FORMAT_WAV | SF_FORMAT_FLOAT);
  std::vector<float> y = load_audio_16k(p);
  ASSERT_EQ(y.size(), x.size());
  EXPECT_EQ(y, x);
}

TEST_F(AudioFiles, StreamingEqualsOneShot) {
  const std::string p = path("stream.flac");
  write_stereo(p, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 44100, 7.3);
  const std::vector<float> whole = load_audio_16k(p);
  for (int64_t chunk : {int64_t{16000}, int64_t{12345}, kAudioChunkSamples}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    AudioStream s(p, chunk);
    EXPECT_EQ(s.info().sample_rate, 44100);
    std::vector<float> all, part;
    size_t chunks = 0;
    while (s.next(part)) {
      ++chunks;
      all.insert(all.end(), part.begin(), part.end());
      if (static_cast<int64_t>(all.size()) < static_cast<int64_t>(whole.size())) {
        EXPECT_EQ(static_cast<int64_t>(part.size()), chunk);  // only the last chunk is short
      }
    }
    EXPECT_TRUE(part.empty());
    EXPECT_FALSE(s.next(part));
    EXPECT_EQ(s.position(), static_cast<int64_t>(all.size()));
    EXPECT_EQ(chunks, (whole.size() + static_cast<size_t>(chunk) - 1) / static_cast<size_t>(chunk));
    // soxr_oneshot and block-wise soxr_process run the same filter; only float rounding differs.
    EXPECT_TRUE(test::close_in_norm("stream_vs_oneshot", all, whole, 1e-6));
  }
}

TEST_F(AudioFiles, BadInputsFailWithClearMessages) {
  const std::string missing = path("missing.wav");
  expect_error([&] { load_audio_16k(missing); }, missing, "no such file");
  expect_error([&] { probe_audio(missing); }, missing, "no such file");
  expect_error([&] { AudioStream s(missing); }, missing, "no such file");

  const std::string empty = path("empty.wav");
  std::ofstream(empty).close();
  expect_error([&] { load_audio_16k(empty); }, empty, "empty file");

  const std::string text = path("notes.wav");
  std::ofstream(text) << "this is a text file, not audio\n";
  expect_error([&] { load_audio_16k(text); }, text, "not a recognised audio file");

  expect_error([&] { load_audio_16k(dir_.string()); }, dir_.string(), "is a directory");

  const std::string zero = path("zero.wav");
  write_mono(zero, 16000, {}, SF_FORMAT_WAV | SF_FORMAT_PCM_16);
  expect_error([&] { load_audio_16k(zero); }, zero, "zero-length audio");
  expect_error([&] { probe_audio(zero); }, zero, "zero-length audio");

  // Truncated: the header promises more than the file holds (WAV), the decoder runs out part-way
  // (FLAC, MP3), or the final page with the stream length is gone (Ogg).
  for (const char* name : {"t.wav", "t.flac", "t.mp3", "t.ogg"}) {
    SCOPED_TRACE(name);
    const std::string full = path(std::string("full_") + name), cut = path(name);
    const std::string ext = fs::path(name).extension().string();
    const int fmt = ext == ".wav"    ? SF_FORMAT_WAV | SF_FORMAT_PCM_16
                    : ext == ".flac" ? SF_FORMAT_FLAC | SF_FORMAT_PCM_16
                    : ext == ".mp3"  ? SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III
                                     : SF_FORMAT_OGG | SF_FORMAT_VORBIS;
    write_stereo(full, fmt, 44100, 3.0);
    truncate_copy(full, cut, 0.5);
    expect_error([&] { load_audio_16k(cut); }, cut, "truncated");
    expect_error([&] {
      AudioStream s(cut, 16000);
      std::vector<float> part;
      while (s.next(part)) {
      }
    }, cut, "truncated");
  }
}

TEST_F(AudioFiles, UnsupportedEncodingIsNamed) {
  // A well-formed RIFF/WAVE file whose fmt chunk names a codec tag nobody implements (0x7A7A).
  const std::string p = path("odd_codec.wav");
  std::ofstream out(p, std::ios::binary);
  auto u32 = [&](uint32_t v) { for (int i = 0; i < 4; ++i) out.put(static_cast<char>(v >> (8 * i))); };
  auto u16 = [&](uint16_t v) { for (int i = 0; i < 2; ++i) out.put(static_cast<char>(v >> (8 * i))); };
  const uint32_t data_bytes = 3200;
  out.write("RIFF", 4);
  u32(4 + 8 + 16 + 8 + data_bytes);
  out.write("WAVEfmt ", 8);
  u32(16);
  u16(0x7A7A);  // format tag
  u16(1);
  u32(16000);
  u32(32000);
  u16(2);
  u16(16);
  out.write("data", 4);
  u32(data_bytes);
  out.write(std::string(data_bytes, '\0').data(), data_bytes);
  out.close();
  expect_error([&] { load_audio_16k(p); }, p, "unsupported audio encoding: WAV with codec tag 0x7A7A");

  // An MP4/M4A (AAC) file: libsndfile does not read the container at all.
  const std::string m4a = path("song.m4a");
  std::ofstream(m4a, std::ios::binary) << std::string("\0\0\0\x20" "ftypM4A \0\0\0\0", 16)
                                        << std::string(4000, 'x');
  expect_error([&] { probe_audio(m4a); }, m4a, "MP4/M4A");
}

}  // namespace
}  // namespace flurry
