// transcribe() against openai-whisper's transcribe() run on the same fake model (transcribe.json):
// temperature fallback (with the shared hash sampler), the no-speech skip, prompts from previous
// text and their reset, initial prompts, segmenting at timestamp pairs and seeking, clip_timestamps. The fake
// encoder names each window by (seek, frames), as the synthetic mel in the script does.
#include <cmath>
#include <string>
#include <vector>

#include "models/whisper/text_metrics.h"
#include "runtime/check.h"
#include "models/whisper/transcribe.h"
#include "tests/models/whisper/decode/fake_model.h"
#include "tests/models/whisper/decode/golden_json.h"

namespace flurry::whisper::test {
namespace {

TranscribeOptions transcribe_options_from(const nlohmann::json& j) {
  TranscribeOptions o;
  o.decode.language = j.value("language", std::string());
  if (j.contains("temperature")) o.temperatures = {j["temperature"].get<float>()};
  if (j.contains("beam_size")) o.decode.beam_size = j["beam_size"];
  if (j.contains("best_of")) o.decode.best_of = j["best_of"];
  if (j.contains("patience")) o.decode.patience = j["patience"];
  if (j.contains("without_timestamps")) o.decode.without_timestamps = j["without_timestamps"];
  if (j.contains("condition_on_previous_text")) o.condition_on_previous_text = j["condition_on_previous_text"];
  if (j.contains("initial_prompt")) o.initial_prompt = j["initial_prompt"].get<std::vector<int>>();
  if (j.contains("carry_initial_prompt")) o.carry_initial_prompt = j["carry_initial_prompt"];
  if (j.contains("clip_timestamps")) o.clip_timestamps = parse_clip_timestamps(j["clip_timestamps"].get<std::string>());
  auto threshold = [&](const char* key, std::optional<double>& dst) {
    if (!j.contains(key)) return;
    if (j[key].is_null()) {
      dst.reset();
    } else {
      dst = j[key].get<double>();
    }
  };
  threshold("compression_ratio_threshold", o.compression_ratio_threshold);
  threshold("logprob_threshold", o.logprob_threshold);
  threshold("no_speech_threshold", o.no_speech_threshold);
  return o;
}

TEST(WhisperTranscribe, MatchesOpenaiWhisperOnFakeModel) {
  const auto g = load_golden("transcribe.json");
  ASSERT_TRUE(g.contains("cases"));
  const SpecialTokens sp = fake_special_tokens();
  int n = 0, fallbacks = 0, clip_cases = 0;
  for (const auto& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    FakeWhisperModel model;
    HashSampler sampler;
    std::vector<std::pair<int, int>> windows;
    auto encode = [&](int seek, int frames) {
      windows.emplace_back(seek, frames);
      model.set_audio(0, seek, frames);
    };
    const auto tr = transcribe(model, sp, transcribe_options_from(c["options"]), c["frames"], encode,
                               fake_detokenize, &sampler);
    EXPECT_EQ(tr.language, c["language"].get<std::string>());
    EXPECT_EQ(tr.text, c["text"].get<std::string>());
    const auto& want = c["segments"];
    ASSERT_EQ(tr.segments.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      SCOPED_TRACE("segment " + std::to_string(i));
      const Segment& s = tr.segments[i];
      EXPECT_EQ(s.id, static_cast<int>(i));
      EXPECT_EQ(s.seek, want[i]["seek"].get<int>());
      EXPECT_DOUBLE_EQ(s.start, want[i]["start"].get<double>());
      EXPECT_DOUBLE_EQ(s.end, want[i]["end"].get<double>());
      EXPECT_EQ(s.text, want[i]["text"].get<std::string>());
      EXPECT_EQ(s.tokens, want[i]["tokens"].get<std::vector<int>>());
      EXPECT_NEAR(s.temperature, want[i]["temperature"].get<double>(), 1e-6);
      EXPECT_NEAR(s.avg_logprob, want[i]["avg_logprob"].get<double>(), 1e-4);
      EXPECT_NEAR(s.no_speech_prob, want[i]["no_speech_prob"].get<double>(), 1e-5);
      EXPECT_DOUBLE_EQ(s.compression_ratio, want[i]["compression_ratio"].get<double>());
      if (s.temperature > 0) ++fallbacks;
    }
    EXPECT_FALSE(windows.empty());
    if (c["options"].contains("clip_timestamps")) {
      // Every window encoded after the language detection lies inside one span.
      const std::vector<double> t = parse_clip_timestamps(c["options"]["clip_timestamps"].get<std::string>());
      const size_t first = c["options"].contains("language") ? 0 : 1;
      for (size_t w = first; w < windows.size(); ++w) {
        bool inside = false;
        for (size_t k = 0; k < t.size(); k += 2) {
          const double end = k + 1 < t.size() ? t[k + 1] * 100 : c["frames"].get<double>();
          inside = inside || (windows[w].first >= std::nearbyint(t[k] * 100) &&
                              windows[w].first + windows[w].second <= std::nearbyint(end));
        }
        EXPECT_TRUE(inside) << "window at " << windows[w].first << " (" << windows[w].second << " frames)";
      }
      ++clip_cases;
    }
    ++n;
  }
  EXPECT_GE(n, 8);
  EXPECT_GE(clip_cases, 3);
  EXPECT_GT(fallbacks, 0) << "no golden exercised the temperature fallback";
}

DecodingResult result_with(std::vector<int> tokens) {
  DecodingResult r;
  r.tokens = std::move(tokens);
  return r;
}

TEST(WhisperTranscribe, ParsesClipTimestamps) {
  EXPECT_EQ(parse_clip_timestamps("0"), std::vector<double>({0.0}));
  EXPECT_EQ(parse_clip_timestamps(" 5, 25.5 ,40"), std::vector<double>({5.0, 25.5, 40.0}));
  EXPECT_TRUE(parse_clip_timestamps("").empty());
  EXPECT_THROW(parse_clip_timestamps("5,,6"), flurry::Error);
  EXPECT_THROW(parse_clip_timestamps("5,abc"), flurry::Error);
  EXPECT_THROW(parse_clip_timestamps("-1"), flurry::Error);
  EXPECT_THROW(parse_clip_timestamps("3s"), flurry::Error);
}

// Seeking rules on scripted windows (from transcribe.py's documented behaviour).
TEST(WhisperTranscribe, SplitWindowSeeks) {
  const SpecialTokens sp = fake_special_tokens();
  const int tb = sp.timestamp_begin;
  // <0.00> a b <1.00><1.00> c <2.00> | ends with a single timestamp: the whole window is done.
  auto w = split_window(sp, result_with({tb, 5, 6, tb + 50, tb + 50, 8, tb + 100}), 1000, 3000, fake_detokenize);
  ASSERT_EQ(w.segments.size(), 2u);
  EXPECT_EQ(w.next_seek, 4000);
  EXPECT_DOUBLE_EQ(w.segments[1].start, 11.0);
  EXPECT_DOUBLE_EQ(w.segments[1].end, 12.0);
  // ... <1.00><1.00> c (unfinished): seek to the last closed timestamp, 1.00 s = 100 frames.
  w = split_window(sp, result_with({tb, 5, tb + 50, tb + 50, 8}), 1000, 3000, fake_detokenize);
  ASSERT_EQ(w.segments.size(), 1u);
  EXPECT_EQ(w.next_seek, 1100);
  // No pair: one segment to the last timestamp, seek by the window.
  w = split_window(sp, result_with({5, 6, tb + 20}), 0, 2500, fake_detokenize);
  ASSERT_EQ(w.segments.size(), 1u);
  EXPECT_DOUBLE_EQ(w.segments[0].end, 0.4);
  EXPECT_EQ(w.next_seek, 2500);
  EXPECT_EQ(w.segments[0].text, " w5 w6");
}

}  // namespace
}  // namespace flurry::whisper::test
