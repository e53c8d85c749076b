#include "models/whisper/app/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <filesystem>

#include "io/audio.h"
#include "io/json_file.h"
#include "models/whisper/app/cpu_decoder.h"
#include "models/whisper/app/features.h"
#include "runtime/ref/audio/logmel.h"
#include "models/whisper/text_metrics.h"
#include "models/whisper/tokens.h"
#include "runtime/check.h"

namespace flurry::whisper {

namespace fs = std::filesystem;


WhisperAssets load_whisper_assets(const std::string& dir, bool cpu_model) {
  FLURRY_CHECK(fs::is_directory(dir), "model directory '" << dir << "' does not exist");
  WhisperAssets a;
  a.dir = dir;
  a.config = load_whisper_config((fs::path(dir) / "config.json").string());
  if (cpu_model) a.model = WhisperModel::load(dir);
  a.tokenizer = std::make_shared<const BpeTokenizer>(BpeTokenizer::from_dir(dir));
  const std::string gen_path = (fs::path(dir) / "generation_config.json").string();
  const Json gen = fs::exists(gen_path) ? read_json_file(gen_path) : Json::object();
  a.special = resolve_special_tokens(*a.tokenizer, gen);
  a.special.validate(static_cast<int>(a.config.vocab_size));
  return a;
}

Transcript transcribe_file(const WhisperAssets& assets, const std::string& path,
                           const TranscribeOptions& options, double* duration_s, StageTimers* timers) {
  FLURRY_CHECK(assets.model != nullptr, "transcribe_file: the assets were loaded without the CPU model");
  CpuDecoderModel decoder(assets.model);
  WindowBackend backend;
  backend.timers = timers;
  backend.decoder = &decoder;
  backend.encode = [&](const float* mel) { decoder.encode_audio(0, mel); };
  return transcribe_file(assets, path, options, duration_s, backend);
}

Transcript transcribe_file(const WhisperAssets& assets, const std::string& path,
                           const TranscribeOptions& options, double* duration_s, const WindowBackend& backend) {
  FLURRY_CHECK(backend.decoder != nullptr && backend.encode, "transcribe_file: incomplete backend");
  StageTimers* timers = backend.timers;
  std::vector<float> audio;
  {
    ScopedStage stage(timers, "audio");
    audio = load_audio_16k(path);
  }
  *duration_s = static_cast<double>(audio.size()) / kAudioSampleRate;
  const int n_mels = static_cast<int>(assets.config.num_mel_bins);
  std::optional<LogMel> mel_holder;
  {
    ScopedStage stage(timers, "mel");
    mel_holder.emplace(log_mel_whole(audio.data(), static_cast<int64_t>(audio.size()), n_mels));
  }
  const LogMel& mel = *mel_holder;
  double encode_s = 0.0;

  std::vector<float> window(static_cast<size_t>(n_mels) * flurry::kMelWindowFrames);
  auto encode_window = [&](int seek, int n_frames) {
    mel.window(seek, n_frames, window.data());
    const auto t0 = std::chrono::steady_clock::now();
    {
      ScopedStage stage(timers, "encode");
      backend.encode(window.data());
    }
    encode_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const BpeTokenizer& tok = *assets.tokenizer;
  auto detokenize = [&](const std::vector<int>& ids) { return tok.decode(ids, true); };
  const auto t0 = std::chrono::steady_clock::now();
  Transcript t = transcribe(*backend.decoder, assets.special, options, static_cast<int>(mel.content_frames),
                            encode_window, detokenize);
  t.duration = *duration_s;
  if (timers != nullptr) {
    // transcribe() interleaves the encoder (timed above) and the decoding; decode is the rest.
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    timers->add("decode", std::max(0.0, total - encode_s));
  }
  return t;
}

nlohmann::json transcript_record(const Transcript& t) {
  // The runner adds id and status; the rest is the per-file JSON output's content.
  nlohmann::json j = transcript_to_json(t);
  j.erase("id");
  return j;
}

std::string default_model_dir(const char* argv0) {
  if (const char* env = std::getenv("FLURRY_WHISPER_MODEL")) return env;
  std::vector<fs::path> roots = {fs::current_path()};
  std::error_code ec;
  const fs::path exe = fs::canonical(argv0, ec);
  if (!ec) roots.push_back(exe.parent_path().parent_path().parent_path());  // <repo>/build/bin/x
  for (const fs::path& root : roots) {
    for (const char* name : {"whisper-tiny", "whisper-base", "whisper-tiny.en", "whisper-base.en"}) {
      const fs::path p = root / "models-cache" / name;
      if (fs::exists(p / "config.json", ec)) return p.string();
    }
  }
  return "";
}

}  // namespace flurry::whisper
