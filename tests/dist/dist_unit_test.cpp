// Single-process tests of the runner's parts: the work queue (largest first, shrinking chunks,
// every item once), shard records (torn lines, resume), input collection, and run_job on one rank
// without MPI (error records, resume, the overwrite guard, results order, manifest).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "runtime/check.h"
#include "runtime/dist/context.h"
#include "runtime/dist/progress.h"
#include "runtime/dist/records.h"
#include "runtime/dist/runner.h"
#include "runtime/dist/schedule.h"
#include "tests/common/test_util.h"

namespace fs = std::filesystem;

namespace flurry::dist {
namespace {

fs::path fresh_dir(const std::string& name) { return test::fresh_temp_dir("dist-unit-" + name); }

// This process as a job of one rank, started alone: no MPI.
std::unique_ptr<DistContext> alone_context() {
  static char name[] = "dist_unit_test";
  static char* args[] = {name, nullptr};
  int argc = 1;
  char** argv = args;
  return std::make_unique<DistContext>(&argc, &argv);
}

std::vector<WorkItem> items_with_costs(const std::vector<double>& costs) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < costs.size(); ++i) ids.push_back("item" + std::to_string(i));
  return make_items(ids, [&](const std::string& id) { return costs[std::stoul(id.substr(4))]; });
}

TEST(WorkQueue, LargestFirstShrinkingChunksEveryItemOnce) {
  auto rng = test::test_rng("WorkQueue");
  std::vector<double> costs(500);
  for (auto& c : costs) c = 1.0 + static_cast<double>(rng() % 100);
  costs[7] = 5000;  // one huge item goes out first, alone
  const auto items = items_with_costs(costs);
  std::vector<int64_t> all;
  for (const auto& it : items) all.push_back(it.index);
  WorkQueue q(&items, all, 4, 2.0);
  std::vector<int> seen(items.size(), 0);
  double prev_chunk_cost = 1e300, last_cost = 1e300;
  int rank = 0;
  size_t chunks = 0;
  for (auto chunk = q.next_chunk(rank); !chunk.empty(); chunk = q.next_chunk(rank = (rank + 1) % 4)) {
    ++chunks;
    double c = 0;
    for (int64_t p : chunk) {
      ++seen[static_cast<size_t>(p)];
      EXPECT_LE(items[static_cast<size_t>(p)].cost, last_cost) << "not largest first";
      last_cost = items[static_cast<size_t>(p)].cost;
      c += items[static_cast<size_t>(p)].cost;
    }
    if (chunks == 1) {
      EXPECT_EQ(chunk, std::vector<int64_t>{7});
    }
    // Chunks shrink (allowing one item of slack: a chunk is whole items).
    EXPECT_LE(c, prev_chunk_cost + 100) << "chunk " << chunks;
    prev_chunk_cost = c;
    EXPECT_EQ(q.held_by(rank).size() >= chunk.size(), true);
    q.finished(rank, chunk);
    EXPECT_TRUE(q.held_by(rank).empty());
  }
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 1) << "item " << i;
  EXPECT_LT(chunks, items.size()) << "early chunks should hold several items";
  EXPECT_TRUE(q.drained());
}

TEST(WorkQueue, ZeroCostsFallBackToCounting) {
  const auto items = items_with_costs(std::vector<double>(100, 0.0));
  std::vector<int64_t> all;
  for (const auto& it : items) all.push_back(it.index);
  WorkQueue q(&items, all, 2, 2.0);
  const auto first = q.next_chunk(0);
  EXPECT_EQ(first.size(), 25u);  // 100 / (2 * 2)
  size_t n = first.size();
  while (true) {
    const auto c = q.next_chunk(1);
    if (c.empty()) break;
    n += c.size();
  }
  EXPECT_EQ(n, 100u);
}

TEST(WorkQueue, DescribeHeldNamesRankAndItems) {
  const auto items = items_with_costs({1, 2, 3});
  const std::string s = describe_held(items, 3, {2, 0});
  EXPECT_NE(s.find("rank 3"), std::string::npos) << s;
  EXPECT_NE(s.find("'item2'"), std::string::npos) << s;
  EXPECT_NE(s.find("'item0'"), std::string::npos) << s;
}

