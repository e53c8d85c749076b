// Multi-rank tests: flurry-synth (the runner with a simulated model) and dist_comm_worker under
// mpirun with 1, 2 and 4 ranks on this machine's CPUs. What they prove:
//   - every input appears exactly once in results.jsonl (and in the shards), in input order, with
//     the deterministic result or the error record the fault injection asked for;
//   - a kill -9 of one rank, or of the whole job, at a random moment loses and duplicates nothing
//     once the job is rerun with --resume; rank 0 names what a dead rank held;
//   - a skewed workload (a few inputs 20x the others) completes exactly once on every rank (its
//     balance is checked deterministically in dist_unit_test);
//   - the MPI communicator's collectives give the expected values on 2, 3 and 4 ranks.
// Random kill moments come from test_rng (FLURRY_SEED repeats a run).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/dist/records.h"
#include "tests/common/test_util.h"
#include "tests/dist/subprocess.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace flurry::test {
namespace {

class MpirunTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Containers and CI run as root; Open MPI refuses that unless told twice.
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("FLURRY_LOG_LEVEL", "info", 1);
  }
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("flurry-dist-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // One rank runs the binary directly (no MPI at all); more go through mpirun on loopback and
  // shared memory only, which is what a CI container without network interfaces has.
  static std::string launch(int ranks, const std::string& binary) {
    if (ranks == 1) return binary;
    return std::string(FLURRY_MPIEXEC) + " --oversubscribe --bind-to none --mca btl self,vader" +
           " --mca oob_tcp_if_include lo -np " + std::to_string(ranks) + " " + binary;
  }
  std::string synth(int ranks, const std::string& out, const std::string& args) const {
    return launch(ranks, FLURRY_SYNTH) + " --output-dir " + (dir_ / out).string() + " " + args;
  }

  fs::path dir_;
};

uint64_t fake_value(const std::string& id) {  // the same formula as flurry-synth
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : id) h = (h ^ c) * 1099511628211ull;
  return h % 1000003;
}

std::string synth_id(int i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "syn/%06d", i);
  return buf;
}

// Every one of the n synthetic inputs exactly once, in order, ok or failed as asked — in
// results.jsonl and across the shards, which must not hold any input twice either.
void expect_exactly_once(const fs::path& out, int n, const std::set<int>& failing) {
  std::ifstream in(out / "results.jsonl");
  ASSERT_TRUE(in.good()) << "no results.jsonl in " << out;
  std::string line;
  int i = 0;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    ASSERT_LT(i, n) << "more results than inputs";
    EXPECT_EQ(j.at("index").get<int>(), i);
    EXPECT_EQ(j.at("id").get<std::string>(), synth_id(i));
    if (failing.count(i)) {
      EXPECT_EQ(j.at("status"), "error") << line;
      EXPECT_NE(j.at("error").get<std::string>().find("simulated failure"), std::string::npos) << line;
    } else {
      EXPECT_EQ(j.at("status"), "ok") << line;
      EXPECT_EQ(j.at("value").get<uint64_t>(), fake_value(synth_id(i))) << line;
    }
    ++i;
  }
  EXPECT_EQ(i, n) << "results.jsonl holds " << i << " of " << n << " inputs";
  std::map<std::string, int> seen;
  for (const auto& e : fs::directory_iterator(out / "shards")) {
    for (const auto& rec : dist::read_records(e.path().string())) seen[rec["id"].get<std::string>()]++;
  }
  EXPECT_EQ(static_cast<int>(seen.size()), n) << "inputs with a shard record";
  for (const auto& kv : seen) EXPECT_EQ(kv.second, 1) << kv.first << " recorded " << kv.second << " times";
}

// Ranks that mpirun reports as ended by a signal: "process rank N with PID ... exited on signal".
std::set<int> ranks_reported_dead(const std::string& output) {
  std::set<int> dead;
  const std::string tag = "process rank ";
  for (size_t at = output.find(tag); at != std::string::npos; at = output.find(tag, at + 1)) {
    const size_t eol = output.find('\n', at);
    const std::string line = output.substr(at, eol == std::string::npos ? std::string::npos : eol - at);
    if (line.find("signal") == std::string::npos && line.find("exited") == std::string::npos) continue;
    dead.insert(std::atoi(line.c_str() + tag.size()));
  }
  return dead;
}

