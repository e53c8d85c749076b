// flurry-whisper: transcribe or translate audio files with a Whisper checkpoint in Hugging Face
// layout, alone or as one rank of an mpirun/srun job. Flags follow openai-whisper's command line.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>
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
#include "runtime/dist/runner_cli.h"
#include "runtime/log.h"

#if FLURRY_WHISPER_GPU
#include "models/whisper/gpu/gpu_decoder_model.h"
#include "models/whisper/gpu/whisper_gpu.h"
#endif

#if FLURRY_HAVE_BLAS
extern "C" void openblas_set_num_threads(int num_threads);
#endif

namespace {

using flurry::whisper::TranscribeOptions;

struct Flags {
  std::string model, device, language, task = "transcribe", output_format = "all";
  float temperature = 0.0f;
  double temperature_increment = 0.2;
  int best_of = 5, beam_size = 5, threads = 0, batch_size = 1;
  std::string max_gpu_memory;
  double patience = 0.0, length_penalty = -1.0;
  std::string suppress_tokens = "-1", initial_prompt, log_level = "info";
  bool condition_on_previous_text = true, without_timestamps = false;
  double compression_ratio_threshold = 2.4, logprob_threshold = -1.0, no_speech_threshold = 0.6;
  uint64_t seed = 0;
};

// openai-whisper spells multi-word flags with underscores; the shared runner flags use dashes.
// Accept either spelling for those by rewriting before parsing.
std::vector<std::string> normalize_args(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
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
  std::reverse(args.begin(), args.end());  // CLI11's vector parse takes arguments in reverse
  return args;
}

void add_whisper_flags(CLI::App& app, Flags& f) {
  app.add_option("--model", f.model,
                 "checkpoint folder in Hugging Face layout (config.json, model.safetensors, tokenizer "
                 "files); default: $FLURRY_WHISPER_MODEL or the one `make demo` installs");
  app.add_option("--device", f.device,
                 "cuda or cpu (the reference path); default: cuda when this binary has the CUDA backend and a "
                 "GPU is present, else cpu")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--batch-size,--batch_size", f.batch_size,
                 "cuda: audio windows the GPU holds at once (sizes the device memory plan with the beam size)")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-gpu-memory,--max_gpu_memory", f.max_gpu_memory,
                 "cuda: upper bound on the device memory the run takes, e.g. 20GiB, 512MiB or bytes; default: "
                 "what the GPU has free");
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
  app.add_option("--threads", f.threads, "CPU threads for the reference path's matrix products (0: library default)");
  app.add_option("--seed", f.seed, "seed of the sampler used at temperature > 0");
  app.add_option("--log-level,--log_level", f.log_level, "debug, info, warn, error or off");
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

// "20GiB", "512MiB", "20G", "1.5GB" or a byte count; empty or "0": no bound.
size_t parse_bytes(const std::string& text) {
  if (text.empty()) return 0;
  size_t used = 0;
  double v = 0.0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    FLURRY_FAIL("--max-gpu-memory '" << text << "': expected a size such as 20GiB, 512MiB or a byte count");
  }
  std::string unit = text.substr(used);
  for (char& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  double scale = 1.0;
  if (unit.empty() || unit == "b") {
    scale = 1.0;
  } else if (unit == "k" || unit == "kb" || unit == "kib") {
    scale = 1024.0;
  } else if (unit == "m" || unit == "mb" || unit == "mib") {
    scale = 1024.0 * 1024.0;
  } else if (unit == "g" || unit == "gb" || unit == "gib") {
    scale = 1024.0 * 1024.0 * 1024.0;
  } else {
    FLURRY_FAIL("--max-gpu-memory '" << text << "': unknown unit '" << unit << "' (use B, KiB, MiB or GiB)");
  }
  FLURRY_CHECK(v >= 0.0, "--max-gpu-memory '" << text << "' is negative");
  return static_cast<size_t>(v * scale);
}

// --device, or the default: cuda when the binary has the GPU backend and a GPU is present.
std::string resolve_device(const std::string& requested) {
  std::string why;
#if FLURRY_WHISPER_GPU
  const bool built = true;
#else
  const bool built = false;
  why = "this flurry-whisper was built without the CUDA backend";
#endif
  const bool gpu = built && flurry::cuda_device_count(&why) > 0;
  if (requested == "cuda") {
    FLURRY_CHECK(gpu, "--device cuda: " << why << "; use --device cpu");
    return "cuda";
  }
  if (requested == "cpu") return "cpu";
  LOG_INFO("device " << (gpu ? "cuda (a GPU is present)" : "cpu (" + why + ")") << "; --device overrides");
  return gpu ? "cuda" : "cpu";
}