TEST(Records, TornLastLineIsIgnoredAndCutBeforeAppending) {
  const fs::path d = fresh_dir("torn");
  const std::string path = (d / "rank-0.jsonl").string();
  {
    std::ofstream f(path);
    f << R"({"id":"a","status":"ok","v":1})" << "\n";
    f << "not json at all\n";
    f << R"({"id":"b","status":"maybe"})" << "\n";  // not a valid status
    f << R"({"id":"c","status":"ok","v":)";         // killed mid-write: no newline
  }
  auto recs = read_records(path);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0]["id"], "a");
  {
    ShardWriter w(path, 1);
    w.append({{"id", "c"}, {"status", "ok"}, {"v", 3}});
  }
  recs = read_records(path);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1]["id"], "c");
  EXPECT_EQ(recs[1]["v"], 3);
}

TEST(Records, LoadPrefersOkAndReadsResults) {
  const fs::path d = fresh_dir("load");
  fs::create_directories(shard_dir(d.string()));
  {
    std::ofstream(shard_path(d.string(), 0)) << R"({"id":"x","status":"error","error":"e"})" << "\n";
    std::ofstream(shard_path(d.string(), 1)) << R"({"id":"x","status":"ok"})" << "\n";
    std::ofstream(d / "results.jsonl") << R"({"id":"y","status":"ok"})" << "\n";
  }
  const auto by_id = load_records(d.string());
  ASSERT_EQ(by_id.size(), 2u);
  EXPECT_EQ(by_id.at("x")["status"], "ok");
  EXPECT_EQ(by_id.count("y"), 1u);
}

TEST(Records, AtomicWriteReplacesWholeFile) {
  const fs::path d = fresh_dir("atomic");
  const std::string p = (d / "m.json").string();
  write_file_atomic(p, "first\n");
  write_file_atomic(p, "second\n");
  std::ifstream in(p);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(s, "second\n");
  size_t files = 0;
  for (auto& e : fs::directory_iterator(d)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1u) << "temporary file left behind";
}

TEST(Inputs, DirectoriesGlobListAndDuplicates) {
  const fs::path d = fresh_dir("inputs");
  fs::create_directories(d / "audio" / "sub");
  std::ofstream(d / "audio" / "b.wav") << "12345";
  std::ofstream(d / "audio" / "sub" / "a.wav") << "1";
  std::ofstream(d / "audio" / "notes.txt") << "x";
  std::ofstream(d / "list.txt") << "# comment\n" << (d / "extra.wav").string() << "\n\n"
                                << (d / "audio" / "b.wav").string() << "\n";
  InputSpec spec;
  spec.paths = {(d / "audio").string()};
  spec.input_list = (d / "list.txt").string();
  spec.glob = "*.wav";
  const auto items = collect_inputs(spec);
  ASSERT_EQ(items.size(), 3u);  // b.wav listed twice counts once
  EXPECT_EQ(items[0].id, (d / "audio").string() + "/b.wav");
  EXPECT_EQ(items[0].cost, 5.0);
  EXPECT_EQ(items[1].id, (d / "audio").string() + "/sub/a.wav");
  EXPECT_EQ(items[2].id, (d / "extra.wav").string());
  EXPECT_EQ(items[2].cost, 0.0);  // missing: kept, fails later as an error record
  for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(items[i].index, static_cast<int64_t>(i));
  InputSpec bad;
  bad.input_list = (d / "nope.txt").string();
  EXPECT_THROW(collect_inputs(bad), Error);
  EXPECT_THROW(collect_inputs(InputSpec{}), Error);
}

TEST(Progress, FormatsDurationsAndLine) {
  EXPECT_EQ(ProgressLine::format_duration(65), "1:05");
  EXPECT_EQ(ProgressLine::format_duration(3725), "1:02:05");
  EXPECT_EQ(ProgressLine::format_duration(-1), "--");
  ProgressLine p(10, 100, "audio s", 10);
  p.update(4, 1, 40);
  const std::string s = p.render();
  EXPECT_NE(s.find("4/10 items"), std::string::npos) << s;
  EXPECT_NE(s.find("audio s/s"), std::string::npos) << s;
  EXPECT_NE(s.find("1 error"), std::string::npos) << s;
}

