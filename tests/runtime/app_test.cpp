// The start-up every binary shares (runtime/app): byte sizes, device resolution, the devices a
// CUDA_VISIBLE_DEVICES value exposes, rank -> GPU, and a binary started under mpirun with a
// pretended GPU count (FLURRY_TEST_GPU_COUNT), so that each rank's GPU choice is checked on a
// machine without GPUs. flurry-whisper's own start-up is checked the same way in whisper_cli_test.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <sstream>

#include "runtime/app/app.h"
#include "runtime/check.h"
#include "runtime/dist/context.h"
#include "tests/dist/subprocess.h"

namespace flurry::app {
namespace {

TEST(App, ParseBytes) {
  EXPECT_EQ(parse_bytes(""), 0u);
  EXPECT_EQ(parse_bytes("0"), 0u);
  EXPECT_EQ(parse_bytes("1024"), 1024u);
  EXPECT_EQ(parse_bytes("512MiB"), 512ull << 20);
  EXPECT_EQ(parse_bytes("20GiB"), 20ull << 30);
  EXPECT_EQ(parse_bytes("20g"), 20ull << 30);
  EXPECT_EQ(parse_bytes("1.5GB"), 3ull << 29);
  EXPECT_EQ(parse_bytes("64k"), 64ull << 10);
  EXPECT_EQ(parse_bytes("2TiB"), 2ull << 40);
  EXPECT_THROW(parse_bytes("lots"), Error);
  EXPECT_THROW(parse_bytes("12 parsecs"), Error);
  EXPECT_THROW(parse_bytes("-1GiB"), Error);
  try {
    parse_bytes("3furlongs", "--max-gpu-memory");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--max-gpu-memory"), std::string::npos) << e.what();
  }
}

TEST(App, ResolveDevice) {
  EXPECT_EQ(resolve_device("", true, 2, "", "flurry-x"), "cuda");
  EXPECT_EQ(resolve_device("", true, 0, "no driver", "flurry-x"), "cpu");
  EXPECT_EQ(resolve_device("", false, 8, "", "flurry-x"), "cpu");
  EXPECT_EQ(resolve_device("cpu", true, 8, "", "flurry-x"), "cpu");
  EXPECT_EQ(resolve_device("cuda", true, 1, "", "flurry-x"), "cuda");
  try {
    resolve_device("cuda", false, 8, "", "flurry-x");
    ADD_FAILURE() << "cuda without the backend must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("flurry-x was built without the CUDA backend"), std::string::npos);
  }
  try {
    resolve_device("cuda", true, 0, "no driver", "flurry-x");
    ADD_FAILURE() << "cuda without a GPU must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no driver"), std::string::npos) << e.what();
  }
}

TEST(App, VisibleDeviceCount) {
  EXPECT_EQ(visible_device_count(nullptr), -1);
  EXPECT_EQ(visible_device_count(""), 0);
  EXPECT_EQ(visible_device_count("0"), 1);
  EXPECT_EQ(visible_device_count("0,1,2,3"), 4);
  EXPECT_EQ(visible_device_count("2, 3"), 2);
  EXPECT_EQ(visible_device_count("0,1,-1,3"), 2);  // the runtime stops at the first invalid entry
  EXPECT_EQ(visible_device_count("-1"), 0);
  EXPECT_EQ(visible_device_count("GPU-8f3c0a2e-1111-2222-3333-444455556666,1"), 2);
  EXPECT_EQ(visible_device_count("MIG-GPU-abc/1/0"), 1);
  EXPECT_EQ(visible_device_count("0,,1"), 1);
}

TEST(App, GpuForLocalRank) {
  // 8 ranks on a node of 8 GPUs: one each; 8 ranks on 2 GPUs: shared round-robin; none: -1.
  for (int r = 0; r < 8; ++r) EXPECT_EQ(dist::gpu_for_local_rank(r, 8), r);
  for (int r = 0; r < 8; ++r) EXPECT_EQ(dist::gpu_for_local_rank(r, 2), r % 2);
  EXPECT_EQ(dist::gpu_for_local_rank(3, 0), -1);
  // srun --gpus-per-task=1: each task sees one device (CUDA_VISIBLE_DEVICES=<its GPU>) -> ordinal 0.
  EXPECT_EQ(dist::gpu_for_local_rank(5, visible_device_count("5")), 0);
}

// "flurry-synth rank R/N local L/S host H device D gpu G" lines -> {rank: gpu}.
std::map<int, int> dry_run_gpus(const std::string& output, const std::string& binary, std::string* device) {
  std::map<int, int> gpus;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(binary + " rank ", 0) != 0) continue;
    std::istringstream w(line.substr(binary.size()));
    std::string word, ranks, local, host, dev, gpu_word;
    int gpu = -2;
    w >> word >> ranks >> word >> local >> word >> host >> word >> dev >> gpu_word >> gpu;
    gpus[std::atoi(ranks.c_str())] = gpu;
    *device = dev;
  }
  return gpus;
}

TEST(App, EveryRankOfABinaryTakesItsOwnGpu) {
#if !FLURRY_HAVE_MPI
  GTEST_SKIP() << "built without MPI";
#else
  if (std::string(FLURRY_MPIEXEC).empty()) GTEST_SKIP() << "mpirun not found";
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const std::string mpirun = std::string(FLURRY_MPIEXEC) +
                             " --oversubscribe --bind-to none --mca btl self,vader --mca oob_tcp_if_include lo";
  // Three ranks on one node with two GPUs: ranks 0, 1, 2 drive GPUs 0, 1, 0.
  auto run = test::run_command("FLURRY_TEST_GPU_COUNT=2 " + mpirun + " -np 3 " + FLURRY_SYNTH +
                                   " --device cuda --dry-run 2>&1",
                               60);
  if (run.output.find("built without the CUDA backend") != std::string::npos) {
    GTEST_SKIP() << "this build has no CUDA backend: " << run.output;
  }
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::string device;
  EXPECT_EQ(dry_run_gpus(run.output, "flurry-synth", &device), (std::map<int, int>{{0, 0}, {1, 1}, {2, 0}}))
      << run.output;
  EXPECT_EQ(device, "cuda");
  // No GPU at all: the default device is cpu and no rank holds a GPU.
  run = test::run_command("FLURRY_TEST_GPU_COUNT=0 " + mpirun + " -np 2 " + FLURRY_SYNTH + " --dry-run 2>&1", 60);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(dry_run_gpus(run.output, "flurry-synth", &device), (std::map<int, int>{{0, -1}, {1, -1}})) << run.output;
  EXPECT_EQ(device, "cpu");
#endif
}

TEST(App, HelpNamesTheProgram) {
  const auto run = test::run_command(std::string(FLURRY_SYNTH) + " --help 2>&1", 30);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("Usage: flurry-synth"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("--max-gpu-memory"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("--dry-run"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace flurry::app
