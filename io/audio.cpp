// Audio decode (libsndfile) + mono mix + resample to 16 kHz (libsoxr). See io/audio.h.
#include "io/audio.h"

#include <sndfile.h>
#include <soxr.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "runtime/check.h"

namespace flurry {
namespace {

// Frames decoded per sf_readf_float call: 16k frames keeps the read buffer small (128 KB for
// stereo) while amortising the per-call cost.
constexpr sf_count_t kBlockFrames = 16384;

struct SndfileCloser {
  void operator()(SNDFILE* f) const {
    if (f) sf_close(f);
  }
};
using SndfilePtr = std::unique_ptr<SNDFILE, SndfileCloser>;

struct SoxrDeleter {
  void operator()(soxr_t s) const {
    if (s) soxr_delete(s);
  }
};
using SoxrPtr = std::unique_ptr<struct soxr, SoxrDeleter>;

std::string format_name(SNDFILE* f, int format) {
  SF_FORMAT_INFO fi{};
  fi.format = format;
  if (sf_command(f, SFC_GET_FORMAT_INFO, &fi, sizeof(fi)) != 0 || fi.name == nullptr) {
    std::ostringstream os;
    os << "format 0x" << std::hex << format;
    return os.str();
  }
  return fi.name;
}

// libsndfile accepts a WAV/AIFF whose data chunk is longer than the file (it shortens the length
// to what is there) and only notes "(should be N)" in its log. A header that promises more audio
// than the file holds is a truncated file, so we read that note.
bool header_overstates_data(SNDFILE* f) {
  std::vector<char> log(1 << 14, '\0');
  sf_command(f, SFC_GET_LOG_INFO, log.data(), static_cast<int>(log.size()) - 1);
  std::string text(log.data());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    bool data_line = line.rfind("data", 0) == 0 || line.rfind("SSND", 0) == 0;
    if (data_line && line.find("should be") != std::string::npos) return true;
    pos = end + 1;
  }
  return false;
}

// libsndfile reports a WAV with a codec it does not implement as a malformed file, and an MP4/M4A
// (AAC) as unrecognised; both are common enough to deserve the right name. Returns "" when the
// header does not identify such a case.
std::string sniff_unsupported(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<unsigned char> h(4096, 0);
  in.read(reinterpret_cast<char*>(h.data()), static_cast<std::streamsize>(h.size()));
  const size_t n = static_cast<size_t>(in.gcount());
  auto u32 = [&](size_t o) { return h[o] | (h[o + 1] << 8) | (h[o + 2] << 16) | (uint32_t{h[o + 3]} << 24); };
  if (n >= 12 && std::memcmp(h.data() + 4, "ftyp", 4) == 0) {
    return "MP4/M4A container (AAC/ALAC), which libsndfile does not read; convert it, e.g. to FLAC";
  }
  if (n < 12 || std::memcmp(h.data(), "RIFF", 4) != 0 || std::memcmp(h.data() + 8, "WAVE", 4) != 0) {
    return "";
  }
  // Walk the RIFF chunks to 'fmt ' and read its format tag (WAVEFORMATEX.wFormatTag).
  for (size_t o = 12; o + 10 <= n;) {
    const uint32_t size = u32(o + 4);
    if (std::memcmp(h.data() + o, "fmt ", 4) == 0) {
      const unsigned tag = h[o + 8] | (h[o + 9] << 8);
      // Tags libsndfile 1.2 decodes: PCM, ADPCM (MS, IMA), IEEE float, A-law, mu-law, G.721/G.723,
      // GSM 6.10, MPEG layer 1-3, and WAVE_FORMAT_EXTENSIBLE.
      static const unsigned known[] = {0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031,
                                       0x0040, 0x0045, 0x0050, 0x0055, 0x0064, 0x0065, 0xFFFE};
      if (std::find(std::begin(known), std::end(known), tag) != std::end(known)) return "";
      std::ostringstream os;
      os << "WAV with codec tag 0x" << std::hex << std::uppercase << tag
         << ", which libsndfile does not decode";
      return os.str();
    }
    o += 8 + size + (size & 1);
  }
  return "";
}

// Opens `path` for reading and validates the header; every failure names the file and the cause.
SndfilePtr open_audio(const std::string& path, AudioInfo& info) {
  namespace fs = std::filesystem;
  std::error_code ec;
  FLURRY_INPUT_CHECK(fs::exists(path, ec), path << ": no such file");
  FLURRY_INPUT_CHECK(!fs::is_directory(path, ec), path << ": is a directory, not an audio file");
  auto bytes = fs::file_size(path, ec);
  FLURRY_INPUT_CHECK(!ec, path << ": cannot read the file size: " << ec.message());
  FLURRY_INPUT_CHECK(bytes > 0, path << ": empty file (0 bytes)");

  SF_INFO sfi{};
  SndfilePtr f(sf_open(path.c_str(), SFM_READ, &sfi));
  if (!f) {
    int code = sf_error(nullptr);
    std::string why = sf_strerror(nullptr);
    const std::string unsupported = sniff_unsupported(path);
    FLURRY_INPUT_CHECK(unsupported.empty(), path << ": unsupported audio encoding: " << unsupported);
    switch (code) {
      case SF_ERR_UNRECOGNISED_FORMAT:
        FLURRY_INPUT_FAIL(path << ": not a recognised audio file (" << why << ")");
      case SF_ERR_UNSUPPORTED_ENCODING:
        FLURRY_INPUT_FAIL(path << ": unsupported audio encoding (" << why << ")");
      case SF_ERR_MALFORMED_FILE:
        FLURRY_INPUT_FAIL(path << ": malformed or truncated audio file (" << why << ")");
      case SF_ERR_SYSTEM:
        FLURRY_INPUT_FAIL(path << ": cannot open (" << why << ")");
      default:
        FLURRY_INPUT_FAIL(path << ": malformed or unreadable audio file (" << why << ")");
    }
  }
  info.path = path;
  info.sample_rate = sfi.samplerate;
  info.channels = sfi.channels;
  info.frames = sfi.frames;
  info.container = format_name(f.get(), sfi.format & SF_FORMAT_TYPEMASK);
  info.encoding = format_name(f.get(), sfi.format & SF_FORMAT_SUBMASK);
  FLURRY_INPUT_CHECK(sfi.samplerate > 0, path << ": invalid sample rate " << sfi.samplerate);
  FLURRY_INPUT_CHECK(sfi.channels > 0, path << ": invalid channel count " << sfi.channels);
  // An Ogg stream whose final page is missing has no known length (libsndfile reports the
  // maximum count); it was cut off while being written or copied.
  FLURRY_INPUT_CHECK(sfi.frames != std::numeric_limits<sf_count_t>::max() && sfi.frames >= 0,
               path << ": truncated file (stream length unknown: the final Ogg page is missing)");
  FLURRY_INPUT_CHECK(sfi.frames > 0, path << ": zero-length audio (the file holds no samples)");
  FLURRY_INPUT_CHECK(!header_overstates_data(f.get()),
               path << ": truncated file (the header declares " << sfi.frames * sfi.channels
                    << "+ samples beyond the end of the data; " << info.container << ")");
  info.duration_s = static_cast<double>(sfi.frames) / sfi.samplerate;
  return f;
}

// MP3 lengths come from a Xing/LAME header or, without one, from an estimate; allow a little slack
// there before calling a short decode truncated. Other formats declare exact lengths.
int64_t length_slack(const AudioInfo& info, int format_major) {
  if (format_major == SF_FORMAT_MPEG) return std::max<int64_t>(info.frames / 100, 2 * 1152);
  return 0;
}

// Reads the next block and averages the channels into `mono` (resized to the frames read).
sf_count_t read_mono_block(SNDFILE* f, int channels, std::vector<float>& interleaved,
                           std::vector<float>& mono) {
  interleaved.resize(static_cast<size_t>(kBlockFrames) * channels);
  sf_count_t got = sf_readf_float(f, interleaved.data(), kBlockFrames);
  got = std::max<sf_count_t>(got, 0);
  mono.resize(static_cast<size_t>(got));
  const float scale = 1.0f / static_cast<float>(channels);
  for (sf_count_t i = 0; i < got; ++i) {
    const float* fr = interleaved.data() + i * channels;
    float s = 0.0f;
    for (int c = 0; c < channels; ++c) s += fr[c];
    mono[static_cast<size_t>(i)] = channels == 1 ? s : s * scale;
  }
  return got;
}

soxr_io_spec_t float_io() { return soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I); }
soxr_quality_spec_t hq() { return soxr_quality_spec(SOXR_HQ, 0); }