double audio_cost(const std::string& path) {
  try {
    return flurry::probe_audio(path).duration_s;
  } catch (const flurry::Error&) {
    return 0.0;  // the error is reported when the input is processed
  }
}

int run(int argc, char** argv) {
  flurry::dist::DistContext ctx(&argc, &argv);
  CLI::App app{"flurry-whisper: transcribe audio files with Whisper (openai-whisper's flags)"};
  flurry::dist::InputSpec inputs;
  flurry::dist::RunnerOptions opts;
  Flags f;
  app.option_defaults()->always_capture_default();  // --help shows every default
  flurry::dist::add_runner_flags(app, inputs, opts);
  add_whisper_flags(app, f);
  try {
    app.parse(normalize_args(argc, argv));
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  flurry::set_log_level(flurry::parse_log_level(f.log_level));
  const std::string device = resolve_device(f.device);
#if FLURRY_HAVE_BLAS
  if (f.threads > 0) openblas_set_num_threads(f.threads);
#endif
  if (f.model.empty()) f.model = flurry::whisper::default_model_dir(argv[0]);
  FLURRY_CHECK(!f.model.empty(), "no --model given and no default checkpoint found: run `make demo` "
                                 "(it installs one under models-cache/) or pass --model DIR");
  const flurry::whisper::WhisperAssets assets = flurry::whisper::load_whisper_assets(f.model);
  const TranscribeOptions options = make_options(f, assets);
  LOG_INFO("model " << f.model << ": " << assets.model->config().d_model << " wide, "
                    << assets.model->config().encoder_layers << "+" << assets.model->config().decoder_layers
                    << " layers, " << assets.model->config().num_mel_bins << " mels; device " << device);
  flurry::whisper::WindowBackend backend;
  const size_t max_gpu_bytes = parse_bytes(f.max_gpu_memory);  // validated on every device
#if FLURRY_WHISPER_GPU
  std::unique_ptr<flurry::whisper::WhisperGpu> gpu;
  std::unique_ptr<flurry::whisper::GpuDecoderModel> gpu_decoder;
  if (device == "cuda") {
    flurry::whisper::WhisperGpuOptions go;
    // The per-file driver decodes one window at a time; its sequences are the beams or the
    // best-of candidates. --batch-size windows are reserved for the batched pipeline.
    const int group = std::max({1, options.decode.beam_size, f.best_of});
    go.plan.max_windows = f.batch_size;
    go.plan.enc_batch = f.batch_size;
    go.plan.max_slots = f.batch_size * group;
    go.max_gpu_memory = max_gpu_bytes;
    gpu = flurry::whisper::WhisperGpu::create(*assets.model, go);
    gpu_decoder = std::make_unique<flurry::whisper::GpuDecoderModel>(*gpu);
    backend.decoder = gpu_decoder.get();
    backend.encode = [&](const float* mel) { gpu_decoder->encode_audio(0, mel); };
  }
#else
  (void)max_gpu_bytes;
#endif

  opts.binary = "flurry-whisper";
  opts.model = f.model;
  opts.unit = "audio s";
  opts.work_key = "duration";
  opts.flags = flurry::dist::cli_flags_json(app);
  opts.extra = {{"device", device}};
  const std::vector<flurry::dist::WorkItem> items = flurry::dist::collect_inputs(inputs, audio_cost, &ctx);
  std::vector<std::string> formats;
  if (f.output_format == "all") {
    formats = flurry::transcript_formats();
  } else if (f.output_format != "none") {
    formats = {f.output_format};
  }
  return flurry::dist::run_job(ctx, opts, items, [&](const flurry::dist::WorkItem& item) {
    double duration = 0.0;
    const flurry::whisper::Transcript t =
        backend.decoder != nullptr
            ? flurry::whisper::transcribe_file(assets, item.id, options, &duration, backend)
            : flurry::whisper::transcribe_file(assets, item.id, options, &duration);
    if (!formats.empty()) {
      const std::string base = std::filesystem::path(item.id).filename().string();
      flurry::write_transcript_files(flurry::whisper::to_output(t, item.id, duration), opts.output_dir, base,
                                     formats);
    }
    return flurry::whisper::transcript_record(t, duration);
  });
}

}  // namespace

int main(int argc, char** argv) {
  flurry::init_logging_from_env();
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flurry-whisper: %s\n", e.what());
    return 2;
  }
}
