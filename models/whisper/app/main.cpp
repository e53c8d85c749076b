// flurry-whisper: transcribe or translate audio files with a Whisper checkpoint in Hugging Face
// layout, alone or as one rank of an mpirun/srun job. Flags follow openai-whisper's command line.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
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

#include "models/whisper/app/batch_pipeline.h"
#include "models/whisper/cpu_inflight.h"

#if FLURRY_WHISPER_GPU
#include "models/whisper/gpu/inflight.h"
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
  std::string suppress_tokens = "-1", initial_prompt, clip_timestamps = "0";
  bool condition_on_previous_text = true, without_timestamps = false, carry_initial_prompt = false;
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
  app.add_flag("--carry_initial_prompt,--carry-initial-prompt", f.carry_initial_prompt,
               "prepend --initial_prompt to every window's prompt, not only the first");
  app.add_option("--clip_timestamps,--clip-timestamps", f.clip_timestamps,
                 "comma-separated start,end,start,end,... seconds of the spans to transcribe; the last end "
                 "defaults to the end of the file");
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
  o.carry_initial_prompt = f.carry_initial_prompt;
  o.clip_timestamps = flurry::whisper::parse_clip_timestamps(f.clip_timestamps);
  return o;
}

double audio_cost(const std::string& path) {
  try {
    return flurry::probe_audio(path).duration_s;
  } catch (const flurry::Error&) {
    return 0.0;  // the error is reported when the input is processed
  }
}

// --batch-size is the number of decoder slots (sequences in flight), on both devices and in
// whisper_bench; files in flight = slots / slots_per_file (a beam of 5 takes 5 slots per file).
// 0 (not given): two files on the CPU; on the GPU the most slots (up to 256) whose plan fits the
// memory --max-gpu-memory (or the free memory) allows.
struct SlotPlan {
  int group = 1, files = 1, enc_batch = 1;
  int slots() const { return group * files; }
};

SlotPlan cpu_slot_plan(int batch_size, int group) {
  SlotPlan p;
  p.group = group;
  p.files = batch_size > 0 ? std::max(1, batch_size / group) : 2;
  p.enc_batch = std::min(p.files, 8);
  return p;
}

#if FLURRY_WHISPER_GPU
constexpr int kMaxAutoSlots = 256;
constexpr int kEncoderBatch = 8;

SlotPlan gpu_slot_plan(const flurry::whisper::WhisperConfig& c, int batch_size, int group, size_t max_gpu_bytes) {
  SlotPlan p;
  p.group = group;
  if (batch_size > 0) {
    p.files = std::max(1, batch_size / group);
  } else {
    size_t free_b = 0, total_b = 0;
    flurry::device_memory_info(&free_b, &total_b);
    // WhisperGpu::create's margin, and room for cuBLASLt / cuFFT outside the arena.
    const size_t reserve = std::max<size_t>(size_t{512} << 20, total_b / 50) + (size_t{1} << 30);
    size_t budget = free_b > reserve ? free_b - reserve : 0;
    if (max_gpu_bytes > 0) budget = std::min(budget, max_gpu_bytes);
    flurry::whisper::WhisperGpuOptions o;
    const int slots = flurry::whisper::pipeline_slots_for_memory(c, o, group, kEncoderBatch, budget, kMaxAutoSlots);
    p.files = std::max(1, slots / group);  // 0 slots: let create() say what is needed
  }
  p.enc_batch = std::min(p.files, kEncoderBatch);
  return p;
}
#endif

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
  const int group = flurry::whisper::slots_per_file(options);
  std::unique_ptr<flurry::whisper::SlotBackend> backend;
  SlotPlan plan;
#if FLURRY_WHISPER_GPU
  std::unique_ptr<flurry::whisper::WhisperGpu> gpu;
  if (device == "cuda") {
    plan = gpu_slot_plan(assets.config, app.common.batch_size, group, app.max_gpu_bytes);
    flurry::whisper::WhisperGpuOptions go;
    go.plan = flurry::whisper::pipeline_plan(plan.slots(), plan.files, plan.enc_batch);
    go.max_gpu_memory = app.max_gpu_bytes;
    {
      // Weights straight from the memory-mapped checkpoint to the device: no fp32 host model.
      flurry::ScopedStage stage(&timers, "upload");
      gpu = flurry::whisper::WhisperGpu::load(f.model, go);
    }
    backend = std::make_unique<flurry::whisper::GpuSlotBackend>(*gpu, plan.files);
  }