// Streaming resampler to 16 kHz; a pass-through when the input already is 16 kHz.
class Resampler {
 public:
  Resampler(const std::string& path, int in_rate) : path_(path), in_rate_(in_rate) {
    if (in_rate == kAudioSampleRate) return;
    soxr_error_t err = nullptr;
    soxr_io_spec_t io = float_io();
    soxr_quality_spec_t q = hq();
    soxr_.reset(soxr_create(in_rate, kAudioSampleRate, 1, &err, &io, &q, nullptr));
    FLURRY_INPUT_CHECK(err == nullptr && soxr_, path << ": cannot resample from " << in_rate
                                              << " Hz: " << (err ? err : "soxr_create failed"));
  }

  // Appends the resampled `n` samples (in == nullptr: flush the filter's tail) to `out`.
  void process(const float* in, size_t n, std::vector<float>& out) {
    if (!soxr_) {
      out.insert(out.end(), in, in + n);
      return;
    }
    const double ratio = static_cast<double>(kAudioSampleRate) / in_rate_;
    size_t cap = static_cast<size_t>(std::ceil(static_cast<double>(n) * ratio)) + 256;
    size_t consumed = 0;
    for (;;) {
      size_t old = out.size();
      out.resize(old + cap);
      size_t idone = 0, odone = 0;
      const float* src = in ? in + consumed : nullptr;
      soxr_error_t err = soxr_process(soxr_.get(), src, in ? n - consumed : 0, &idone,
                                      out.data() + old, cap, &odone);
      out.resize(old + odone);
      FLURRY_INPUT_CHECK(err == nullptr, path_ << ": resampling failed: " << err);
      consumed += idone;
      FLURRY_INPUT_CHECK(!in || idone > 0 || odone > 0, path_ << ": resampler made no progress");
      // Feeding: done once soxr took all input. Flushing: done once it yields nothing more.
      if (in ? consumed >= n : odone == 0) break;
    }
  }
  void flush(std::vector<float>& out) { process(nullptr, 0, out); }

