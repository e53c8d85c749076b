// flurry-whisper as a user runs it: good and bad inputs together, per-file outputs, resume, and
// three ranks under mpirun. Each input must appear in results.jsonl exactly once, in input order.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io/json_file.h"
#include "tests/common/test_util.h"
#include "tests/dist/subprocess.h"
#include "tests/whisper_e2e/e2e_util.h"

namespace flurry {
namespace {

namespace fs = std::filesystem;

class WhisperCli : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::real_whisper_dir();
    if (model_.empty()) GTEST_SKIP() << "no real checkpoint: run tools/fetch_whisper_model.sh";
    dir_ = fs::temp_directory_path() / ("flurry-cli-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (int i = 0; i < 2; ++i) {
      const std::string wav = (dir_ / ("speech" + std::to_string(i) + ".wav")).string();
      if (!test::synthesize(test::espeak_sentences()[i], wav)) GTEST_SKIP() << "espeak-ng not available";
      good_.push_back(wav);
    }
    empty_ = (dir_ / "empty.wav").string();
    std::ofstream(empty_).close();
    not_audio_ = (dir_ / "notes.wav").string();
    std::ofstream(not_audio_) << "this is a text file, not audio\n";
    missing_ = (dir_ / "missing.flac").string();
  }
  void TearDown() override {
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
  }
  std::vector<std::string> inputs() const { return {good_[0], empty_, not_audio_, missing_, good_[1]}; }
  std::string command(const std::string& launcher, const std::string& out, const std::string& extra) const {
    std::string cmd = launcher + " " + FLURRY_WHISPER_BIN + " --model " + model_ + " --output-dir " +
                      (dir_ / out).string() + " --beam_size 0 --temperature_increment_on_fallback 0 " + extra;
    for (const std::string& p : inputs()) cmd += " " + p;
    return cmd + " 2>&1";
  }
  std::vector<Json> results(const std::string& out) const {
    std::vector<Json> r;
    std::ifstream in(dir_ / out / "results.jsonl");
    for (std::string line; std::getline(in, line);) r.push_back(Json::parse(line));
    return r;
  }
  // Every input once, in order; the good ones transcribed, the bad ones error records naming the file.
  void check_results(const std::string& out) const {
    const std::vector<Json> r = results(out);
    const std::vector<std::string> in = inputs();
    ASSERT_EQ(r.size(), in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      EXPECT_EQ(r[i]["id"], in[i]);
      const bool good = in[i] == good_[0] || in[i] == good_[1];
      EXPECT_EQ(r[i]["status"], good ? "ok" : "error") << r[i].dump();
      if (good) {
        EXPECT_FALSE(r[i]["text"].get<std::string>().empty());
        EXPECT_GT(r[i]["duration"].get<double>(), 1.0);
        EXPECT_FALSE(r[i]["segments"].empty());
      } else {
        EXPECT_NE(r[i]["error"].get<std::string>().find(in[i]), std::string::npos) << r[i].dump();
      }
    }
    const Json manifest = read_json_file((dir_ / out / "manifest.json").string());
    EXPECT_EQ(manifest["inputs"], 5);
    EXPECT_EQ(manifest["errors"], 3);
  }

  std::string model_, empty_, not_audio_, missing_;
  std::vector<std::string> good_;
  fs::path dir_;
};

TEST_F(WhisperCli, BadInputsBecomeErrorRecordsAndTheRunGoesOn) {
  const test::CommandResult run = test::run_command(command("", "out", "--output_format all"), 600);
  EXPECT_EQ(run.exit_code, 1) << run.output;  // some inputs failed
  check_results("out");
  for (const char* ext : {".txt", ".srt", ".vtt", ".tsv", ".json"}) {
    EXPECT_TRUE(fs::exists(dir_ / "out" / (std::string("speech0.wav") + ext))) << ext;
  }
  EXPECT_FALSE(fs::exists(dir_ / "out" / "empty.wav.txt"));

  // --resume finds every input recorded and does no work; the merged results stay the same.
  const test::CommandResult again = test::run_command(command("", "out", "--resume --output_format none"), 600);
  EXPECT_EQ(again.exit_code, 1) << again.output;
  check_results("out");
}

TEST_F(WhisperCli, ThreeRanksUnderMpirun) {
  if (std::string(FLURRY_MPIEXEC).empty()) GTEST_SKIP() << "mpirun not found";
  const std::string launcher = std::string(FLURRY_MPIEXEC) +
                               " --oversubscribe --bind-to none --mca btl self,vader --mca oob_tcp_if_include lo -np 3";
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const test::CommandResult run =
      test::run_command(command(launcher, "mpi", "--output_format none --threads 1 --device cpu"), 600);
  EXPECT_EQ(run.exit_code, 1) << run.output;
  check_results("mpi");
  const Json manifest = read_json_file((dir_ / "mpi" / "manifest.json").string());
  EXPECT_EQ(manifest["ranks"], 3) << manifest.dump();
  ASSERT_EQ(manifest["per_rank"].size(), 3u) << manifest.dump();
  int items = 0;
  for (const Json& r : manifest["per_rank"]) items += r["items"].get<int>();
  EXPECT_EQ(items, 5);
}

}  // namespace
}  // namespace flurry
