#include "models/whisper/app/batch_pipeline.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "io/audio.h"
#include "models/whisper/app/features.h"
#include "runtime/audio_constants.h"
#include "runtime/check.h"

namespace flurry::whisper {

int slots_per_file(const TranscribeOptions& o) {
  int g = 1;
  for (float t : o.temperatures) {
    // decode_with_fallback drops beam_size at t > 0 and best_of at t == 0.
    if (t > 0.0f) {
      g = std::max(g, o.decode.best_of > 0 ? o.decode.best_of : 1);
    } else {
      g = std::max(g, o.decode.beam_size > 0 ? o.decode.beam_size : 1);
    }
  }
  return g;
}

WhisperPipeline::WhisperPipeline(const WhisperAssets& assets, SlotBackend& backend, int files, PipelineOptions options)
    : assets_(assets), opt_(std::move(options)), decoder_(backend, files) {
  FLURRY_CHECK(decoder_.slots_per_lane() >= slots_per_file(opt_.transcribe),
               "whisper pipeline: " << files << " files in flight with " << slots_per_file(opt_.transcribe)
                                    << " decoder slots each need " << files * slots_per_file(opt_.transcribe)
                                    << " slots; the backend has " << backend.slots());
  FLURRY_CHECK(assets_.tokenizer != nullptr, "whisper pipeline: no tokenizer");
  opt_.readers = std::max(1, opt_.readers);
  if (opt_.queue_depth <= 0) opt_.queue_depth = 2 * files;
}

// The per-file work of transcribe_file() (pipeline.cpp) on a lane: the whole file's log-mel, then
// the reference transcribe() loop, whose model calls the lane batches with the other files'.
Transcript WhisperPipeline::transcribe_item(InflightDecoder::Lane& lane, PipelineItem& item) {
  const BpeTokenizer& tok = *assets_.tokenizer;
  auto detokenize = [&](const std::vector<int>& ids) { return tok.decode(ids, true); };
  const double duration = static_cast<double>(item.audio.size()) / kAudioSampleRate;
  TranscribeOptions forced;
  const TranscribeOptions* options = &opt_.transcribe;
  if (item.forced_length > 0) {
    forced = opt_.transcribe;
    forced.decode.forced_length = item.forced_length;
    options = &forced;
  }
  if (opt_.backend_mel && lane.encodes_samples()) {
    // The backend finds the file's floor with the first window (floor NaN until then) and computes
    // each window's log-mel from the samples: the same definition as log_mel_whole's windows.
    SampleWindow w;
    w.samples = item.audio.data();
    w.n_samples = static_cast<int64_t>(item.audio.size());
    float floor_v = std::numeric_limits<float>::quiet_NaN();
    w.floor = &floor_v;
    auto encode_window = [&](int seek, int n_frames) {
      w.seek = seek;
      w.n_frames = n_frames;
      lane.encode_samples(w);
    };
    LaneSession session(lane);
    Transcript t = transcribe(lane, assets_.special, *options, static_cast<int>(w.n_samples / kMelHop),
                              encode_window, detokenize);
    t.duration = duration;
    std::vector<float>().swap(item.audio);
    return t;
  }
  const int n_mels = static_cast<int>(assets_.config.num_mel_bins);
  std::optional<LogMel> mel;
  {
    ScopedStage stage(opt_.timers, "mel");
    mel.emplace(log_mel_whole(item.audio.data(), static_cast<int64_t>(item.audio.size()), n_mels));
  }
  std::vector<float>().swap(item.audio);
  std::vector<float> window(static_cast<size_t>(n_mels) * kMelWindowFrames);
  auto encode_window = [&](int seek, int n_frames) {
    mel->window(seek, n_frames, window.data());
    lane.encode_audio(window.data());
  };
  LaneSession session(lane);
  Transcript t = transcribe(lane, assets_.special, *options, static_cast<int>(mel->content_frames),
                            encode_window, detokenize);
  t.duration = duration;
  return t;
}

namespace {

// The bounded queue between the readers and the drivers, and the run's stop flag and first fault.
struct Shared {
  std::mutex mu;
  std::condition_variable cv_push, cv_pop;
  std::deque<PipelineItem> queue;
  int readers_left = 0;
  bool stop = false;
  std::exception_ptr fault;

  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu);
    if (!fault) fault = std::move(e);
    stop = true;
    cv_push.notify_all();
    cv_pop.notify_all();
  }
};

}  // namespace

