// Speech output writers. Expected strings follow the published formats (SubRip, WebVTT) and
// openai-whisper's conventions (SRT always shows hours with ',', VTT shows hours only past the
// first hour with '.', TSV holds integer milliseconds); they are specification facts worked out by
// hand, e.g. 3661.5 s = 1 h 1 min 1 s 500 ms.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "io/writers.h"
#include "runtime/check.h"

namespace flurry {
namespace {

namespace fs = std::filesystem;

Transcript sample() {
  Transcript t;
  t.id = "clip-01";
  t.language = "en";
  t.text = " Hello there. Second --> line";
  t.duration = 3700.0;
  Segment a;
  a.start = 0.0;
  a.end = 2.5;
  a.text = " Hello there. ";
  a.tokens = {50364, 2425, 456};
  a.avg_logprob = -0.25;
  a.no_speech_prob = 0.125;
  a.compression_ratio = 1.5;
  Segment b;
  b.start = 3661.5;
  b.end = 3662.0625;  // 62.5 ms: a tie, Python's round() goes to even -> 062
  b.text = "\tSecond --> line\twith tab\n";
  b.seek = 366000;
  b.temperature = 0.2;
  t.segments = {a, b};
  return t;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(Writers, TimestampFormatting) {
  EXPECT_EQ(format_timestamp(0.0, true, ','), "00:00:00,000");
  EXPECT_EQ(format_timestamp(0.0, false, '.'), "00:00.000");
  EXPECT_EQ(format_timestamp(3661.5, true, ','), "01:01:01,500");
  EXPECT_EQ(format_timestamp(3661.5, false, '.'), "01:01:01.500");  // hours shown once non-zero
  EXPECT_EQ(format_timestamp(59.25, false, '.'), "00:59.250");
  EXPECT_EQ(format_timestamp(600.0, false, '.'), "10:00.000");
  EXPECT_EQ(format_timestamp(36000.0, true, ','), "10:00:00,000");
  EXPECT_EQ(format_timestamp(360000.0, true, ','), "100:00:00,000");  // hours do not wrap
  // round(seconds * 1000): 59.9996 s is 59999.6 ms -> 60000 ms, carrying into the minutes.
  EXPECT_EQ(format_timestamp(59.9996, false, '.'), "01:00.000");
  // Exact ties (binary fractions) round to even like Python: 62.5 -> 62, 187.5 -> 188.
  EXPECT_EQ(format_timestamp(0.0625, true, ','), "00:00:00,062");
  EXPECT_EQ(format_timestamp(0.1875, true, ','), "00:00:00,188");
  EXPECT_THROW(format_timestamp(-0.5, true, ','), Error);
  EXPECT_THROW(format_timestamp(std::numeric_limits<double>::quiet_NaN(), true, ','), Error);
  EXPECT_THROW(format_timestamp(std::numeric_limits<double>::infinity(), true, ','), Error);
}

TEST(Writers, Txt) {
  EXPECT_EQ(format_txt(sample()), "Hello there.\nSecond --> line\twith tab\n");
  EXPECT_EQ(format_txt(Transcript{}), "");
}

TEST(Writers, Srt) {
  EXPECT_EQ(format_srt(sample()),
            "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
            "2\n01:01:01,500 --> 01:01:02,062\nSecond -> line\twith tab\n\n");
}

TEST(Writers, Vtt) {
  EXPECT_EQ(format_vtt(sample()),
            "WEBVTT\n\n"
            "00:00.000 --> 00:02.500\nHello there.\n\n"
            "01:01:01.500 --> 01:01:02.062\nSecond -> line\twith tab\n\n");
  EXPECT_EQ(format_vtt(Transcript{}), "WEBVTT\n\n");
}

TEST(Writers, Tsv) {
  EXPECT_EQ(format_tsv(sample()),
            "start\tend\ttext\n"
            "0\t2500\tHello there.\n"
            "3661500\t3662062\tSecond --> line with tab\n");
}

TEST(Writers, Json) {
  const nlohmann::json j = transcript_to_json(sample());
  EXPECT_EQ(j["id"], "clip-01");
  EXPECT_EQ(j["language"], "en");
  EXPECT_EQ(j["text"], " Hello there. Second --> line");
  EXPECT_EQ(j["duration"], 3700.0);
  ASSERT_EQ(j["segments"].size(), 2u);
  const auto& s0 = j["segments"][0];
  EXPECT_EQ(s0["id"], 0);
  EXPECT_EQ(s0["start"], 0.0);
  EXPECT_EQ(s0["end"], 2.5);
  EXPECT_EQ(s0["text"], " Hello there. ");  // JSON keeps the text as decoded, like openai-whisper
  EXPECT_EQ(s0["tokens"], (std::vector<int>{50364, 2425, 456}));
  EXPECT_EQ(s0["avg_logprob"], -0.25);
  EXPECT_EQ(s0["no_speech_prob"], 0.125);
  EXPECT_EQ(s0["compression_ratio"], 1.5);
  EXPECT_EQ(j["segments"][1]["id"], 1);
  EXPECT_EQ(j["segments"][1]["seek"], 366000);
  EXPECT_EQ(j["segments"][1]["temperature"], 0.2);
  // The text form parses back to the same object.
  EXPECT_EQ(nlohmann::json::parse(format_json(sample())), j);
}

TEST(Writers, JsonSurvivesBrokenUtf8) {
  Transcript t = sample();
  t.segments[0].text = std::string("caf\xc3", 4);  // a segment cut inside a two-byte character
  const std::string s = format_json(t);
  const nlohmann::json back = nlohmann::json::parse(s);
  EXPECT_EQ(back["segments"][0]["text"], "caf\xef\xbf\xbd");  // U+FFFD
}

class WriteFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    dir_ = fs::temp_directory_path() /
           ("flurry_writers_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

TEST_F(WriteFiles, AllFormatsAtomically) {
  const Transcript t = sample();
  const fs::path out = dir_ / "nested" / "out";  // created on demand
  const auto paths = write_transcript_files(t, out.string(), "clip-01", {"all"});
  ASSERT_EQ(paths.size(), 5u);
  EXPECT_EQ(slurp((out / "clip-01.txt").string()), format_txt(t));
  EXPECT_EQ(slurp((out / "clip-01.srt").string()), format_srt(t));
  EXPECT_EQ(slurp((out / "clip-01.vtt").string()), format_vtt(t));
  EXPECT_EQ(slurp((out / "clip-01.tsv").string()), format_tsv(t));
  EXPECT_EQ(slurp((out / "clip-01.json").string()), format_json(t));
  // Nothing but the five results: no temporary file left behind.
  size_t count = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    ++count;
    EXPECT_EQ(e.path().filename().string().rfind("clip-01.", 0), 0u) << e.path();
  }
  EXPECT_EQ(count, 5u);

  // Writing again replaces the files in place.
  Transcript shorter = t;
  shorter.segments.resize(1);
  write_transcript_files(shorter, out.string(), "clip-01", {"txt", "txt"});
  EXPECT_EQ(slurp((out / "clip-01.txt").string()), "Hello there.\n");
}

TEST_F(WriteFiles, UnknownFormatWritesNothing) {
  try {
    write_transcript_files(sample(), dir_.string(), "x", {"txt", "docx"});
    ADD_FAILURE() << "no error for format 'docx'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'docx'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir_ / "x.txt"));
  EXPECT_THROW(write_transcript_files(sample(), dir_.string(), "a/b", {"txt"}), Error);
}

}  // namespace
}  // namespace flurry