std::vector<std::string> result_lines(const fs::path& out) {
  std::ifstream in(out / "results.jsonl");
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

Json read_json_manifest(const fs::path& out) {
  std::ifstream in(out / "manifest.json");
  return Json::parse(in);
}

TEST(RunJob, SingleRankErrorsResumeAndOverwrite) {
  const auto alone = alone_context();
  DistContext& ctx = *alone;
  ASSERT_EQ(ctx.size(), 1);
  const fs::path out = fresh_dir("runjob");
  RunnerOptions opts;
  opts.output_dir = out.string();
  opts.unit = "things";
  opts.work_key = "work";
  const auto items = items_with_costs({3, 1, 2, 5, 4});
  int calls = 0;
  auto process = [&](const WorkItem& it) -> Json {
    ++calls;
    if (it.index == 2) FLURRY_INPUT_FAIL("bad input " << it.id);
    return Json{{"double", it.index * 2}, {"work", 10}};
  };
  EXPECT_EQ(run_job(ctx, opts, items, process), 1);
  EXPECT_EQ(calls, 5);
  auto lines = result_lines(out);
  ASSERT_EQ(lines.size(), 5u);
  for (size_t i = 0; i < lines.size(); ++i) {
    const Json j = Json::parse(lines[i]);
    EXPECT_EQ(j["index"], i);
    EXPECT_EQ(j["id"], "item" + std::to_string(i));
    if (i == 2) {
      EXPECT_EQ(j["status"], "error");
      EXPECT_NE(j["error"].get<std::string>().find("bad input item2"), std::string::npos);
    } else {
      EXPECT_EQ(j["status"], "ok");
      EXPECT_EQ(j["double"], 2 * i);
    }
  }
  const Json m = read_json_manifest(out);
  EXPECT_EQ(m["errors"], 1);
  EXPECT_EQ(m["work"], 40.0);  // work_key: 10 per ok input
  EXPECT_EQ(m["throughput"]["unit"], "things/s");

  // Without --resume an earlier run is not silently mixed in.
  EXPECT_THROW(run_job(ctx, opts, items, process), Error);
  // --resume: nothing left to do; --retry-errors: only the failed one again.
  opts.resume = true;
  calls = 0;
  EXPECT_EQ(run_job(ctx, opts, items, process), 1);
  EXPECT_EQ(calls, 0);
  opts.retry_errors = true;
  EXPECT_EQ(run_job(ctx, opts, items, [&](const WorkItem& it) -> Json {
              ++calls;
              return Json{{"double", it.index * 2}};
            }),
            0);
  EXPECT_EQ(calls, 1);
  lines = result_lines(out);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(Json::parse(lines[2])["status"], "ok");
  // --overwrite: everything again.
  opts.resume = false;
  opts.retry_errors = false;
  opts.overwrite = true;
  calls = 0;
  EXPECT_EQ(run_job(ctx, opts, items, process), 1);
  EXPECT_EQ(calls, 5);
}


// A fault that is not the input's (a CUDA error, a broken invariant) must not become an error
// record: the rank stops with exit status 2, the records already written stay, and --resume
// processes exactly the inputs that have none.
TEST(RunJob, FatalFaultStopsTheRankAndResumeFinishes) {
  // "fast": the child forks from this process and writes where the parent will look (a
  // re-executed "threadsafe" child would have another pid, hence another fresh_dir).
  GTEST_FLAG_SET(death_test_style, "fast");
  const auto alone = alone_context();
  DistContext& ctx = *alone;
  const fs::path out = fresh_dir("fatal");
  RunnerOptions opts;
  opts.output_dir = out.string();
  const auto items = items_with_costs({6, 5, 4, 1, 3, 2});  // largest first: input 3 comes last
  auto process = [&](const WorkItem& it) -> Json {
    if (it.index == 1) FLURRY_INPUT_FAIL("unreadable input " << it.id);
    if (it.index == 3) FLURRY_CHECK(false, "device fault while processing " << it.id);
    return Json{{"v", it.index}};
  };
  EXPECT_EXIT(run_job(ctx, opts, items, process), ::testing::ExitedWithCode(2), "not a fault of the input");
  std::map<std::string, Json> recorded;
  for (const auto& rec : read_records(shard_path(out.string(), 0))) recorded[rec["id"]] = rec;
  EXPECT_EQ(recorded.count("item3"), 0u) << "a fatal fault must not leave an error record";
  EXPECT_LT(recorded.size(), items.size());
  EXPECT_FALSE(recorded.empty()) << "inputs finished before the fault must keep their records";
  if (recorded.count("item1")) {
    EXPECT_EQ(recorded["item1"]["status"], "error");
  }
  EXPECT_FALSE(fs::exists(out / "results.jsonl")) << "a stopped job writes no merged results";

  // The same hook the binaries honour: FLURRY_TEST_FATAL_AT stops at that input.
  const fs::path out2 = fresh_dir("fatal-hook");
  RunnerOptions opts2;
  opts2.output_dir = out2.string();
  setenv("FLURRY_TEST_FATAL_AT", "0", 1);
  EXPECT_EXIT(run_job(ctx, opts2, items, [](const WorkItem& it) { return Json{{"v", it.index}}; }),
              ::testing::ExitedWithCode(2), "injected fatal fault");
  unsetenv("FLURRY_TEST_FATAL_AT");

  // --resume: only the inputs without a record run; the faulted one now succeeds.
  opts.resume = true;
  std::set<std::string> ran;
  EXPECT_EQ(run_job(ctx, opts, items,
                    [&](const WorkItem& it) -> Json {
                      ran.insert(it.id);
                      if (it.index == 1) FLURRY_INPUT_FAIL("unreadable input " << it.id);
                      return Json{{"v", it.index}};
                    }),
            1);
  EXPECT_EQ(ran.size(), items.size() - recorded.size());
  for (const auto& id : ran) EXPECT_EQ(recorded.count(id), 0u) << id << " was done twice";
  const auto lines = result_lines(out);
  ASSERT_EQ(lines.size(), items.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(Json::parse(lines[i])["status"], i == 1 ? "error" : "ok") << lines[i];
  }
}

TEST(Inputs, OutputKeysAreUniqueAndReadable) {
  auto keys = [](const std::vector<std::string>& ids) {
    auto items = make_items(ids, nullptr);
    std::vector<std::string> k;
    for (const auto& it : items) k.push_back(it.key);
    return k;
  };
  // Same file name in two folders: the folders stay in the key.
  EXPECT_EQ(keys({"/data/a/x.wav", "/data/b/x.wav"}), (std::vector<std::string>{"a/x", "b/x"}));
  EXPECT_EQ(keys({"/data/a/x.wav"}), (std::vector<std::string>{"x"}));
  EXPECT_EQ(keys({"in/x.wav", "in/y.mp3", "in/sub/z.flac"}), (std::vector<std::string>{"x", "y", "sub/z"}));
  // Same stem, different extensions: those keep their extension.
  EXPECT_EQ(keys({"d/x.wav", "d/x.mp3", "d/y.wav"}), (std::vector<std::string>{"x.wav", "x.mp3", "y"}));
  // Relative and absolute ids, "..", "." and doubled slashes never climb out of the folder.
  const auto odd = keys({"../up/x.wav", "/abs/x.wav", "./here//x.wav", "x.wav"});
  std::set<std::string> unique(odd.begin(), odd.end());
  EXPECT_EQ(unique.size(), odd.size());
  for (const auto& k : odd) {
    EXPECT_EQ(k.find(".."), std::string::npos) << k;
    EXPECT_NE(k.front(), '/') << k;
  }
  // Ids that are not paths (table rows).
  EXPECT_EQ(keys({"row:1", "row:2"}), (std::vector<std::string>{"row:1", "row:2"}));
}

TEST(Inputs, RowChunksCoverTheTableOnce) {
  const auto chunks = make_row_chunks("passages", 1003, 250);
  ASSERT_EQ(chunks.size(), 5u);
  int64_t next = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(chunks[i].row_begin, next);
    next = chunks[i].row_end;
    EXPECT_EQ(chunks[i].cost, static_cast<double>(chunks[i].rows()));
  }
  EXPECT_EQ(next, 1003);
  EXPECT_EQ(chunks[4].id, "passages:1000-1003");
  EXPECT_EQ(chunks[4].rows(), 3);
  EXPECT_TRUE(make_row_chunks("t", 0, 10).empty());
  EXPECT_THROW(make_row_chunks("t", 10, 0), Error);
  const auto weighted = make_row_chunks("t", 10, 4, [](int64_t b, int64_t e) { return 2.0 * static_cast<double>(e - b); });
  EXPECT_EQ(weighted[2].cost, 4.0);
}