 private:
  std::string path_;
  int in_rate_;
  SoxrPtr soxr_;
};

}  // namespace

int64_t AudioInfo::samples_16k() const {
  if (sample_rate == kAudioSampleRate) return frames;
  return static_cast<int64_t>(
      std::llround(static_cast<double>(frames) * kAudioSampleRate / sample_rate));
}

AudioInfo probe_audio(const std::string& path) {
  AudioInfo info;
  open_audio(path, info);
  return info;
}

// ---------------------------------------------------------------------------------------------
// AudioStream: sndfile blocks -> mono -> soxr -> pending samples -> fixed-size chunks.
// ---------------------------------------------------------------------------------------------
struct AudioStream::Impl {
  AudioInfo info;
  SndfilePtr file;
  int format_major = 0;
  int64_t chunk_samples = 0;
  std::unique_ptr<Resampler> resampler;
  std::vector<float> interleaved, mono;
  std::vector<float> pending;  // resampled samples not yet handed out, from index `head`
  size_t head = 0;
  int64_t decoded_frames = 0;
  int64_t emitted = 0;
  bool eof = false;

  // Decodes one block into `pending`; at the end of the file checks the length and flushes soxr.
  void pump() {
    sf_count_t got = read_mono_block(file.get(), info.channels, interleaved, mono);
    if (got > 0) {
      decoded_frames += got;
      resampler->process(mono.data(), mono.size(), pending);
      return;
    }
    check_complete();
    resampler->flush(pending);
    eof = true;
  }

  void check_complete() {
    if (decoded_frames >= info.frames - length_slack(info, format_major)) return;
    int code = sf_error(file.get());
    FLURRY_INPUT_FAIL(info.path << ": truncated or corrupt file: decoded " << decoded_frames << " of the "
                          << info.frames << " frames the header declares ("
                          << (code ? sf_strerror(file.get()) : "end of data") << ")");
  }
};