void WhisperPipeline::run(const NextFn& next, const DoneFn& done, const LoadFn& load) {
  Shared sh;
  sh.readers_left = opt_.readers;
  const size_t depth = static_cast<size_t>(opt_.queue_depth);
  const LoadFn read = load ? load : LoadFn([](const std::string& p) { return load_audio_16k(p); });
  decoder_.reopen();
  const InflightStats before = decoder_.stats();

  auto reader = [&]() {
    try {
      for (;;) {
        {
          std::lock_guard<std::mutex> lock(sh.mu);
          if (sh.stop) break;
        }
        PipelineItem item;
        if (!next(&item)) break;
        try {
          ScopedStage stage(opt_.timers, "audio");
          item.audio = read(item.path);
        } catch (const InputError& e) {
          item.error = e.what();
        }
        std::unique_lock<std::mutex> lock(sh.mu);
        sh.cv_push.wait(lock, [&] { return sh.stop || sh.queue.size() < depth; });
        if (sh.stop) break;
        sh.queue.push_back(std::move(item));
        sh.cv_pop.notify_one();
      }
    } catch (...) {
      sh.fail(std::current_exception());
    }
    std::lock_guard<std::mutex> lock(sh.mu);
    --sh.readers_left;
    sh.cv_pop.notify_all();
  };

  std::atomic<int> drivers_left{decoder_.lanes()};
  auto driver = [&](int k) {
    InflightDecoder::Lane& lane = decoder_.lane(k);
    try {
      for (;;) {
        PipelineItem item;
        {
          std::unique_lock<std::mutex> lock(sh.mu);
          sh.cv_pop.wait(lock, [&] { return sh.stop || !sh.queue.empty() || sh.readers_left == 0; });
          if (sh.stop || sh.queue.empty()) break;
          item = std::move(sh.queue.front());
          sh.queue.pop_front();
          sh.cv_push.notify_one();
        }
        if (!item.error.empty()) {
          done(item, nullptr, &item.error);
          continue;
        }
        std::optional<Transcript> t;
        std::string error;
        try {
          t.emplace(transcribe_item(lane, item));
        } catch (const InputError& e) {
          error = e.what();
        }
        if (t) {
          done(item, &*t, nullptr);
        } else {
          done(item, nullptr, &error);
        }
      }
    } catch (...) {
      sh.fail(std::current_exception());
    }
    if (--drivers_left == 0) decoder_.close();
  };

  std::vector<std::thread> threads;
  for (int r = 0; r < opt_.readers; ++r) threads.emplace_back(reader);
  for (int k = 0; k < decoder_.lanes(); ++k) threads.emplace_back(driver, k);
  try {
    decoder_.serve();
  } catch (...) {
    sh.fail(std::current_exception());
  }
  for (std::thread& th : threads) th.join();
  if (opt_.timers != nullptr) {
    const InflightStats& st = decoder_.stats();
    // Log-mel on the backend (device mel) is timed there; the drivers time the host's.
    if (st.mel_s > before.mel_s) opt_.timers->add("mel", st.mel_s - before.mel_s, st.windows - before.windows);
    opt_.timers->add("encode", st.encoder_s - before.encoder_s, st.windows - before.windows);
    opt_.timers->add("decode", st.decoder_s - before.decoder_s, st.steps - before.steps);
  }
  if (sh.fault) std::rethrow_exception(sh.fault);
}

}  // namespace flurry::whisper
