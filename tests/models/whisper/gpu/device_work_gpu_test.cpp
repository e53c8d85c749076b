// The GPU pipeline backend's device-side work (models/whisper/gpu/inflight.h, GpuSlotBackend)
// against the host paths it replaces:
//  - log-mel on the device (encode_samples): windows of the long-form spectrogram equal
//    features.h's log_mel_whole windows (peak pass, edge context, the file's floor, zero padding
//    past the segment) within the fp32 FFT's bound; and the pipeline's transcripts with device mel
//    equal those with host mel on real speech, or differ only where fp16 moves a token, with no
//    more word errors;
//  - selection on the device (forward_select): the rules, log-softmax and argmax (or beam search's
//    top k) of logits_select give the host's choice (logit_rules.h + std::max_element +
//    log_softmax, step_beam's partial_sort) on the same logits row, with random weights and with
//    the real checkpoint on real speech, for several rule sets and k in one call; and the
//    pipeline's transcripts with device selection equal the host's token for token at batch 1
//    (the logits are the same; only the choice moved), greedy lanes mixed with sampling ones at
//    fallback temperatures; beam search is printed and held to the word rule (fp32 vs double
//    normalisers in the beam scores).
// Without a GPU every test skips; without the real checkpoint or the speech, those parts skip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <mutex>
#include <unistd.h>

#include "io/audio.h"
#include "io/text_normalizer.h"
#include "io/wer.h"
#include "kernels/audio/logmel.cuh"
#include "models/whisper/app/batch_pipeline.h"
#include "models/whisper/app/features.h"
#include "models/whisper/gpu/inflight.h"
#include "models/whisper/gpu/whisper_gpu.h"
#include "runtime/cuda/stream.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"
#include "tests/models/whisper/e2e/e2e_util.h"
#include "tests/models/whisper/gpu/random_model.h"