AudioStream::AudioStream(const std::string& path, int64_t chunk_samples) : impl_(new Impl) {
  FLURRY_CHECK(chunk_samples > 0, "AudioStream: chunk_samples must be positive, got " << chunk_samples);
  SF_INFO sfi{};
  impl_->file = open_audio(path, impl_->info);
  sf_command(impl_->file.get(), SFC_GET_CURRENT_SF_INFO, &sfi, sizeof(sfi));
  impl_->format_major = sfi.format & SF_FORMAT_TYPEMASK;
  impl_->chunk_samples = chunk_samples;
  impl_->resampler.reset(new Resampler(path, impl_->info.sample_rate));
}

AudioStream::~AudioStream() = default;
AudioStream::AudioStream(AudioStream&&) noexcept = default;
AudioStream& AudioStream::operator=(AudioStream&&) noexcept = default;

const AudioInfo& AudioStream::info() const { return impl_->info; }
int64_t AudioStream::position() const { return impl_->emitted; }

bool AudioStream::next(std::vector<float>& chunk) {
  Impl& s = *impl_;
  const size_t want = static_cast<size_t>(s.chunk_samples);
  while (!s.eof && s.pending.size() - s.head < want) s.pump();
  size_t take = std::min(want, s.pending.size() - s.head);
  chunk.assign(s.pending.begin() + static_cast<std::ptrdiff_t>(s.head),
               s.pending.begin() + static_cast<std::ptrdiff_t>(s.head + take));
  s.head += take;
  s.emitted += static_cast<int64_t>(take);
  // Compact once the consumed prefix dominates, so memory stays at about one chunk plus a block.
  if (s.head > s.pending.size() / 2) {
    s.pending.erase(s.pending.begin(), s.pending.begin() + static_cast<std::ptrdiff_t>(s.head));
    s.head = 0;
  }
  return take > 0;
}

// ---------------------------------------------------------------------------------------------
// One-shot decode: the whole file mixed to mono first, then one soxr_oneshot call. A separate path
// from AudioStream on purpose, so the streaming test compares two implementations.
// ---------------------------------------------------------------------------------------------
std::vector<float> load_audio_16k(const std::string& path) {
  AudioInfo info;
  SndfilePtr f = open_audio(path, info);
  SF_INFO sfi{};
  sf_command(f.get(), SFC_GET_CURRENT_SF_INFO, &sfi, sizeof(sfi));
  const int64_t slack = length_slack(info, sfi.format & SF_FORMAT_TYPEMASK);

  std::vector<float> mono;
  mono.reserve(static_cast<size_t>(info.frames));
  std::vector<float> interleaved, block;
  while (read_mono_block(f.get(), info.channels, interleaved, block) > 0) {
    mono.insert(mono.end(), block.begin(), block.end());
  }
  const int64_t decoded = static_cast<int64_t>(mono.size());
  if (decoded < info.frames - slack) {
    int code = sf_error(f.get());
    FLURRY_INPUT_FAIL(path << ": truncated or corrupt file: decoded " << decoded << " of the "
                     << info.frames << " frames the header declares ("
                     << (code ? sf_strerror(f.get()) : "end of data") << ")");
  }
  if (info.sample_rate == kAudioSampleRate) return mono;

  const double ratio = static_cast<double>(kAudioSampleRate) / info.sample_rate;
  std::vector<float> out(static_cast<size_t>(std::ceil(decoded * ratio)) + 16);
  size_t idone = 0, odone = 0;
  soxr_io_spec_t io = float_io();
  soxr_quality_spec_t q = hq();
  soxr_error_t err = soxr_oneshot(info.sample_rate, kAudioSampleRate, 1, mono.data(), mono.size(),
                                  &idone, out.data(), out.size(), &odone, &io, &q, nullptr);
  FLURRY_INPUT_CHECK(err == nullptr, path << ": resampling from " << info.sample_rate
                                    << " Hz failed: " << err);
  out.resize(odone);
  return out;
}

}  // namespace flurry
