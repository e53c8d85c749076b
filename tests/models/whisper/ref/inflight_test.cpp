// The in-flight scheduler (models/whisper/inflight_core.h) on the CPU reference backend, with the
// tiny random Whisper of the HF goldens (large-v3 layout): every window retires exactly once with
// the tokens a plain one-window greedy loop gives; forced lengths are exact; slots are refilled and
// compacted; max_new_tokens and the context end a window without EOT; and the results do not
// depend on the number of slots, the encoder batch, refilling or compaction (batch invariance).
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <vector>

#include "models/whisper/cpu_inflight.h"
#include "models/whisper/model.h"
#include "runtime/check.h"
#include "runtime/ref/audio/logmel.h"
#include "tests/common/test_util.h"

namespace flurry::whisper {
namespace {

constexpr int kSot = 50258, kEn = 50259, kTranscribe = 50360, kNoTimestamps = 50364, kEot = 50257;

class InflightTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new std::shared_ptr<const WhisperModel>(WhisperModel::load(test::fixture_path("whisper/tiny-v3")));
    auto rng = test::test_rng("InflightTest");
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int n_mels = static_cast<int>((*model_)->config().num_mel_bins);
    mels_ = new std::vector<std::vector<float>>(kWindows);
    for (auto& m : *mels_) {
      m.resize(static_cast<size_t>(n_mels) * kMelWindowFrames);
      for (float& x : m) x = nd(rng);
    }
    // Two windows from samples instead of log-mel: the backend computes the log-mel itself.
    samples_ = new std::vector<std::vector<float>>(2);
    for (auto& s : *samples_) {
      s.resize(16000 * 3);
      for (float& x : s) x = 0.1f * nd(rng);
    }
  }
  static void TearDownTestSuite() {
    delete model_;
    delete mels_;
    delete samples_;
  }

  static constexpr int kWindows = 9;
  static InflightRules rules() {
    InflightRules r;
    r.eot = kEot;
    r.suppress_ids = {220, 50362};
    r.blank_ids = {220};
    return r;
  }
  // Prompts of different lengths, greedy and forced windows, limits: windows that run for
  // different numbers of steps, so slots free up at different times.
  static std::vector<InflightWindow> windows() {
    std::vector<InflightWindow> w;
    for (int i = 0; i < kWindows; ++i) {
      InflightWindow x;
      x.id = 100 + i;
      x.mel = (*mels_)[static_cast<size_t>(i)].data();
      x.prompt = {kSot};
      if (i % 3 >= 1) x.prompt.push_back(kEn);
      if (i % 3 == 2) x.prompt.insert(x.prompt.end(), {kTranscribe, kNoTimestamps});
      x.forced_length = (i % 4 == 1) ? 3 + 2 * i : (i % 4 == 3 ? 0 : -1);
      x.max_new_tokens = x.forced_length < 0 ? 4 + i : 0;
      w.push_back(x);
    }
    for (size_t k = 0; k < samples_->size(); ++k) {
      InflightWindow x;
      x.id = 200 + static_cast<int64_t>(k);
      x.samples = (*samples_)[k].data();
      x.n_samples = static_cast<int64_t>((*samples_)[k].size());
      x.prompt = {kSot, kEn, kTranscribe, kNoTimestamps};
      x.forced_length = k == 0 ? 6 : -1;
      x.max_new_tokens = k == 0 ? 0 : 7;
      w.push_back(x);
    }
    return w;
  }
  struct Run {
    std::map<int64_t, InflightResult> results;
    InflightStats stats;
    int retired = 0;
  };
  static Run run(int slots, int enc_batch, bool refill, bool compact) {
    CpuInflightBackend backend(*model_, slots, enc_batch, rules(), compact);
    InflightOptions o;
    o.rules = rules();
    o.refill = refill;
    InflightCore core(backend, o);
    for (auto& w : windows()) core.submit(w);
    Run r;
    core.run([&](InflightResult&& res) {
      ++r.retired;
      EXPECT_EQ(r.results.count(res.id), 0u) << "window " << res.id << " retired twice";
      r.results[res.id] = std::move(res);
    });
    r.stats = core.stats();
    return r;
  }

  static std::shared_ptr<const WhisperModel>* model_;
  static std::vector<std::vector<float>>* mels_;
  static std::vector<std::vector<float>>* samples_;
};
std::shared_ptr<const WhisperModel>* InflightTest::model_ = nullptr;
std::vector<std::vector<float>>* InflightTest::mels_ = nullptr;
std::vector<std::vector<float>>* InflightTest::samples_ = nullptr;