namespace flurry::whisper {
namespace {

namespace fs = std::filesystem;
using test::DeviceBuffer;

constexpr double kMelNormBound = 1e-4;  // fp32 cuFFT vs the double-precision host STFT (logmel_test)
constexpr double kMelAtol = 2e-3;

// ---- log-mel ----------------------------------------------------------------------------------

std::vector<float> chirp(int64_t n, std::mt19937_64& rng) {
  std::vector<float> x = test::random_vector(static_cast<size_t>(n), rng, -0.02f, 0.02f);
  for (int64_t i = 0; i < n; ++i) {
    const double t = i / 16000.0;
    const double phase = 2.0 * 3.14159265358979323846 * (100.0 * t + 40.0 * t * t);
    // Loud and quiet stretches, so the file's floor differs from most windows' own.
    x[static_cast<size_t>(i)] += static_cast<float>(0.4 * std::sin(phase) * (0.55 + 0.45 * std::sin(0.7 * t)));
  }
  return x;
}

// The device path of encode_samples, step by step through the same host helpers: the peak pass over
// peak_tiles(), then the windows with the file's floor, into fp32.
std::vector<float> device_windows(LogMelGpu& mel, const std::vector<float>& x,
                                  const std::vector<std::pair<int64_t, int64_t>>& windows) {
  const int n_mels = mel.n_mels();
  const int64_t n = static_cast<int64_t>(x.size());
  Stream stream;
  const std::vector<int64_t> tiles = peak_tiles(n);
  const int batch = static_cast<int>(std::max(tiles.size(), windows.size()));
  DeviceBuffer ws(LogMelGpu::workspace_bytes(batch));
  DeviceBuffer d_samples(static_cast<size_t>(batch) * kLogMelContextSamples * sizeof(float));
  DeviceBuffer d_lengths(static_cast<size_t>(batch) * sizeof(int32_t));
  DeviceBuffer d_peak(static_cast<size_t>(batch) * sizeof(float));
  DeviceBuffer d_floor(static_cast<size_t>(batch) * sizeof(float));
  DeviceBuffer d_valid(static_cast<size_t>(batch) * sizeof(int32_t));
  std::vector<float> staged(kLogMelContextSamples);
  auto stage = [&](const std::vector<int64_t>& seeks) {
    std::vector<int32_t> lengths;
    for (size_t k = 0; k < seeks.size(); ++k) {
      const int32_t len = stage_window_samples(x.data(), n, seeks[k], staged.data());
      CUDA_CHECK(cudaMemcpy(static_cast<float*>(d_samples.get()) + k * kLogMelContextSamples, staged.data(),
                            static_cast<size_t>(len) * sizeof(float), cudaMemcpyHostToDevice));
      lengths.push_back(len);
    }
    CUDA_CHECK(cudaMemcpy(d_lengths.get(), lengths.data(), lengths.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  };

  stage(tiles);
  LogMelArgs a;
  a.samples = static_cast<const float*>(d_samples.get());
  a.sample_stride = kLogMelContextSamples;
  a.lengths = static_cast<const int32_t*>(d_lengths.get());
  a.batch = static_cast<int>(tiles.size());
  a.context = true;
  a.peak_out = static_cast<float*>(d_peak.get());
  mel.run(a, ws.get(), ws.size(), stream);
  stream.synchronize();
  std::vector<float> peaks = test::download(d_peak.get(), tiles.size(), DType::F32);
  float peak = -10.0f;
  for (float p : peaks) peak = std::max(peak, p);
  const float floor_v = peak - 8.0f;

  std::vector<int64_t> seeks;
  std::vector<int32_t> valid;
  for (const auto& [seek, n_frames] : windows) {
    seeks.push_back(seek);
    valid.push_back(window_valid_frames(n, seek, n_frames));
  }
  stage(seeks);
  const std::vector<float> floors(windows.size(), floor_v);
  CUDA_CHECK(cudaMemcpy(d_floor.get(), floors.data(), floors.size() * sizeof(float), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(d_valid.get(), valid.data(), valid.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  const size_t per = static_cast<size_t>(n_mels) * kMelWindowFrames;
  DeviceBuffer d_out(windows.size() * per * sizeof(float));
  d_out.poison();
  LogMelArgs w;
  w.samples = a.samples;
  w.sample_stride = kLogMelContextSamples;
  w.lengths = a.lengths;
  w.batch = static_cast<int>(windows.size());
  w.context = true;
  w.floors = static_cast<const float*>(d_floor.get());
  w.valid_frames = static_cast<const int32_t*>(d_valid.get());
  w.out = d_out.get();
  w.out_type = DType::F32;
  mel.run(w, ws.get(), ws.size(), stream);
  stream.synchronize();
  return test::download(d_out.get(), windows.size() * per, DType::F32);
}

void check_windows(const std::string& name, const std::vector<float>& x, int n_mels) {
  const LogMel host = log_mel_whole(x.data(), static_cast<int64_t>(x.size()), n_mels);
  const int64_t cf = host.content_frames;
  // Window starts at the file's start (reflect padding), mid-file (edge context from both sides),
  // segments shorter than 3000 frames (zero padding), and the file's tail.
  std::vector<std::pair<int64_t, int64_t>> windows = {{0, std::min<int64_t>(cf, 3000)}};
  if (cf > 1300) windows.push_back({1234, std::min<int64_t>(cf - 1234, 3000)});
  if (cf > 4000) windows.push_back({3000, 2500});
  windows.push_back({std::max<int64_t>(cf - 700, 0), std::min<int64_t>(cf, 700)});
  windows.push_back({std::max<int64_t>(cf - 10, 0), std::min<int64_t>(cf, 10)});
  LogMelGpu mel(n_mels);
  const std::vector<float> dev = device_windows(mel, x, windows);
  const size_t per = static_cast<size_t>(n_mels) * kMelWindowFrames;
  std::vector<float> want(per);
  for (size_t k = 0; k < windows.size(); ++k) {
    host.window(windows[k].first, windows[k].second, want.data());
    const float* got = dev.data() + k * per;
    const std::string what = name + " n_mels " + std::to_string(n_mels) + " seek " +
                             std::to_string(windows[k].first) + " frames " + std::to_string(windows[k].second);
    // The zero padding past the segment is exact (all of a window with no frames: no norm to compare).
    const int32_t valid = window_valid_frames(static_cast<int64_t>(x.size()), windows[k].first, windows[k].second);
    if (valid > 0) {
      const std::vector<float> got_v(got, got + per);
      EXPECT_TRUE(test::close_in_norm(what, got_v, want, kMelNormBound));
      EXPECT_TRUE(test::close_elementwise(what, got, want.data(), per, kMelAtol, 0.0));
    }
    int64_t nonzero = 0;
    for (int m = 0; m < n_mels; ++m) {
      const float* mel_row = got + static_cast<size_t>(m) * kMelWindowFrames;
      for (int t = valid; t < kMelWindowFrames; ++t) nonzero += mel_row[t] != 0.0f;
    }
    EXPECT_EQ(nonzero, 0) << what;
    std::printf("[device mel] %s: rel norm error %.3g\n", what.c_str(), test::rel_norm_error(got, want.data(), per));
  }
}

TEST(WhisperDeviceMel, WindowsEqualHostLongFormMel) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("whisper_device_mel");
  const std::vector<float> synth = chirp(16000 * 75 + 123, rng);  // 75 s: three tiles, ragged end
  for (int n_mels : {80, 128}) check_windows("chirp", synth, n_mels);
  check_windows("tiny", chirp(150, rng), 80);  // shorter than the reflect pad
  const std::string jfk = test::shared_data_path("speech/jfk.wav");
  if (!jfk.empty() && fs::exists(jfk)) check_windows("jfk", load_audio_16k(jfk), 80);
}

// ---- selection ----------------------------------------------------------------------------------

// The host's step over one row: filter_row's rules, std::max_element, log_softmax, and step_beam's
// top k (partial_sort by logprob descending, then id ascending).
void host_choice(std::vector<float> row, const LogitRuleSet& r, const std::vector<int>& hist, int k, int* tok,
                 float* lp, std::vector<float>* filtered, std::vector<int>* top, std::vector<float>* top_lp) {
  const int V = static_cast<int>(row.size());
  const int n = static_cast<int>(hist.size());
  std::vector<float> scratch;
  apply_rule_set(r, row.data(), V, hist.data(), n, scratch);
  *tok = static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
  std::vector<float> lps(row.size());
  log_softmax(row.data(), V, lps.data());
  *lp = lps[static_cast<size_t>(*tok)];
  std::vector<int> idx(row.size());
  for (int i = 0; i < V; ++i) idx[static_cast<size_t>(i)] = i;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
    const float la = lps[static_cast<size_t>(a)], lb = lps[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  });
  top->assign(idx.begin(), idx.begin() + k);
  top_lp->clear();
  for (int id : *top) top_lp->push_back(lps[static_cast<size_t>(id)]);
  *filtered = std::move(row);
}

// Two windows; for each, slot 2w asks for its full row and slot 2w + 1 for the device's choice with
// the same tokens (so the same logits), teacher-forced with the host's choice for `steps` steps.
// Window w uses rules[w] and top_k[w] (0: greedy's argmax; k: beam search's k candidates). Returns
// the number of choices compared.
int compare_choices(WhisperGpu& g, const std::vector<const float*>& mels, const std::vector<int>& init,
                    const std::vector<LogitRuleSet>& rules, const std::vector<int>& top_k, int steps,
                    const std::string& name) {
  GpuSlotBackend be(g, 2, true);
  InflightStats stats;
  be.encode({0, 1}, mels, stats);
  const int V = be.vocab();
  std::vector<std::vector<int>> hist(2), feed(2, init);
  std::vector<int> pos(2, 0);
  int compared = 0;
  for (int step = 0; step < steps; ++step) {
    std::vector<SlotCall> calls;
    for (int w = 0; w < 2; ++w) {
      SlotCall c;
      c.slot = 2 * w;
      c.audio = w;
      c.pos = pos[static_cast<size_t>(w)];
      c.tokens = feed[static_cast<size_t>(w)].data();
      c.n_new = static_cast<int>(feed[static_cast<size_t>(w)].size());
      calls.push_back(c);
      c.slot = 2 * w + 1;
      c.rules = &rules[static_cast<size_t>(w)];
      c.sampled = hist[static_cast<size_t>(w)].data();
      c.n_sampled = static_cast<int>(hist[static_cast<size_t>(w)].size());
      c.top_k = top_k[static_cast<size_t>(w)];
      calls.push_back(c);
    }
    std::vector<float> last(calls.size() * static_cast<size_t>(V), std::numeric_limits<float>::quiet_NaN());
    std::vector<int32_t> token(calls.size() * kMaxSelectTopK, -1);
    std::vector<float> logprob(calls.size() * kMaxSelectTopK, std::numeric_limits<float>::quiet_NaN());
    be.forward_select(calls, last.data(), nullptr, token.data(), logprob.data(), stats);
    for (int w = 0; w < 2; ++w) {
      const size_t full = static_cast<size_t>(2 * w), sel = (full + 1) * kMaxSelectTopK;
      const int k = top_k[static_cast<size_t>(w)];
      const std::vector<float> row(last.begin() + static_cast<std::ptrdiff_t>(full * V),
                                   last.begin() + static_cast<std::ptrdiff_t>((full + 1) * V));
      if (!std::all_of(row.begin(), row.end(), [](float v) { return !std::isnan(v); })) {
        ADD_FAILURE() << name << ": full row " << full << " not written at step " << step;
        return compared;
      }
      int tok = -1;
      float lp = 0.0f;
      std::vector<float> filtered, top_lp;
      std::vector<int> top;
      host_choice(row, rules[static_cast<size_t>(w)], hist[static_cast<size_t>(w)], std::max(k, 1), &tok, &lp,
                  &filtered, &top, &top_lp);
      const std::string where = name + " window " + std::to_string(w) + " step " + std::to_string(step);
      if (k > 0) {
        // Beam candidates: the same ids in the same order (ties only where the logprobs are equal).
        for (int j = 0; j < k; ++j) {
          const size_t at = static_cast<size_t>(j);
          const int32_t id = token[sel + at];
          const float dev_lp = logprob[sel + at], host_lp = top_lp[at];
          if (!std::isfinite(host_lp)) continue;  // fewer than k unmasked tokens: ids by order only
          // A different id only where two logprobs tie (within the normalisers' rounding).
          EXPECT_NEAR(dev_lp, host_lp, 1e-4 + 1e-5 * std::fabs(host_lp))
              << where << " candidate " << j << ": device " << id << ", host " << top[at];
          if (id != top[at]) {
            std::printf("%s candidate %d: tie broken differently (%d vs %d)\n", where.c_str(), j, id, top[at]);
          }
        }
      } else if (token[sel] != tok) {
        // Only a tie in the filtered row may be broken differently (it would need equal logits).
        const float a = filtered[static_cast<size_t>(tok)];
        const float b = token[sel] >= 0 && token[sel] < V ? filtered[static_cast<size_t>(token[sel])] : -INFINITY;
        EXPECT_LE(std::fabs(a - b), 1e-6f * (1.0f + std::fabs(a)))
            << where << ": device chose " << token[sel] << " (" << b << "), host " << tok << " (" << a << ")";
      } else {
        EXPECT_NEAR(logprob[sel], lp, 1e-4 + 1e-5 * std::fabs(lp)) << where << " token " << tok;
      }
      ++compared;
      pos[static_cast<size_t>(w)] += static_cast<int>(feed[static_cast<size_t>(w)].size());
      feed[static_cast<size_t>(w)] = {tok};
      hist[static_cast<size_t>(w)].push_back(tok);
    }
  }
  return compared;
}

LogitRuleSet rules_for(const SpecialTokens& sp, bool timestamps) {
  LogitRuleSet r;
  r.suppress_blank = true;
  r.blank_tokens = sp.blank_tokens;
  r.suppress = resolve_suppress_tokens(sp, {-1});
  r.timestamps = timestamps;
  r.ts.eot = sp.eot;
  r.ts.no_timestamps = sp.no_timestamps;
  r.ts.timestamp_begin = sp.timestamp_begin;
  r.ts.max_initial_timestamp_index = 50;  // openai-whisper's 1.0 s
  return r;
}

TEST(WhisperDeviceSelect, SummarizedHistoryDecidesAsTheWhole) {
  // The rules' view of a history (pure host code, checked here with the selection it feeds).
  const int tb = 100;
  int32_t out[3];
  const std::vector<int> h = {5, 101, 7, 103, 9, 10};
  EXPECT_EQ(summarize_history(h.data(), 6, tb, out), 3);
  EXPECT_EQ(out[0], 103);
  EXPECT_EQ(out[1], 9);
  EXPECT_EQ(out[2], 10);
  const std::vector<int> text = {1, 2, 3, 4};
  EXPECT_EQ(summarize_history(text.data(), 4, tb, out), 3);
  EXPECT_LT(out[0], tb);
  EXPECT_EQ(summarize_history(h.data(), 2, tb, out), 2);
  EXPECT_EQ(out[1], 101);
  EXPECT_EQ(summarize_history(h.data(), 0, tb, out), 0);
}

TEST(WhisperDeviceSelect, ChoiceEqualsHostOnRandomWeights) {
  FLURRY_REQUIRE_GPU();
  const auto cpu = test_gpu::random_whisper({"small", 128, 2, 512, 2, 2}, test::test_seed());
  WhisperGpuOptions o;
  o.plan = pipeline_plan(4, 2, 2);
  auto g = WhisperGpu::create(*cpu, o);
  auto rng = test::test_rng("whisper_device_select");
  const size_t n = static_cast<size_t>(cpu->config().num_mel_bins * cpu->config().n_frames());
  const std::vector<float> m0 = test::random_vector(n, rng, -1.0f, 1.5f);
  const std::vector<float> m1 = test::random_vector(n, rng, -1.0f, 1.5f);
  // Large-v3's ids (the random model's vocabulary): EOT, <|notimestamps|>, the first timestamp.
  SpecialTokens sp;
  sp.eot = 50257;
  sp.sot = 50258;
  sp.translate = 50359;
  sp.transcribe = 50360;
  sp.sot_lm = 50361;
  sp.sot_prev = 50362;
  sp.no_speech = 50363;
  sp.no_timestamps = 50364;
  sp.timestamp_begin = 50365;
  sp.blank_tokens = {220};
  sp.suppress_tokens = {1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63};
  const LogitRuleSet ts = rules_for(sp, true), plain = rules_for(sp, false);
  int compared = 0;
  const std::vector<int> ts_init = {50258, 50259, 50360}, plain_init = {50258, 50259, 50360, 50364};
  compared += compare_choices(*g, {m0.data(), m1.data()}, ts_init, {ts, ts}, {0, 0}, 40, "random ts");
  compared += compare_choices(*g, {m0.data(), m1.data()}, plain_init, {plain, plain}, {0, 0}, 40, "random plain");
  compared += compare_choices(*g, {m0.data(), m1.data()}, ts_init, {ts, plain}, {0, 0}, 40, "random mixed rules");
  // Beam search's candidates (beam 5: top 6), next to a greedy lane in the same call.
  compared += compare_choices(*g, {m0.data(), m1.data()}, ts_init, {ts, ts}, {6, 0}, 40, "random beam + greedy");
  compared += compare_choices(*g, {m0.data(), m1.data()}, plain_init, {plain, plain}, {10, 6}, 20, "random beams");
  std::printf("device selection, random weights: %d choices compared\n", compared);
}

TEST(WhisperDeviceSelect, ChoiceEqualsHostOnRealCheckpoint) {
  FLURRY_REQUIRE_GPU();
  const std::string dir = test::real_whisper_dir();
  if (dir.empty()) GTEST_SKIP() << "no real checkpoint: run make models";
  const std::string jfk = test::shared_data_path("speech/jfk.wav");
  if (jfk.empty() || !fs::exists(jfk)) GTEST_SKIP() << "no jfk.wav";
  const WhisperAssets assets = load_whisper_assets(dir);
  WhisperGpuOptions o;
  o.plan = pipeline_plan(4, 2, 2);
  auto g = WhisperGpu::create(*assets.model, o);
  const int n_mels = static_cast<int>(assets.config.num_mel_bins);
  const std::vector<float> x = load_audio_16k(jfk);
  const LogMel mel = log_mel_whole(x.data(), static_cast<int64_t>(x.size()), n_mels);
  std::vector<float> w0(static_cast<size_t>(n_mels) * kMelWindowFrames), w1(w0.size());
  mel.window(0, mel.content_frames, w0.data());
  mel.window(300, mel.content_frames - 300, w1.data());  // from 3 s on: a different first token
  const SpecialTokens& sp = assets.special;
  DecodingOptions d;
  d.language = "en";
  const std::vector<int> init = initial_tokens(sp, d, "en", 448, {});
  d.without_timestamps = true;
  const std::vector<int> init_plain = initial_tokens(sp, d, "en", 448, {});
  const LogitRuleSet ts = rules_for(sp, true), plain = rules_for(sp, false);
  int compared = 0;
  compared += compare_choices(*g, {w0.data(), w1.data()}, init, {ts, ts}, {0, 0}, 40, "base ts");
  compared += compare_choices(*g, {w0.data(), w1.data()}, init_plain, {plain, plain}, {0, 0}, 30, "base plain");
  compared += compare_choices(*g, {w0.data(), w1.data()}, init, {ts, ts}, {6, 6}, 40, "base beam ts");
  std::printf("device selection, real checkpoint: %d choices compared\n", compared);
}

// ---- the pipeline ----------------------------------------------------------------------------------

struct GpuRun {
  std::vector<Transcript> out;
  InflightStats stats;
};

GpuRun run_gpu(const WhisperAssets& assets, const std::vector<std::string>& paths, const TranscribeOptions& o,
               int files, bool device_select, bool backend_mel) {
  const int group = slots_per_file(o);
  WhisperGpuOptions go;
  go.plan = pipeline_plan(files * group, files, std::min(files, 8));
  auto gpu = WhisperGpu::create(*assets.model, go);
  GpuSlotBackend backend(*gpu, files, device_select);
  PipelineOptions po;
  po.transcribe = o;
  po.backend_mel = backend_mel;
  WhisperPipeline p(assets, backend, files, po);
  GpuRun r;
  r.out.resize(paths.size());
  std::mutex mu;
  size_t next = 0;
  p.run(
      [&](PipelineItem* item) {
        std::lock_guard<std::mutex> lock(mu);
        if (next == paths.size()) return false;
        item->index = static_cast<int64_t>(next);
        item->path = paths[next++];
        return true;
      },
      [&](PipelineItem& item, Transcript* t, const std::string* error) {
        ASSERT_NE(t, nullptr) << *error;
        std::lock_guard<std::mutex> lock(mu);
        r.out[static_cast<size_t>(item.index)] = std::move(*t);
      });
  r.stats = p.stats();
  return r;
}

TEST(WhisperDevicePipeline, DeviceMelAndSelectionAgreeWithHostPaths) {
  FLURRY_REQUIRE_GPU();
  const std::string dir = test::real_whisper_dir();
  if (dir.empty()) GTEST_SKIP() << "no real checkpoint: run make models";
  const fs::path tmp = fs::temp_directory_path() / ("flurry-gpu-device-work-" + std::to_string(::getpid()));
  const auto speech = test::pipeline_speech(tmp, test::shared_data_path("speech/jfk.wav"));
  if (speech.empty()) GTEST_SKIP() << "jfk.wav, espeak-ng or sox not available";
  const std::vector<std::string> paths = {speech.at("long"), speech.at("jfk"), speech.at("s0"), speech.at("s1")};
  const WhisperAssets assets = load_whisper_assets(dir);
  const EnglishTextNormalizer norm;
  const std::vector<std::string> truth = test::pipeline_speech_text();

  TranscribeOptions greedy;  // timestamps on, language detected
  greedy.temperatures = {0.0f};
  TranscribeOptions defaults;  // openai-whisper's CLI: beam 5 at 0 (candidates on the device), best_of 5
  defaults.decode.beam_size = 5;
  defaults.decode.best_of = 5;
  defaults.decode.language = "en";
  TranscribeOptions fallback;  // greedy at 0; windows below -0.2 mean logprob retry with best-of-5 samples
  fallback.decode.best_of = 5;
  fallback.decode.language = "en";
  fallback.logprob_threshold = -0.2;
  for (const TranscribeOptions* o : {&greedy, &defaults, &fallback}) {
    const std::string mode = o == &greedy ? "greedy" : (o == &defaults ? "beam" : "fallback");
    // One file in flight: every step's batch is the same in both runs, so the logits are bit-equal
    // and only where the choice is made differs.
    const GpuRun host1 = run_gpu(assets, paths, *o, 1, false, false);
    const GpuRun select1 = run_gpu(assets, paths, *o, 1, true, false);
    EXPECT_EQ(host1.stats.rows_selected, 0);
    EXPECT_GT(select1.stats.rows_selected, 0) << mode;
    if (o == &fallback) {
      EXPECT_GT(select1.stats.rows_sampled, 0) << "no window fell back to sampling";
    }
    for (size_t i = 0; i < paths.size(); ++i) {
      const std::string what = mode + " " + fs::path(paths[i]).filename().string();
      // Selection moved, the logits did not: the same tokens (sampling lanes draw on the device with
      // the uniforms their seeded sampler would have used on the host). Beam scores add the device's fp32 logprobs (the host normalises in
      // double), so a beam ranking may flip on a last-bit tie: printed, held to the word rule.
      const bool equal = test::same_tokens(host1.out[i], select1.out[i], what + " (device selection, batch 1)");
      if (o == &defaults) {
        const std::string spoken = norm(truth[i]);
        EXPECT_LE(word_errors(spoken, norm(select1.out[i].text)).errors(),
                  word_errors(spoken, norm(host1.out[i].text)).errors())
            << what << ": " << select1.out[i].text;
      } else {
        EXPECT_TRUE(equal) << what;
      }
    }
    if (o == &fallback) continue;  // sampled text: no word rule across runs whose batches differ
    // Four in flight (the lanes' steps interleave by timing): the host-mel run is the oracle.
    const GpuRun host = run_gpu(assets, paths, *o, 4, false, false);
    const GpuRun mel = run_gpu(assets, paths, *o, 4, false, true);
    const GpuRun both = run_gpu(assets, paths, *o, 4, true, true);
    EXPECT_EQ(host.stats.mel_s, 0.0) << mode;
    EXPECT_GT(mel.stats.mel_s, 0.0) << mode;
    EXPECT_GT(both.stats.rows_selected, 0) << mode;
    int mel_equal = 0, both_equal = 0;
    for (size_t i = 0; i < paths.size(); ++i) {
      const std::string what = mode + " " + fs::path(paths[i]).filename().string();
      // Device mel: fp32 FFT vs the host's double STFT, through an fp16 encoder: a token may move
      // where two are nearly tied; the words may not get worse.
      mel_equal += test::same_tokens(host.out[i], mel.out[i], what + " (device mel vs host mel)") ? 1 : 0;
      both_equal += test::same_tokens(host.out[i], both.out[i], what + " (device mel + selection vs host)") ? 1 : 0;
      const std::string spoken = norm(truth[i]);
      const int64_t host_errors = word_errors(spoken, norm(host.out[i].text)).errors();
      EXPECT_LE(word_errors(spoken, norm(mel.out[i].text)).errors(), host_errors) << what << ": " << mel.out[i].text;
      EXPECT_LE(word_errors(spoken, norm(both.out[i].text)).errors(), host_errors) << what << ": " << both.out[i].text;
      EXPECT_EQ(mel.out[i].language, host.out[i].language) << what;
    }
    std::printf("%s: device mel equal to host mel on %d of %zu files; with device selection too: %d\n", mode.c_str(),
                mel_equal, paths.size(), both_equal);
  }
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace flurry::whisper
