// The batched transcription pipeline flurry-whisper runs on both devices (and whisper_bench
// drives with a real checkpoint):
//
//   next() ──> reader threads (decode + resample, bounded queue of decoded files)
//          ──> driver threads, one per file in flight: log-mel of the whole file, then the
//              reference transcribe() loop (long-form seek, fallback, prompts, timestamps) on an
//              InflightDecoder lane. On a backend that computes log-mel (the GPU's), the driver
//              skips the host log-mel and each window goes to the backend as samples
//              (SampleWindow); the file's samples stay alive until its transcript is done
//          ──> InflightDecoder::serve() on the calling thread: the lanes' encodes as encoder
//              batches and their decoder calls as one batched forward per step (the GPU's thread)
//          ──> done() from the driver thread (the runner's complete(), per-file outputs).
//
// --batch-size means decoder slots (sequences in flight) everywhere: files in flight =
// slots / slots_per_file(options), as a beam search of 5 takes 5 slots per file.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "models/whisper/app/pipeline.h"
#include "models/whisper/inflight_decoder.h"

namespace flurry::whisper {

struct PipelineItem {
  int64_t index = 0;         // the caller's tag (the runner's item index)
  std::string path;          // audio file
  std::vector<float> audio;  // 16 kHz mono, filled by a reader (freed once the log-mel is made)
  std::string error;         // the input's fault found while reading; the item is not decoded
  int forced_length = 0;     // benchmarks: DecodingOptions::forced_length for this file; 0: none
};

struct PipelineOptions {
  int readers = 2;
  int queue_depth = 0;  // decoded files waiting for a driver; 0: 2 x files in flight
  TranscribeOptions transcribe;
  // Log-mel on the backend where it can (SlotBackend::encodes_samples()); false: always on the
  // driver threads (the GPU test's oracle).
  bool backend_mel = true;
  StageTimers* timers = nullptr;  // audio, mel; encode and decode from the engine's stats
};

// Decoder slots one file needs at once: the beams at temperature 0, best_of at t > 0, else 1.
int slots_per_file(const TranscribeOptions& o);

class WhisperPipeline {
 public:
  // Fills `item` (index, path) with the next input; false when there are none left. Called from
  // the reader threads, one call at a time per thread.
  using NextFn = std::function<bool(PipelineItem* item)>;
  // Reads a file as 16 kHz mono samples; throws InputError for a bad file.
  using LoadFn = std::function<std::vector<float>(const std::string& path)>;
  // One call per item from a driver thread: `t` with the transcript (id unset, duration set), or
  // `error` with the input's fault. An exception other than InputError stops the run.
  using DoneFn = std::function<void(PipelineItem& item, Transcript* t, const std::string* error)>;

  // `files` in flight (lanes); `backend` must have slots >= files * slots_per_file and audios >= files.
  WhisperPipeline(const WhisperAssets& assets, SlotBackend& backend, int files, PipelineOptions options);

  // Runs until next() is exhausted and every item is done; the backend is driven from the calling
  // thread. Rethrows the first fault that is not an input's (after stopping every thread).
  void run(const NextFn& next, const DoneFn& done, const LoadFn& load = {});

  const InflightStats& stats() const { return decoder_.stats(); }
  void reset_stats() { decoder_.reset_stats(); }
  int files_in_flight() const { return decoder_.lanes(); }

 private:
  Transcript transcribe_item(InflightDecoder::Lane& lane, PipelineItem& item);

  const WhisperAssets& assets_;
  PipelineOptions opt_;
  InflightDecoder decoder_;
};

}  // namespace flurry::whisper