// Guided scheduling replayed on a virtual clock, so the check is the scheduling itself and not the
// wall clock of a shared CI machine: the workload of the mpirun test (200 inputs, 5 of them 20x
// the others) over 4 ranks that each ask for a chunk when idle. The last rank must finish within
// one small input of the others, every input must be handed out once, and rank 0 must not take
// the heavy ones alone.
TEST(WorkQueue, SkewedWorkloadIsBalancedOnAVirtualClock) {
  std::vector<double> costs(200, 1.0);
  for (int h = 0; h < 5; ++h) costs[static_cast<size_t>(h * 40)] = 20.0;
  const auto items = items_with_costs(costs);
  for (int ranks : {2, 4, 7}) {
    SCOPED_TRACE("ranks=" + std::to_string(ranks));
    std::vector<int64_t> all(items.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
    WorkQueue q(&items, all, ranks, 2.0);
    std::vector<double> clock(static_cast<size_t>(ranks), 0.0), work(static_cast<size_t>(ranks), 0.0);
    std::vector<int> seen(items.size(), 0);
    for (;;) {
      // The idle rank with the earliest clock asks next (ties: lowest rank), as on a real machine.
      const int r = static_cast<int>(std::min_element(clock.begin(), clock.end()) - clock.begin());
      const auto chunk = q.next_chunk(r);
      if (chunk.empty()) break;
      for (int64_t p : chunk) {
        seen[static_cast<size_t>(p)]++;
        clock[static_cast<size_t>(r)] += items[static_cast<size_t>(p)].cost;
        work[static_cast<size_t>(r)] += items[static_cast<size_t>(p)].cost;
      }
      q.finished(r, chunk);
    }
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 1) << "input " << i;
    const double total = 295.0;
    const double mean = total / ranks;
    const double worst = *std::max_element(clock.begin(), clock.end());
    const double best = *std::min_element(clock.begin(), clock.end());
    std::string per_rank;
    for (double w : work) per_rank += " " + std::to_string(w);
    EXPECT_LE(worst - best, 1.0 + 1e-9) << "units per rank:" << per_rank;
    EXPECT_LE(worst, std::max(mean + 1.0, 20.0)) << "units per rank:" << per_rank;
  }
}


