// The batched in-flight pipeline (models/whisper/app/batch_pipeline.h over InflightDecoder and the
// CPU slot backend) against the one-file-at-a-time CPU reference (transcribe_file), on the real
// checkpoint and real speech: jfk.wav, espeak-ng sentences, and a > 30 s concatenation of them
// (long-form: seeks, condition_on_previous_text, the initial prompt). Results must be equal token
// for token (and every segment field bit for bit), with several files of different lengths in
// flight at once, at batch sizes 1 and 8 (batch invariance), for greedy, beam search, timestamps,
// temperature fallback and language detection.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <unistd.h>
#include <vector>

#include "models/whisper/app/batch_pipeline.h"
#include "models/whisper/cpu_inflight.h"
#include "tests/common/test_util.h"
#include "tests/models/whisper/e2e/e2e_util.h"

namespace flurry::whisper {
namespace {

namespace fs = std::filesystem;

struct PipelineRun {
  std::vector<Transcript> transcripts;  // input order; empty text and "error:" language for errors
  std::vector<std::string> errors;
  InflightStats stats;
};

class BatchPipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string model = test::real_whisper_dir();
    const std::string jfk = test::shared_data_path("speech/jfk.wav");
    if (model.empty() || jfk.empty()) return;
    dir_ = new fs::path(fs::temp_directory_path() / ("flurry-batch-pipeline-" + std::to_string(::getpid())));
    auto speech = test::pipeline_speech(*dir_, jfk);
    if (speech.empty()) return;
    files_ = new std::map<std::string, std::string>(std::move(speech));
    assets_ = new WhisperAssets(load_whisper_assets(model));
  }
  static void TearDownTestSuite() {
    delete assets_;
    delete files_;
    if (dir_ != nullptr) fs::remove_all(*dir_);
    delete dir_;
    assets_ = nullptr;
    files_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override {
    FLURRY_REQUIRE_MODEL_DATA(assets_ != nullptr || dir_ != nullptr,
                              "no real checkpoint or jfk.wav: run make models");
    if (assets_ == nullptr) GTEST_SKIP() << "espeak-ng or sox not available";
  }

  static std::string file(const std::string& name) { return files_->at(name); }

  // The pipeline over `paths` with `batch` decoder slots (files in flight = batch / slots per file).
  // forced[i] > 0: file i's PipelineItem::forced_length.
  // select: the backend chooses tokens (CpuSlotBackend's forward_select, the GPU backend's role).
  static PipelineRun pipeline(const std::vector<std::string>& paths, const TranscribeOptions& o, int batch,
                              const std::vector<int>& forced = {}, bool select = false) {
    const int group = slots_per_file(o);
    const int files = std::max(1, batch / group);
    CpuSlotBackend backend(assets_->model, files * group, files, std::min(files, 8), select);
    PipelineOptions po;
    po.transcribe = o;
    po.readers = 2;
    WhisperPipeline p(*assets_, backend, files, po);
    PipelineRun r;
    r.transcripts.resize(paths.size());
    r.errors.resize(paths.size());
    std::mutex mu;
    size_t next_index = 0;
    p.run(
        [&](PipelineItem* item) {
          std::lock_guard<std::mutex> lock(mu);
          if (next_index == paths.size()) return false;
          item->index = static_cast<int64_t>(next_index);
          if (!forced.empty()) item->forced_length = forced[next_index];
          item->path = paths[next_index++];
          return true;
        },
        [&](PipelineItem& item, Transcript* t, const std::string* error) {
          std::lock_guard<std::mutex> lock(mu);
          const size_t i = static_cast<size_t>(item.index);
          if (t != nullptr) {
            r.transcripts[i] = std::move(*t);
          } else {
            r.errors[i] = *error;
          }
        });
    r.stats = p.stats();
    return r;
  }

  static std::vector<Transcript> reference(const std::vector<std::string>& paths, const TranscribeOptions& o) {
    std::vector<Transcript> out;
    for (const std::string& path : paths) {
      double duration = 0;
      out.push_back(transcribe_file(*assets_, path, o, &duration));
      out.back().duration = duration;
    }
    return out;
  }

  static bool same_double(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

  static void expect_same(const Transcript& want, const Transcript& got, const std::string& what) {
    EXPECT_EQ(got.language, want.language) << what;
    EXPECT_EQ(got.text, want.text) << what;
    EXPECT_EQ(got.all_tokens, want.all_tokens) << what;
    EXPECT_EQ(got.duration, want.duration) << what;
    ASSERT_EQ(got.segments.size(), want.segments.size()) << what;
    for (size_t i = 0; i < want.segments.size(); ++i) {
      const Segment &a = want.segments[i], &b = got.segments[i];
      EXPECT_EQ(b.tokens, a.tokens) << what << " segment " << i;
      EXPECT_EQ(b.seek, a.seek) << what << " segment " << i;
      EXPECT_EQ(b.start, a.start) << what << " segment " << i;
      EXPECT_EQ(b.end, a.end) << what << " segment " << i;
      EXPECT_EQ(b.temperature, a.temperature) << what << " segment " << i;
      EXPECT_TRUE(same_double(b.avg_logprob, a.avg_logprob)) << what << " segment " << i;
      EXPECT_TRUE(same_double(b.no_speech_prob, a.no_speech_prob)) << what << " segment " << i;
      EXPECT_TRUE(same_double(b.compression_ratio, a.compression_ratio)) << what << " segment " << i;
    }
  }

  static WhisperAssets* assets_;
  static std::map<std::string, std::string>* files_;
  static fs::path* dir_;
};
WhisperAssets* BatchPipeline::assets_ = nullptr;
std::map<std::string, std::string>* BatchPipeline::files_ = nullptr;
fs::path* BatchPipeline::dir_ = nullptr;

// Greedy with timestamps, an initial prompt and condition_on_previous_text, four files of 3 to 40 s
// in flight at once (the long one seeks through several windows while the short ones come and go),
// a missing file among them; then batch 1 over two short files.
TEST_F(BatchPipeline, GreedyLongFormEqualsReferenceAtBatch8AndBatch1) {
  TranscribeOptions o;
  o.temperatures = {0.0f};
  o.decode.language = "en";
  o.initial_prompt = assets_->tokenizer->encode(" President Kennedy's speech, and two sentences.", false);
  const std::vector<std::string> paths = {file("long"), file("jfk"), (*dir_ / "missing.wav").string(), file("s0"),
                                          file("s1")};
  std::vector<std::string> good = paths;
  good.erase(good.begin() + 2);
  const std::vector<Transcript> ref = reference(good, o);
  ASSERT_GE(ref[0].segments.size(), 3u);
  EXPECT_GT(ref[0].duration, 30.0);
  EXPECT_GT(ref[0].segments.back().seek, 0) << "the long file must take more than one window";

  const PipelineRun b8 = pipeline(paths, o, 8);
  EXPECT_NE(b8.errors[2].find("missing.wav"), std::string::npos) << b8.errors[2];
  for (size_t i = 0, j = 0; i < paths.size(); ++i) {
    if (i == 2) continue;
    EXPECT_TRUE(b8.errors[i].empty()) << b8.errors[i];
    expect_same(ref[j++], b8.transcripts[i], "batch 8: " + paths[i]);
  }
  // Several files were in flight together: more sequence-steps than steps.
  EXPECT_GT(b8.stats.sequence_steps, b8.stats.steps);
  std::printf("batch 8: %lld steps, %lld sequence-steps, %lld windows in %lld encoder batches\n",
              static_cast<long long>(b8.stats.steps), static_cast<long long>(b8.stats.sequence_steps),
              static_cast<long long>(b8.stats.windows), static_cast<long long>(b8.stats.encoder_batches));

  // The pipeline at batch 1 (one slot: nothing shares a step) over two short files; the long one at
  // batch 8 already equals the one-file reference above.
  // The backend chooses the tokens there (timestamp rules and argmax as the GPU applies them).
  const PipelineRun b1 = pipeline({file("jfk"), file("s0")}, o, 1, {}, /*select=*/true);
  EXPECT_EQ(b1.stats.rows_selected, b1.stats.sequence_steps);
  expect_same(b8.transcripts[1], b1.transcripts[0], "batch 1 vs 8: jfk");
  expect_same(b8.transcripts[3], b1.transcripts[1], "batch 1 vs 8: s0");
  EXPECT_EQ(b1.stats.sequence_steps, b1.stats.steps);
}

// Per-file forced lengths (whisper_bench's workload with random weights): every file ends with
// exactly its length, shorter and longer than its speech, equal to the reference given the same
// length; three files in flight, greedy without timestamps (the benchmark's decoding).
TEST_F(BatchPipeline, ForcedLengthsPerFileEqualReference) {
  TranscribeOptions o;
  o.temperatures = {0.0f};
  o.decode.language = "en";
  o.decode.without_timestamps = true;
  const std::vector<std::string> paths = {file("jfk"), file("s0"), file("s1")};
  const std::vector<int> forced = {4, 45, 17};
  const PipelineRun b = pipeline(paths, o, 8, forced, /*select=*/true);  // the rule as the device applies it
  EXPECT_GT(b.stats.rows_selected, 0);
  for (size_t i = 0; i < paths.size(); ++i) {
    TranscribeOptions fo = o;
    fo.decode.forced_length = forced[i];
    const std::vector<Transcript> ref = reference({paths[i]}, fo);
    expect_same(ref[0], b.transcripts[i], "forced: " + paths[i]);
    ASSERT_EQ(b.transcripts[i].segments.size(), 1u) << paths[i];
    EXPECT_EQ(b.transcripts[i].segments[0].tokens.size(), static_cast<size_t>(forced[i])) << paths[i];
  }
}

// Beam search (5 beams as 5 slots per file, forked on the backend every step) with timestamps, two
// files in flight.
TEST_F(BatchPipeline, BeamSearchEqualsReference) {
  TranscribeOptions o;
  o.temperatures = {0.0f};
  o.decode.language = "en";
  o.decode.beam_size = 5;
  const std::vector<std::string> paths = {file("jfk"), file("s1")};
  const std::vector<Transcript> ref = reference(paths, o);
  const PipelineRun b = pipeline(paths, o, 10);
  for (size_t i = 0; i < paths.size(); ++i) expect_same(ref[i], b.transcripts[i], "beam: " + paths[i]);
  EXPECT_GT(b.stats.slot_moves, 0);
}

// Language detection, then temperature fallback forced by an unreachable log-prob threshold: every
// window is decoded at 0 (beam 2), 0.4 and 0.8 (best of 2, seeded sampling), and the t = 0.8 result
// is kept. Two files in flight.
TEST_F(BatchPipeline, FallbackAndLanguageDetectionEqualReference) {
  TranscribeOptions o;
  o.temperatures = {0.0f, 0.4f, 0.8f};
  o.decode.beam_size = 2;
  o.decode.best_of = 2;
  o.decode.seed = 7;
  o.logprob_threshold = 0.0;  // avg_logprob < 0 always: fall back to the last temperature
  const std::vector<std::string> paths = {file("s0"), file("s1")};
  const std::vector<Transcript> ref = reference(paths, o);
  for (const Transcript& t : ref) {
    ASSERT_FALSE(t.segments.empty());
    EXPECT_EQ(t.language, "en");
    EXPECT_EQ(t.segments.front().temperature, 0.8f);
  }
  const PipelineRun b = pipeline(paths, o, 4);
  for (size_t i = 0; i < paths.size(); ++i) expect_same(ref[i], b.transcripts[i], "fallback: " + paths[i]);
  EXPECT_EQ(b.stats.rows_selected, 0);
  // The same with the backend choosing every token (the GPU backend's way): beam candidates at
  // t = 0 and the draws at 0.4 and 0.8 with the lanes' own uniforms.
  const PipelineRun s = pipeline(paths, o, 4, {}, /*select=*/true);
  for (size_t i = 0; i < paths.size(); ++i) expect_same(ref[i], s.transcripts[i], "fallback, selected: " + paths[i]);
  EXPECT_GT(s.stats.rows_sampled, 0);
  EXPECT_GT(s.stats.rows_selected, s.stats.rows_sampled);
}

}  // namespace
}  // namespace flurry::whisper
