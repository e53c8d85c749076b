// One Whisper checkpoint ready to transcribe files: model, tokenizer, special tokens and the
// checkpoint's generation defaults, loaded once per process and shared by every input.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "io/bpe_tokenizer.h"
#include "io/writers.h"
#include "models/whisper/model.h"
#include "models/whisper/transcribe.h"
#include "runtime/stage_timers.h"

namespace flurry::whisper {

struct WhisperAssets {
  std::string dir;
  WhisperConfig config;
  std::shared_ptr<const WhisperModel> model;  // the fp32 CPU model; null when loaded for the GPU only
  std::shared_ptr<const BpeTokenizer> tokenizer;
  SpecialTokens special;  // by name from the tokenizer, with generation_config.json's lists
};

// Reads config.json, the safetensors weights, the tokenizer files and generation_config.json
// (suppress_tokens, begin_suppress_tokens; both optional) from `dir`. Throws naming what is wrong.
// With cpu_model = false the fp32 CPU model is not built (a GPU rank uploads its weights straight
// from the checkpoint and must not hold a host copy: 6 GB for large-v3).
WhisperAssets load_whisper_assets(const std::string& dir, bool cpu_model = true);

// Transcribes one file on the CPU reference path; throws flurry::Error for a bad file.
Transcript transcribe_file(const WhisperAssets& assets, const std::string& path,
                           const TranscribeOptions& options, double* duration_s, StageTimers* timers = nullptr);

// A decoding backend for transcribe(): the decoder, and how it encodes a window's log-mel
// ([n_mels, 3000] fp32, host) as its audio 0. The CPU path builds one per file; the GPU path
// (models/whisper/gpu) shares one for the whole run.
struct WindowBackend {
  DecoderModel* decoder = nullptr;
  std::function<void(const float* mel)> encode;
  StageTimers* timers = nullptr;  // audio, mel, encode, decode (decode = the rest of transcribe)
};

// As above, on `backend`: the same host log-mel and the same transcribe() driver, so the two
// devices differ only in the model's arithmetic.
Transcript transcribe_file(const WhisperAssets& assets, const std::string& path,
                           const TranscribeOptions& options, double* duration_s, const WindowBackend& backend);

// The canonical result record fields (language, duration, text, segments) for results.jsonl.
nlohmann::json transcript_record(const Transcript& t);

// The model directory used when --model is not given: $FLURRY_WHISPER_MODEL, else the checkpoint
// `make demo` installs under models-cache/ (looked up from the working directory and from the
// binary's location). Empty when none is found.
std::string default_model_dir(const char* argv0);

}  // namespace flurry::whisper