// Binary per-item outputs: item i yields i+1 floats (i*10 + k); errors yield none. The merged file
// is the header followed by every ok item's floats in input order, and each result says where its
// bytes are. A fatal stop, a damaged data shard and --resume must neither lose nor repeat bytes.
std::vector<float> item_floats(int64_t i) {
  std::vector<float> v(static_cast<size_t>(i + 1));
  for (size_t k = 0; k < v.size(); ++k) v[k] = static_cast<float>(i * 10 + static_cast<int64_t>(k));
  return v;
}

std::vector<float> read_merged(const fs::path& path, const std::string& header) {
  std::ifstream in(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all.substr(0, header.size()), header);
  std::vector<float> v((all.size() - header.size()) / sizeof(float));
  std::memcpy(v.data(), all.data() + header.size(), v.size() * sizeof(float));
  return v;
}

TEST(RunJob, ItemDataIsMergedInInputOrderExactlyOnce) {
  // "fast": the child forks from this process and writes where the parent will look (a
  // re-executed "threadsafe" child would have another pid, hence another fresh_dir).
  GTEST_FLAG_SET(death_test_style, "fast");
  const auto alone = alone_context();
  DistContext& ctx = *alone;
  const fs::path out = fresh_dir("data");
  RunnerOptions opts;
  opts.output_dir = out.string();
  opts.data_output = "values.f32";
  opts.data_header = [](uint64_t bytes) { return "HDR" + std::to_string(bytes) + "\n"; };
  opts.data_sync_bytes = 16;  // small: the sync path runs many times
  // Largest cost first: input 6 (the fatal one) comes last, after the others are recorded.
  const auto items = items_with_costs({9, 8, 7, 6, 5, 4, 1, 3, 2});
  auto process = [](const WorkItem& it, std::vector<char>* data) -> Json {
    if (it.index == 4) FLURRY_INPUT_FAIL("bad row block " << it.id);
    if (it.index == 6) FLURRY_CHECK(false, "device fault");
    const auto v = item_floats(it.index);
    data->resize(v.size() * sizeof(float));
    std::memcpy(data->data(), v.data(), data->size());
    return Json{{"rows", v.size()}};
  };
  EXPECT_EXIT(run_job(ctx, opts, items, process), ::testing::ExitedWithCode(2), "not a fault of the input");
  EXPECT_FALSE(fs::exists(out / "values.f32"));

  // Damage the data of one recorded item: resume must do that item again, not trust its record.
  std::string damaged_id;
  for (const auto& rec : read_records(shard_path(out.string(), 0))) {
    if (rec["status"] == "ok" && rec.contains("data")) damaged_id = rec["id"];
  }
  ASSERT_FALSE(damaged_id.empty());
  {
    const Json rec = [&] {
      for (const auto& r : read_records(shard_path(out.string(), 0))) {
        if (r["id"] == damaged_id) return r;
      }
      return Json();
    }();
    std::fstream f(out / "shards" / rec["data"]["file"].get<std::string>(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(rec["data"]["offset"].get<uint64_t>()));
    f.put('\x7f');
  }
  opts.resume = true;
  std::set<std::string> ran;
  EXPECT_EQ(run_job(ctx, opts, items,
                    [&](const WorkItem& it, std::vector<char>* data) -> Json {
                      ran.insert(it.id);
                      if (it.index == 6) {  // the device is fine now
                        const auto v = item_floats(it.index);
                        data->assign(reinterpret_cast<const char*>(v.data()),
                                     reinterpret_cast<const char*>(v.data() + v.size()));
                        return Json{{"rows", v.size()}};
                      }
                      return process(it, data);
                    }),
            1);
  EXPECT_EQ(ran.count(damaged_id), 1u) << "an item with damaged data must be done again";
  EXPECT_EQ(ran.count("item6"), 1u);

  std::vector<float> want;
  uint64_t bytes = 0;
  for (int64_t i = 0; i < 9; ++i) {
    if (i == 4) continue;
    const auto v = item_floats(i);
    want.insert(want.end(), v.begin(), v.end());
    bytes += v.size() * sizeof(float);
  }
  EXPECT_EQ(read_merged(out / "values.f32", "HDR" + std::to_string(bytes) + "\n"), want);
  const auto lines = result_lines(out);
  ASSERT_EQ(lines.size(), 9u);
  uint64_t at = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Json j = Json::parse(lines[i]);
    EXPECT_FALSE(j.contains("data")) << lines[i];
    if (i == 4) {
      EXPECT_EQ(j["status"], "error");
      EXPECT_FALSE(j.contains("data_offset"));
      continue;
    }
    EXPECT_EQ(j["data_offset"].get<uint64_t>(), at) << lines[i];
    EXPECT_EQ(j["data_bytes"].get<uint64_t>(), (i + 1) * sizeof(float)) << lines[i];
    at += j["data_bytes"].get<uint64_t>();
  }
  // --overwrite removes the data shards and the merged file with the rest.
  opts.resume = false;
  opts.overwrite = true;
  EXPECT_EQ(run_job(ctx, opts, items, [](const WorkItem& it, std::vector<char>* data) -> Json {
              data->assign(4, static_cast<char>(it.index));
              return Json::object();
            }),
            0);
  std::ifstream merged(out / "values.f32", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(merged)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all.size(), std::string("HDR36\n").size() + 36);
}

}  // namespace
}  // namespace flurry::dist