// One window, one state, no scheduler: encode, feed the prompt, then pick under the same rules.
InflightResult reference(const WhisperModel& model, const InflightWindow& w, const InflightRules& r) {
  WhisperState st(model);
  std::vector<float> mel;
  const float* m = w.mel;
  if (m == nullptr) {
    mel.resize(static_cast<size_t>(model.config().num_mel_bins) * kMelWindowFrames);
    log_mel_window(w.samples, w.n_samples, static_cast<int>(model.config().num_mel_bins), mel.data());
    m = mel.data();
  }
  encode(model, st, m);
  const float* logits = decoder_step(model, st, w.prompt.data(), static_cast<int64_t>(w.prompt.size()));
  const int vocab = static_cast<int>(model.config().vocab_size);
  const std::vector<int> suppress(r.suppress_ids.begin(), r.suppress_ids.end());
  const std::vector<int> blank(r.blank_ids.begin(), r.blank_ids.end());
  InflightResult out;
  out.id = w.id;
  out.forced_length = w.forced_length;
  std::vector<float> row(static_cast<size_t>(vocab));
  for (;;) {
    row.assign(logits, logits + vocab);
    int32_t top2[2];
    inflight_select_top2(row.data(), vocab, static_cast<int>(out.tokens.size()), suppress, blank, r.eot, top2);
    int32_t id = top2[0];
    if (w.forced_length >= 0) {
      id = static_cast<int>(out.tokens.size()) >= w.forced_length ? r.eot : (top2[0] != r.eot ? top2[0] : top2[1]);
    }
    if (id == r.eot) {
      out.ended_with_eot = true;
      return out;
    }
    out.tokens.push_back(id);
    if (w.max_new_tokens > 0 && static_cast<int>(out.tokens.size()) >= w.max_new_tokens) return out;
    if (st.n_past + 1 > st.max_tokens) return out;
    logits = decoder_step(model, st, &id, 1);
  }
}

void expect_same(const std::map<int64_t, InflightResult>& a, const std::map<int64_t, InflightResult>& b,
                 const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (const auto& [id, r] : a) {
    const auto it = b.find(id);
    ASSERT_NE(it, b.end()) << what << ": window " << id;
    EXPECT_EQ(r.tokens, it->second.tokens) << what << ": window " << id;
    EXPECT_EQ(r.ended_with_eot, it->second.ended_with_eot) << what << ": window " << id;
  }
}

TEST_F(InflightTest, EveryWindowOnceWithTheTokensOfAPlainGreedyLoop) {
  const Run r = run(3, 2, true, true);
  EXPECT_EQ(r.retired, kWindows + 2);
  std::map<int64_t, InflightResult> want;
  for (const auto& w : windows()) want[w.id] = reference(**model_, w, rules());
  expect_same(r.results, want, "3 slots vs one window at a time");
  for (const auto& w : windows()) {
    const InflightResult& got = r.results.at(w.id);
    if (w.forced_length >= 0) {
      EXPECT_EQ(static_cast<int>(got.tokens.size()), w.forced_length) << "window " << w.id;
      EXPECT_TRUE(got.ended_with_eot) << "window " << w.id;
      for (int32_t t : got.tokens) EXPECT_NE(t, kEot);
    } else if (!got.ended_with_eot) {
      EXPECT_EQ(static_cast<int>(got.tokens.size()), w.max_new_tokens) << "window " << w.id;
    }
    for (int32_t t : got.tokens) {
      EXPECT_NE(t, 220) << "a suppressed id was picked";
      EXPECT_NE(t, 50362) << "a suppressed id was picked";
    }
  }
  // Refill and compaction happened: more windows than slots, windows of different lengths.
  EXPECT_GT(r.stats.slot_moves, 0);
  EXPECT_GE(r.stats.encoder_batches, (kWindows + 2 + 1) / 2);
  EXPECT_EQ(r.stats.windows, kWindows + 2);
}

TEST_F(InflightTest, ResultsDoNotDependOnSlotsBatchRefillOrCompaction) {
  const Run base = run(1, 1, true, true);
  EXPECT_EQ(base.stats.slot_moves, 0);  // one slot: nothing to move
  for (const auto& [slots, batch, refill, compact] :
       std::vector<std::tuple<int, int, bool, bool>>{{2, 1, true, true}, {16, 16, true, true},
                                                     {3, 2, false, true}, {5, 2, true, false}}) {
    const std::string what = std::to_string(slots) + " slots, batch " + std::to_string(batch) +
                             (refill ? "" : ", static batches") + (compact ? "" : ", no compaction");
    const Run r = run(slots, batch, refill, compact);
    expect_same(r.results, base.results, what);
    if (!compact) {
      EXPECT_EQ(r.stats.slot_moves, 0) << what;
    }
    // Every step covers at most `slots` sequences and the work is the same decoder positions.
    EXPECT_EQ(r.stats.sequence_steps, base.stats.sequence_steps) << what;
    EXPECT_LE(r.stats.steps, base.stats.steps) << what;
  }
}

TEST_F(InflightTest, StaticBatchesAdmitOnlyWhenAllSlotsAreFree) {
  const Run r = run(4, 4, false, true);
  // 9 log-mel windows then 2 sample windows, in batches of 4 with no refill: 4 + 4 + 1 (a batch
  // holds one kind of window) + 2.
  EXPECT_EQ(r.stats.encoder_batches, 4);
  const Run in = run(4, 4, true, true);
  EXPECT_LT(in.stats.steps, r.stats.steps) << "refilling freed slots must save steps";
}

TEST_F(InflightTest, RefusesWindowsThatCannotFit) {
  CpuInflightBackend backend(*model_, 2, 1, rules());
  InflightOptions o;
  o.rules = rules();
  InflightCore core(backend, o);
  InflightWindow w;
  w.mel = (*mels_)[0].data();
  EXPECT_THROW(core.submit(w), Error);  // no prompt
  w.prompt = {kSot};
  w.forced_length = 447;  // prompt + forced + EOT > 448
  EXPECT_THROW(core.submit(w), Error);
  w.forced_length = 446;
  EXPECT_NO_THROW(core.submit(w));
  InflightOptions bad = o;
  bad.rules.eot = 1 << 20;
  EXPECT_THROW(InflightCore(backend, bad), Error);
}

}  // namespace
}  // namespace flurry::whisper