json read_manifest(const fs::path& out) {
  std::ifstream in(out / "manifest.json");
  return json::parse(in);
}

TEST_F(MpirunTest, ExactlyOnceWithErrorRecordsOn1_2_4Ranks) {
  for (int ranks : {1, 2, 4}) {
    SCOPED_TRACE("ranks=" + std::to_string(ranks));
    const std::string out = "r" + std::to_string(ranks);
    const auto res = run_command(synth(ranks, out, "--synthetic 150 --heavy 4 --fail 3,77,149 --ms-per-unit 2"), 90);
    EXPECT_EQ(res.exit_code, 1) << "inputs failed, so the exit status is 1\n" << res.output;
    expect_exactly_once(dir_ / out, 150, {3, 77, 149});
    const json m = read_manifest(dir_ / out);
    EXPECT_EQ(m["inputs"], 150);
    EXPECT_EQ(m["ok"], 147);
    EXPECT_EQ(m["errors"], 3);
    EXPECT_EQ(m["ranks"], ranks);
    ASSERT_EQ(m["per_rank"].size(), static_cast<size_t>(ranks));
    int items = 0;
    for (const auto& r : m["per_rank"]) items += r["items"].get<int>();
    EXPECT_EQ(items, 150);
    EXPECT_EQ(m["throughput"]["unit"], "units/s");
    EXPECT_GT(m["throughput"]["value"].get<double>(), 0.0);
  }
}

TEST_F(MpirunTest, AllOkExitsZero) {
  const auto res = run_command(synth(2, "ok", "--synthetic 40 --ms-per-unit 1"), 60);
  EXPECT_EQ(res.exit_code, 0) << res.output;
  expect_exactly_once(dir_ / "ok", 40, {});
}

// The balance itself is checked on a virtual clock in dist_unit_test (WorkQueue.
// SkewedWorkloadIsBalancedOnAVirtualClock); timing it here would test the CI machine's load. Here:
// the skewed job over 4 real ranks completes exactly once and every rank takes part.
TEST_F(MpirunTest, SkewedWorkloadRunsOnEveryRank) {
  const auto res = run_command(synth(4, "skew", "--synthetic 200 --heavy 5 --heavy-factor 20 --ms-per-unit 2"), 90);
  ASSERT_EQ(res.exit_code, 0) << res.output;
  expect_exactly_once(dir_ / "skew", 200, {});
  const json m = read_manifest(dir_ / "skew");
  ASSERT_EQ(m["per_rank"].size(), 4u);
  double work = 0;
  for (const auto& r : m["per_rank"]) {
    EXPECT_GT(r["items"].get<int>(), 0) << m["per_rank"].dump();
    work += r["work"].get<double>();
  }
  EXPECT_EQ(work, 295.0);
}

// kill -9 of one rank at a random moment, then --resume: nothing lost, nothing twice.
TEST_F(MpirunTest, ResumeAfterOneRankIsKilled) {
  auto rng = test_rng("ResumeAfterOneRankIsKilled");
  for (int ranks : {2, 4}) {
    const int victim = static_cast<int>(rng() % static_cast<uint64_t>(ranks));
    const double when = 0.1 + static_cast<double>(rng() % 1000) / 1000.0 * 0.5;
    SCOPED_TRACE("ranks=" + std::to_string(ranks) + " victim=" + std::to_string(victim) +
                 " after=" + std::to_string(when) + "s");
    const std::string out = "k" + std::to_string(ranks);
    const std::string args = "--synthetic 200 --heavy 5 --ms-per-unit 8 --fail 11,123";
    char crash[96];
    std::snprintf(crash, sizeof(crash), " --crash-rank %d --crash-after %.3f", victim, when);
    const auto first = run_command(synth(ranks, out, args + crash), 90);
    EXPECT_NE(first.exit_code, 0) << first.output;
    // The dead rank is named exactly: mpirun reports the rank that died of the signal, and no
    // other rank is reported dead.
    const std::set<int> dead = ranks_reported_dead(first.output);
    EXPECT_EQ(dead, std::set<int>{victim}) << first.output;
    const auto again = run_command(synth(ranks, out, args + " --resume"), 90);
    EXPECT_EQ(again.exit_code, 1) << again.output;
    expect_exactly_once(dir_ / out, 200, {11, 123});
    const json m = read_manifest(dir_ / out);
    EXPECT_GT(m["resumed"].get<int>(), 0) << "the first run recorded nothing before the kill";
  }
}