#endif
  if (!backend) {
    plan = cpu_slot_plan(app.common.batch_size, group);
    backend = std::make_unique<flurry::whisper::CpuSlotBackend>(assets.model, plan.slots(), plan.files,
                                                                plan.enc_batch);
  }
  LOG_INFO("model " << f.model << ": " << assets.config.d_model << " wide, " << assets.config.encoder_layers << "+"
                    << assets.config.decoder_layers << " layers, " << assets.config.num_mel_bins << " mels; device "
                    << device << "; " << plan.slots() << " decoder slots: " << plan.files << " files in flight x "
                    << plan.group << " sequences, encoder batch " << plan.enc_batch);

  flurry::dist::RunnerOptions& opts = app.runner;
  opts.model = f.model;
  opts.unit = "audio s";
  opts.work_key = "duration";
  opts.timers = &timers;
  opts.extra["batch_plan"] = {{"slots", plan.slots()}, {"files_in_flight", plan.files},
                              {"slots_per_file", plan.group}, {"encoder_batch", plan.enc_batch}};
  const std::vector<flurry::dist::WorkItem> items = flurry::dist::collect_inputs(app.inputs, audio_cost, &app.dist);
  std::vector<std::string> formats;
  if (f.output_format == "all") {
    formats = flurry::transcript_formats();
  } else if (f.output_format != "none") {
    formats = {f.output_format};
  }
  const char* fatal_env = std::getenv("FLURRY_TEST_FATAL_AT");  // the runner's fault-injection hook
  const int64_t fatal_at = fatal_env != nullptr && *fatal_env != '\0' ? std::atoll(fatal_env) : -1;

  flurry::whisper::PipelineOptions po;
  po.transcribe = options;
  po.timers = &timers;
  po.readers = std::clamp(plan.files, 1, 4);
  flurry::whisper::WhisperPipeline pipeline(assets, *backend, plan.files, po);
  return flurry::dist::run_job_session(app.dist, opts, items, [&](flurry::dist::JobSession& session) {
    std::mutex held_mu;
    std::map<int64_t, flurry::dist::WorkItem> held;  // items between next() and complete()
    const auto next = [&](flurry::whisper::PipelineItem* p) {
      flurry::dist::WorkItem item;
      if (!session.next(&item)) return false;
      p->index = item.index;
      p->path = item.id;
      std::lock_guard<std::mutex> lock(held_mu);
      held[item.index] = item;
      return true;
    };
    const auto done = [&](flurry::whisper::PipelineItem& p, flurry::whisper::Transcript* t, const std::string* error) {
      flurry::dist::WorkItem item;
      {
        std::lock_guard<std::mutex> lock(held_mu);
        auto it = held.find(p.index);
        FLURRY_CHECK(it != held.end(), "whisper pipeline: item " << p.index << " was not handed out");
        item = std::move(it->second);
        held.erase(it);
      }
      if (item.index == fatal_at) FLURRY_FAIL("injected fatal fault (FLURRY_TEST_FATAL_AT=" << fatal_at << ")");
      if (t == nullptr) {
        session.fail(item, *error);
        return;
      }
      t->id = item.id;
      if (!formats.empty()) {
        // Keyed by the input's path below the folder all inputs share: a/x.wav and b/x.wav never collide.
        const std::filesystem::path base = flurry::dist::item_output_base(opts, item);
        flurry::write_transcript_files(*t, base.parent_path().string(), base.filename().string(), formats);
      }
      session.complete(item, flurry::whisper::transcript_record(*t));
    };
    pipeline.run(next, done);
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
  spec.batch_size_help =
      "decoder slots (sequences in flight); files in flight = slots / max(beam_size, best_of); default: 2 files "
      "on cpu, on cuda the most slots (up to 256) that fit --max-gpu-memory";
  spec.default_batch_size = 0;  // 0: planned per device (process())
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
