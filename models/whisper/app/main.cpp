// flurry-whisper: transcribe or translate audio files with a Whisper checkpoint in Hugging Face
// layout, alone or as one rank of an mpirun/srun job. Flags follow openai-whisper's command line.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>
#include <optional>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/audio.h"
#include "io/writers.h"
#include "models/whisper/app/pipeline.h"
#include "runtime/check.h"
#include "runtime/device.h"
#include "runtime/dist/runner.h"
#include "runtime/app/app.h"
#include "runtime/log.h"

#if FLURRY_WHISPER_GPU
#include "models/whisper/gpu/gpu_decoder_model.h"
#include "models/whisper/gpu/whisper_gpu.h"
#endif


namespace {

using flurry::whisper::TranscribeOptions;

struct Flags {
  std::string model, language, task = "transcribe", output_format = "all";
  float temperature = 0.0f;
  double temperature_increment = 0.2;
  int best_of = 5, beam_size = 5;
  double patience = 0.0, length_penalty = -1.0;
  std::string suppress_tokens = "-1", initial_prompt;
  bool condition_on_previous_text = true, without_timestamps = false;
  double compression_ratio_threshold = 2.4, logprob_threshold = -1.0, no_speech_threshold = 0.6;
  uint64_t seed = 0;
};

// openai-whisper spells multi-word flags with underscores; the shared runner flags use dashes.
// Accept either spelling for those by rewriting before parsing.
std::vector<std::string> normalize_args(std::vector<std::string> in) {
  std::vector<std::string> args;
  for (std::string& a : in) {
    for (const char* name : {"--output_dir", "--input_list", "--dead_rank_timeout", "--retry_errors"}) {
      const size_t n = std::strlen(name);
      if (a.compare(0, n, name) == 0 && (a.size() == n || a[n] == '=')) {
        std::string fixed = name;
        for (char& c : fixed) c = c == '_' ? '-' : c;
        a = fixed + a.substr(n);
      }
    }
    args.push_back(a);
  }
  return args;
}

void add_whisper_flags(CLI::App& app, Flags& f) {
  app.add_option("--model", f.model,
                 "checkpoint folder in Hugging Face layout (config.json, model.safetensors, tokenizer "
                 "files); default: $FLURRY_WHISPER_MODEL or the one `make demo` installs");
  app.add_option("--language", f.language, "language code spoken in the audio (e.g. en, de, yue); detected when omitted");
  app.add_option("--task", f.task, "transcribe, or translate into English")
      ->check(CLI::IsMember({"transcribe", "translate"}));
  app.add_option("--output_format,--output-format,-f", f.output_format,
                 "per-file outputs next to results.jsonl: txt, vtt, srt, tsv, json, all, or none")
      ->check(CLI::IsMember({"txt", "vtt", "srt", "tsv", "json", "all", "none"}));
  app.add_option("--temperature", f.temperature, "sampling temperature of the first attempt");
  app.add_option("--temperature_increment_on_fallback,--temperature-increment-on-fallback", f.temperature_increment,
                 "step up to 1.0 for retries when a result fails the thresholds below; <= 0 disables fallback");
  app.add_option("--best_of,--best-of", f.best_of, "candidates sampled when temperature > 0");
  app.add_option("--beam_size,--beam-size", f.beam_size, "beams at temperature 0; 0 or 1 means greedy");
  app.add_option("--patience", f.patience, "beam search patience (0: default 1.0)");
  app.add_option("--length_penalty,--length-penalty", f.length_penalty,
                 "Google NMT length penalty alpha in [0, 1]; negative: rank by average log-probability");
  app.add_option("--suppress_tokens,--suppress-tokens", f.suppress_tokens,
                 "comma-separated token ids to suppress; -1 is the checkpoint's list of non-speech symbols");
  app.add_option("--initial_prompt,--initial-prompt", f.initial_prompt, "text to condition the first window on");
  app.add_option("--condition_on_previous_text,--condition-on-previous-text", f.condition_on_previous_text,
                 "prompt each window with the previous window's text (true/false)");
  app.add_flag("--without_timestamps,--without-timestamps", f.without_timestamps,
               "decode text only (<|notimestamps|>): one segment per window");
  app.add_option("--compression_ratio_threshold,--compression-ratio-threshold", f.compression_ratio_threshold,
                 "retry at a higher temperature when the text's gzip compression ratio is above this");
  app.add_option("--logprob_threshold,--logprob-threshold", f.logprob_threshold,
                 "retry when the average log-probability is below this");
  app.add_option("--no_speech_threshold,--no-speech-threshold", f.no_speech_threshold,
                 "treat a window as silence when P(no speech) is above this and the log-probability is low");
  app.add_option("--seed", f.seed, "seed of the sampler used at temperature > 0");
}

TranscribeOptions make_options(const Flags& f, const flurry::whisper::WhisperAssets& assets) {
  TranscribeOptions o;
  o.decode.task = f.task == "translate" ? flurry::whisper::Task::kTranslate : flurry::whisper::Task::kTranscribe;
  o.decode.language = f.language;
  if (!f.language.empty() && assets.special.multilingual()) assets.special.language_id(f.language);  // validates
  o.decode.best_of = f.best_of;
  o.decode.beam_size = f.beam_size > 1 ? f.beam_size : 0;
  o.decode.patience = static_cast<float>(f.patience);
  if (f.length_penalty >= 0) o.decode.length_penalty = f.length_penalty;
  o.decode.suppress_tokens = flurry::whisper::parse_suppress_tokens(f.suppress_tokens);
  o.decode.without_timestamps = f.without_timestamps;
  o.decode.seed = f.seed;
  o.temperatures.clear();
  if (f.temperature_increment > 0) {
    for (double t = f.temperature; t <= 1.0 + 1e-6; t += f.temperature_increment) {
      o.temperatures.push_back(static_cast<float>(t));
    }
  }
  if (o.temperatures.empty()) o.temperatures.push_back(f.temperature);
  o.compression_ratio_threshold = f.compression_ratio_threshold;
  o.logprob_threshold = f.logprob_threshold;
  o.no_speech_threshold = f.no_speech_threshold;
  o.condition_on_previous_text = f.condition_on_previous_text;
  if (!f.initial_prompt.empty()) o.initial_prompt = assets.tokenizer->encode(" " + f.initial_prompt, false);
  return o;
}

double audio_cost(const std::string& path) {
  try {
    return flurry::probe_audio(path).duration_s;
  } catch (const flurry::Error&) {
    return 0.0;  // the error is reported when the input is processed
  }
}

int process(flurry::app::AppContext& app, const Flags& f) {
  const std::string& device = app.device;
  FLURRY_CHECK(!f.model.empty(), "no --model given and no default checkpoint found: run `make demo` "
                                 "(it installs one under models-cache/) or pass --model DIR");
  flurry::StageTimers timers;
  std::optional<flurry::whisper::WhisperAssets> loaded;
  {
    flurry::ScopedStage stage(&timers, "load");
    loaded.emplace(flurry::whisper::load_whisper_assets(f.model, /*cpu_model=*/device == "cpu"));
  }
  const flurry::whisper::WhisperAssets& assets = *loaded;
  const TranscribeOptions options = make_options(f, assets);
  LOG_INFO("model " << f.model << ": " << assets.config.d_model << " wide, " << assets.config.encoder_layers << "+"
                    << assets.config.decoder_layers << " layers, " << assets.config.num_mel_bins << " mels; device "
                    << device);
  flurry::whisper::WindowBackend backend;
#if FLURRY_WHISPER_GPU
  std::unique_ptr<flurry::whisper::WhisperGpu> gpu;
  std::unique_ptr<flurry::whisper::GpuDecoderModel> gpu_decoder;
  if (device == "cuda") {
    flurry::whisper::WhisperGpuOptions go;
    // The per-file driver decodes one window at a time; its sequences are the beams or the
    // best-of candidates. --batch-size windows are reserved for the batched pipeline.
    const int group = std::max({1, options.decode.beam_size, f.best_of});
    go.plan.max_windows = app.common.batch_size;
    go.plan.enc_batch = app.common.batch_size;
    go.plan.max_slots = app.common.batch_size * group;
    go.max_gpu_memory = app.max_gpu_bytes;
    {
      // Weights straight from the memory-mapped checkpoint to the device: no fp32 host model.
      flurry::ScopedStage stage(&timers, "upload");
      gpu = flurry::whisper::WhisperGpu::load(f.model, go);
    }
    gpu_decoder = std::make_unique<flurry::whisper::GpuDecoderModel>(*gpu);
    backend.decoder = gpu_decoder.get();
    backend.encode = [&](const float* mel) { gpu_decoder->encode_audio(0, mel); };
  }
#endif
  backend.timers = &timers;

  flurry::dist::RunnerOptions& opts = app.runner;
  opts.model = f.model;
  opts.unit = "audio s";
  opts.work_key = "duration";
  opts.timers = &timers;
  const std::vector<flurry::dist::WorkItem> items = flurry::dist::collect_inputs(app.inputs, audio_cost, &app.dist);
  std::vector<std::string> formats;
  if (f.output_format == "all") {
    formats = flurry::transcript_formats();
  } else if (f.output_format != "none") {
    formats = {f.output_format};
  }
  return flurry::dist::run_job(app.dist, opts, items, [&](const flurry::dist::WorkItem& item) {
    double duration = 0.0;
    flurry::whisper::Transcript t =
        backend.decoder != nullptr
            ? flurry::whisper::transcribe_file(assets, item.id, options, &duration, backend)
            : flurry::whisper::transcribe_file(assets, item.id, options, &duration, &timers);
    t.id = item.id;
    if (!formats.empty()) {
      // Keyed by the input's path below the folder all inputs share: a/x.wav and b/x.wav never collide.
      const std::filesystem::path base = flurry::dist::item_output_base(opts, item);
      flurry::write_transcript_files(t, base.parent_path().string(),
                                     base.filename().string(), formats);
    }
    return flurry::whisper::transcript_record(t);
  });
}

}  // namespace

int main(int argc, char** argv) {
  flurry::app::AppSpec spec;
  spec.binary = "flurry-whisper";
  spec.description = "transcribe audio files with Whisper (openai-whisper's flags)";
#if FLURRY_WHISPER_GPU
  spec.cuda_backend = true;
#endif
  spec.batch_size_help = "cuda: audio windows the GPU holds at once (sizes the device memory plan with the beam size)";
  spec.rewrite_args = normalize_args;
  Flags f;
  spec.add_flags = [&](CLI::App& cli) { add_whisper_flags(cli, f); };
  const std::string argv0 = argv[0];
  return flurry::app::run_app(argc, argv, spec, [&](flurry::app::AppContext& app) {
    Flags with_argv0 = f;
    if (with_argv0.model.empty()) with_argv0.model = flurry::whisper::default_model_dir(argv0.c_str());
    return process(app, with_argv0);
  });
}
