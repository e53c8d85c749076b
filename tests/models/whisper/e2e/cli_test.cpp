// flurry-whisper as a user runs it: good and bad inputs together, per-file outputs, resume, and
// three ranks under mpirun. Each input must appear in results.jsonl exactly once, in input order.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/json_file.h"
#include "tests/common/test_util.h"
#include "tests/dist/subprocess.h"
#include "tests/models/whisper/e2e/e2e_util.h"

namespace flurry {
namespace {

namespace fs = std::filesystem;

class WhisperCli : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::real_whisper_dir();
    FLURRY_REQUIRE_MODEL_DATA(!model_.empty(), "no real checkpoint: run make models (tools/fetch_whisper_model.sh)");
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
  // Per-file outputs under outputs/, named like openai-whisper's (the stem plus the format).
  for (const char* ext : {".txt", ".srt", ".vtt", ".tsv", ".json"}) {
    EXPECT_TRUE(fs::exists(dir_ / "out" / "outputs" / (std::string("speech0") + ext))) << ext;
  }
  EXPECT_FALSE(fs::exists(dir_ / "out" / "outputs" / "empty.txt"));

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
  for (const Json& r : manifest["per_rank"]) {
    items += r["items"].get<int>();
    EXPECT_TRUE(r["stages"].contains("load")) << r.dump();  // every rank loads the model once
  }
  EXPECT_EQ(items, 5);
  // Stage timers of all ranks, summed: the two good inputs were decoded, read, encoded.
  const Json& st = manifest["stages"];
  for (const char* stage : {"load", "audio", "mel", "encode", "decode"}) {
    ASSERT_TRUE(st.contains(stage)) << stage << " missing in " << st.dump();
  }
  EXPECT_EQ(st["load"]["calls"], 3);
  EXPECT_GE(st["mel"]["calls"].get<int>(), 2);
  EXPECT_GT(st["encode"]["seconds"].get<double>(), 0.0);
  EXPECT_GT(st["decode"]["seconds"].get<double>(), 0.0);
}


std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// a/x.wav and b/x.wav: two transcripts, neither lost; --overwrite clears the earlier outputs.
TEST_F(WhisperCli, SameNamedFilesInTwoFoldersKeepTheirOwnOutputs) {
  fs::create_directories(dir_ / "a");
  fs::create_directories(dir_ / "b");
  fs::copy_file(good_[0], dir_ / "a" / "x.wav");
  fs::copy_file(good_[1], dir_ / "b" / "x.wav");
  const std::string base = std::string(FLURRY_WHISPER_BIN) + " --model " + model_ + " --output-dir " +
                           (dir_ / "same").string() + " --beam_size 0 --temperature_increment_on_fallback 0 " +
                           "--output_format txt " + (dir_ / "a").string() + " " + (dir_ / "b").string();
  const test::CommandResult run = test::run_command(base + " 2>&1", 600);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::string ta = read_text(dir_ / "same" / "outputs" / "a" / "x.txt");
  std::string tb = read_text(dir_ / "same" / "outputs" / "b" / "x.txt");
  for (std::string* t : {&ta, &tb}) {
    for (char& c : *t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  EXPECT_NE(ta.find("fox"), std::string::npos) << ta;      // "The quick brown fox ..."
  EXPECT_NE(tb.find("store"), std::string::npos) << tb;    // "... from the store."
  // --overwrite starts over: an output the new run does not write is gone.
  std::ofstream(dir_ / "same" / "outputs" / "stale.txt") << "from an earlier run\n";
  const test::CommandResult again = test::run_command(base + " --overwrite 2>&1", 600);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_FALSE(fs::exists(dir_ / "same" / "outputs" / "stale.txt"));
  EXPECT_TRUE(fs::exists(dir_ / "same" / "outputs" / "a" / "x.txt"));
  EXPECT_TRUE(fs::exists(dir_ / "same" / "outputs" / "b" / "x.txt"));
}

// A fault that is not the input's stops the run (exit 2) instead of marking the rest "error";
// --resume then does exactly what is missing.
TEST_F(WhisperCli, FatalFaultStopsTheRunAndResumeFinishes) {
  const test::CommandResult run =
      test::run_command("FLURRY_TEST_FATAL_AT=4 " + command("", "fatal", "--output_format none"), 600);
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("not a fault of the input"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("--resume"), std::string::npos) << run.output;
  EXPECT_FALSE(fs::exists(dir_ / "fatal" / "results.jsonl"));
  const test::CommandResult again = test::run_command(command("", "fatal", "--output_format none --resume"), 600);
  EXPECT_EQ(again.exit_code, 1) << again.output;
  check_results("fatal");
}

TEST_F(WhisperCli, HelpNamesTheProgram) {
  const test::CommandResult run = test::run_command(std::string(FLURRY_WHISPER_BIN) + " --help 2>&1", 60);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("Usage: flurry-whisper"), std::string::npos) << run.output;
}

// Each rank of flurry-whisper drives the GPU of its node-local rank (three ranks, two pretended
// GPUs: 0, 1, 0), through the start-up every binary shares.
TEST_F(WhisperCli, EveryRankTakesItsOwnGpu) {
  if (std::string(FLURRY_MPIEXEC).empty()) GTEST_SKIP() << "mpirun not found";
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const std::string cmd = "FLURRY_TEST_GPU_COUNT=2 " + std::string(FLURRY_MPIEXEC) +
                          " --oversubscribe --bind-to none --mca btl self,vader --mca oob_tcp_if_include lo -np 3 " +
                          FLURRY_WHISPER_BIN + " --device cuda --dry-run 2>&1";
  const test::CommandResult run = test::run_command(cmd, 120);
  if (run.output.find("built without the CUDA backend") != std::string::npos) {
    GTEST_SKIP() << "this flurry-whisper has no CUDA backend";
  }
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (const char* want : {"rank 0/3 local 0/3", "rank 1/3 local 1/3", "rank 2/3 local 2/3"}) {
    const size_t at = run.output.find(want);
    ASSERT_NE(at, std::string::npos) << want << "\n" << run.output;
    const std::string line = run.output.substr(at, run.output.find('\n', at) - at);
    const int rank = want[5] - '0';
    EXPECT_NE(line.find("device cuda gpu " + std::to_string(rank % 2)), std::string::npos) << line;
  }
}

}  // namespace
}  // namespace flurry