// kill -9 of mpirun and every rank at once, at a random moment; then --resume, maybe twice.
TEST_F(MpirunTest, ResumeAfterWholeJobIsKilled) {
  auto rng = test_rng("ResumeAfterWholeJobIsKilled");
  for (int ranks : {1, 2, 4}) {
    const std::string out = "w" + std::to_string(ranks);
    const std::string args = "--synthetic 240 --heavy 3 --ms-per-unit 6 --fail 5";
    const double when = (ranks == 1 ? 0.2 : 0.8) + static_cast<double>(rng() % 1000) / 1000.0;
    SCOPED_TRACE("ranks=" + std::to_string(ranks) + " kill after " + std::to_string(when) + "s");
    const auto first = run_command(synth(ranks, out, args), 90, when);
    EXPECT_TRUE(first.killed || first.exit_code == 1) << first.output;
    const auto again = run_command(synth(ranks, out, args + " --resume"), 90);
    EXPECT_EQ(again.exit_code, 1) << again.output;
    expect_exactly_once(dir_ / out, 240, {5});
  }
}

// A fault that is not the input's, on one of two ranks: the job stops (no error record for that
// input, no merged results), and --resume finishes it exactly once.
TEST_F(MpirunTest, FatalFaultStopsTheJobAndResumeFinishes) {
  const std::string args = "--synthetic 60 --ms-per-unit 2 --fail 7";
  const auto first = run_command(synth(2, "fatal", args + " --fatal-at 30"), 90);
  EXPECT_EQ(first.exit_code, 2) << first.output;
  EXPECT_NE(first.output.find("not a fault of the input"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("simulated device fault at input 30"), std::string::npos) << first.output;
  EXPECT_FALSE(fs::exists(dir_ / "fatal" / "results.jsonl"));
  for (const auto& e : fs::directory_iterator(dir_ / "fatal" / "shards")) {
    for (const auto& rec : dist::read_records(e.path().string())) EXPECT_NE(rec["id"], synth_id(30)) << rec.dump();
  }
  const auto again = run_command(synth(2, "fatal", args + " --resume"), 90);
  EXPECT_EQ(again.exit_code, 1) << again.output;
  expect_exactly_once(dir_ / "fatal", 60, {7});
}

TEST_F(MpirunTest, DeadRankIsNamedWithItsItem) {
  // Rank 1 dies as it starts its 5th input; rank 0 must name rank 1 and list that input, which
  // has no record anywhere. Inputs of 20 ms: reports every 50 ms keep rank 0's view close.
  const auto res = run_command(
      synth(2, "named", "--synthetic 80 --ms-per-unit 20 --crash-rank 1 --crash-after-items 5"), 90);
  EXPECT_NE(res.exit_code, 0);
  const size_t at = res.output.find("rank 1 held");
  ASSERT_NE(at, std::string::npos) << res.output;
  const std::string line = res.output.substr(at, res.output.find('\n', at) - at);
  std::set<std::string> recorded;
  for (const auto& e : fs::directory_iterator(dir_ / "named" / "shards")) {
    for (const auto& rec : dist::read_records(e.path().string())) recorded.insert(rec["id"].get<std::string>());
  }
  bool names_lost_item = false;
  for (size_t q = line.find('\''); q != std::string::npos; q = line.find('\'', line.find('\'', q + 1) + 1)) {
    const size_t e = line.find('\'', q + 1);
    if (e == std::string::npos) break;
    if (recorded.count(line.substr(q + 1, e - q - 1)) == 0) names_lost_item = true;
  }
  EXPECT_TRUE(names_lost_item) << "no unrecorded input named in: " << line;
  EXPECT_NE(res.output.find("--resume"), std::string::npos) << res.output;
}

TEST_F(MpirunTest, MpiCommunicatorMatchesExpectedValues) {
  for (int ranks : {2, 3, 4}) {
    const auto res = run_command(launch(ranks, FLURRY_COMM_WORKER), 60);
    EXPECT_EQ(res.exit_code, 0) << "ranks=" << ranks << "\n" << res.output;
    EXPECT_NE(res.output.find("0 failure(s)"), std::string::npos) << res.output;
  }
}

}  // namespace
}  // namespace flurry::test
