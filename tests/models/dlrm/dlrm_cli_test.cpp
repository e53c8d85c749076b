// flurry-dlrm as a user runs it, on the trained food-truck model and the Criteo-format fixtures:
// eval over labelled pairs with bad rows (kept in place as errors, the rest equal to PyTorch, the
// seed's metrics), recommend with the seed's filters alone and as two ranks under mpirun (equal to
// PyTorch's top 3 per customer, the same output either way, the SQLite table replaced, --resume
// doing nothing twice), Criteo TSV scoring, models or specs that do not fit refused up front, and
// --shard-tables under mpirun with 2 and 3 ranks (26 tables; one shared table) byte-identical to
// the unsharded run.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/common/test_util.h"
#include "tests/dist/subprocess.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace flurry {
namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::vector<std::string> split_csv_simple(const std::string& l) {
  std::vector<std::string> out;
  std::stringstream ss(l);
  for (std::string f; std::getline(ss, f, ',');) out.push_back(f);
  if (!l.empty() && l.back() == ',') out.push_back("");
  return out;
}

std::vector<float> golden_logits(const std::string& path) {
  std::vector<float> out;
  auto ls = lines(path);
  for (size_t i = 1; i < ls.size(); ++i) out.push_back(std::stof(ls[i].substr(ls[i].find(',') + 1)));
  return out;
}

class DlrmCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::fresh_temp_dir("dlrm-cli");
    ft_ = test::fixture_path("dlrm/foodtruck");
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }
  void TearDown() override {
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
  }
  test::CommandResult run(const std::string& args, const std::string& launcher = "") const {
    const std::string cmd = launcher + " " + FLURRY_DLRM_BIN + " " + args + " --device cpu 2>&1";
    return test::run_command(cmd, 300);
  }
  std::string recommend_args(const std::string& out, int k = 3) const {
    return "recommend --model " + ft_ + "/model --customers " + ft_ + "/customers.csv --items " + ft_ +
           "/items.csv --orders " + ft_ + "/orders.csv --match country=country --items-not-ordered --top-k " + std::to_string(k) + " " +
           "--chunk-customers 40 --output-dir " + (dir_ / out).string();
  }
  // Every customer's top 3 equal PyTorch's (recommend_top3.jsonl): same items in the same order,
  // logits within 1e-5.
  void check_recommendations(const std::string& out) const {
    const auto got = lines(dir_ / out / "recommendations.jsonl");
    const auto want = lines(ft_ + "/recommend_top3.jsonl");
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const json g = json::parse(got[i]), w = json::parse(want[i]);
      ASSERT_EQ(g["customer_id"], std::to_string(w["customer_id"].get<int>()));
      ASSERT_EQ(g["status"], "ok");
      ASSERT_EQ(g["recommendations"].size(), w["items"].size()) << g.dump();
      for (size_t k = 0; k < w["items"].size(); ++k) {
        EXPECT_EQ(g["recommendations"][k]["menu_item_id"], std::to_string(w["items"][k]["menu_item_id"].get<int>()))
            << "customer " << w["customer_id"] << " rank " << k + 1;
        EXPECT_NEAR(g["recommendations"][k]["logit"].get<double>(), w["items"][k]["logit"].get<double>(), 1e-5);
        EXPECT_EQ(g["recommendations"][k]["rank"], k + 1);
      }
      // No recommendation is something the customer bought.
      for (const auto& r : g["recommendations"]) {
        for (const auto& h : g["purchase_history"]) EXPECT_NE(r["menu_item_id"], h);
      }
    }
  }
  fs::path dir_;
  std::string ft_;
};

TEST_F(DlrmCli, EvalKeepsBadRowsInPlaceAndEqualsPyTorch) {
  // test.csv's first 50 rows, then three bad rows, then the next 10.
  const auto src = lines(ft_ + "/test.csv");
  {
    std::ofstream f(dir_ / "pairs.csv");
    f << src[0] << "\n";
    for (size_t i = 1; i <= 50; ++i) f << src[i] << "\n";
    std::string bad_age = src[51];
    // age is the 14th column: replace it with a word.
    auto cols = split_csv_simple(bad_age);
    cols[13] = "forty";
    std::string joined;
    for (size_t k = 0; k < cols.size(); ++k) joined += (k ? "," : "") + cols[k];
    f << joined << "\n";
    f << "1001,1,1,Short Row\n";                // too few fields
    cols = split_csv_simple(src[52]);
    cols[2] = "7";                              // a label that is not 0/1
    joined.clear();
    for (size_t k = 0; k < cols.size(); ++k) joined += (k ? "," : "") + cols[k];
    f << joined << "\n";
    for (size_t i = 53; i <= 62; ++i) f << src[i] << "\n";
  }
  const auto r = run("eval --model " + ft_ + "/model --id-field customer_id --chunk-rows 16 --output-dir " +
                     (dir_ / "eval").string() + " " + (dir_ / "pairs.csv").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;  // some rows are errors
  const auto out = lines(dir_ / "eval" / "scores.csv");
  ASSERT_EQ(out.size(), 1u + 63u) << r.output;
  EXPECT_EQ(out[0], "row,id,logit,probability,label,error");
  const std::vector<float> want = golden_logits(ft_ + "/golden_test_logits.csv");
  for (size_t i = 0; i < 63; ++i) {
    const auto f = split_csv_simple(out[i + 1]);
    ASSERT_GE(f.size(), 6u) << out[i + 1];
    EXPECT_EQ(f[0], std::to_string(i));
    const bool bad = i >= 50 && i <= 52;
    if (bad) {
      EXPECT_EQ(f[2], "") << out[i + 1];
      EXPECT_NE(f[5], "") << out[i + 1];
      continue;
    }
    // Rows 0..49 are test rows 0..49; rows 53..62 are test rows 52..61 (test rows 50 and 51 were
    // spoiled into rows 50 and 52, and row 51 is the short one).
    const size_t test_row = i < 50 ? i : i - 1;
    EXPECT_NEAR(std::stod(f[2]), want[test_row], 1e-5 * std::max(1.0, std::fabs(static_cast<double>(want[test_row]))))
        << "row " << i;
    EXPECT_EQ(f[4], split_csv_simple(src[test_row + 1])[2]);
  }
  EXPECT_NE(out[51].find("not a number"), std::string::npos) << out[51];
  EXPECT_NE(out[53].find("label"), std::string::npos) << out[53];
  const json m = json::parse(slurp(dir_ / "eval" / "manifest.json"));
  EXPECT_EQ(m["rows"], 63);
  EXPECT_EQ(m["row_errors"], 3);
  const json metrics = json::parse(slurp(dir_ / "eval" / "metrics.json"));
  EXPECT_EQ(metrics["rows"], 60);
}

TEST_F(DlrmCli, RecommendEqualsPyTorchAloneAndUnderMpirunIntoSqlite) {
  auto r = run(recommend_args("one"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  check_recommendations("one");
  r = run(recommend_args("two"), std::string(FLURRY_MPIEXEC) + " -np 2 --oversubscribe");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  check_recommendations("two");
  EXPECT_EQ(slurp(dir_ / "one" / "recommendations.jsonl"), slurp(dir_ / "two" / "recommendations.jsonl"));
  EXPECT_EQ(slurp(dir_ / "one" / "recommendations.csv"), slurp(dir_ / "two" / "recommendations.csv"));
  // The SQLite table: one row per customer, the top items of customer 1001 as PyTorch ranks them.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "two" / "recommendations.sqlite").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT COUNT(*), COUNT(DISTINCT CUSTOMER_ID) FROM RECOMMENDATIONS", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 300);
  EXPECT_EQ(sqlite3_column_int(st, 1), 300);
  sqlite3_finalize(st);
  const json first = json::parse(lines(ft_ + "/recommend_top3.jsonl")[0]);
  std::string want_items;
  for (const auto& it : first["items"]) want_items += (want_items.empty() ? "" : " ") + std::to_string(it["menu_item_id"].get<int>());
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT RECOMMENDED_ITEMS, CITY FROM RECOMMENDATIONS WHERE CUSTOMER_ID = '1001'", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))), want_items);
  sqlite3_finalize(st);
  sqlite3_close(db);
  // --resume: nothing to do, the same outputs; a second recommend into the same database replaces
  // the table (still 300 rows, not 600).
  r = run(recommend_args("two") + " --resume", std::string(FLURRY_MPIEXEC) + " -np 2 --oversubscribe");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(slurp(dir_ / "one" / "recommendations.jsonl"), slurp(dir_ / "two" / "recommendations.jsonl"));
  r = run(recommend_args("three", 2) + " --sqlite " + (dir_ / "two" / "recommendations.sqlite").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(sqlite3_open((dir_ / "two" / "recommendations.sqlite").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT COUNT(*), MAX(LENGTH(RECOMMENDED_ITEMS) - LENGTH(REPLACE(RECOMMENDED_ITEMS, ' ', ''))) FROM RECOMMENDATIONS", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 300);
  EXPECT_EQ(sqlite3_column_int(st, 1), 1);  // two items: one space
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// A fault that is not the input's (the runner's test hook) stops the job part-way; --resume scores
// only what is missing and the merged scores.csv equals an uninterrupted run's, byte for byte.
TEST_F(DlrmCli, ResumeAfterAFaultFinishesExactlyOnce) {
  const std::string common = "score --model " + ft_ + "/model --chunk-rows 100 " + ft_ + "/test.csv --output-dir ";
  auto r = run(common + (dir_ / "whole").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  setenv("FLURRY_TEST_FATAL_AT", "3", 1);
  r = run(common + (dir_ / "cut").string(), std::string(FLURRY_MPIEXEC) + " -np 2 --oversubscribe");
  unsetenv("FLURRY_TEST_FATAL_AT");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(dir_ / "cut" / "scores.csv"));
  r = run(common + (dir_ / "cut").string() + " --resume", std::string(FLURRY_MPIEXEC) + " -np 2 --oversubscribe");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(slurp(dir_ / "cut" / "scores.csv"), slurp(dir_ / "whole" / "scores.csv"));
  const json m = json::parse(slurp(dir_ / "cut" / "manifest.json"));
  EXPECT_EQ(m["rows"], 784);
}

TEST_F(DlrmCli, CriteoTsvScoresEqualPyTorch) {
  const std::string c = test::fixture_path("dlrm/classic");
  const auto r = run("score --model " + c + "/model --input-format criteo --output-dir " + (dir_ / "criteo").string() +
                     " " + c + "/input.tsv");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto out = lines(dir_ / "criteo" / "scores.csv");
  const std::vector<float> want = golden_logits(c + "/golden_logits.csv");
  ASSERT_EQ(out.size(), want.size() + 1);
  for (size_t i = 0; i < want.size(); ++i) {
    const auto f = split_csv_simple(out[i + 1]);
    EXPECT_NEAR(std::stod(f[2]), want[i], 1e-5 * std::max(1.0, std::fabs(static_cast<double>(want[i])))) << i;
  }
}

// Tables split over the ranks: scores.csv and the recommendations byte for byte the unsharded
// run's, the plan in the manifest covering every table once.
TEST_F(DlrmCli, ShardTablesUnderMpirunEqualsTheUnshardedRunByteForByte) {
  const std::string c = test::fixture_path("dlrm/classic");
  const std::string criteo = "score --model " + c + "/model --input-format criteo --chunk-rows 9 --batch-size 5 " + c +
                             "/input.tsv --output-dir ";
  auto r = run(criteo + (dir_ / "c1").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run(criteo + (dir_ / "c1s").string() + " --shard-tables");  // one rank: the exchange with itself
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(slurp(dir_ / "c1" / "scores.csv"), slurp(dir_ / "c1s" / "scores.csv"));
  for (int np : {2, 3}) {
    const std::string out = "c" + std::to_string(np);
    r = run(criteo + (dir_ / out).string() + " --shard-tables",
            std::string(FLURRY_MPIEXEC) + " -np " + std::to_string(np) + " --oversubscribe");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("shard plan: 26 table(s) over " + std::to_string(np) + " rank(s)"), std::string::npos)
        << r.output;
    EXPECT_EQ(slurp(dir_ / "c1" / "scores.csv"), slurp(dir_ / out / "scores.csv")) << np << " ranks";
    const json m = json::parse(slurp(dir_ / out / "manifest.json"));
    ASSERT_EQ(m["sharding"]["ranks"], np) << m.dump();
    std::vector<std::string> tables;
    for (const auto& pr : m["sharding"]["per_rank"]) {
      EXPECT_FALSE(pr["tables"].empty()) << m.dump();  // 26 tables: every rank holds some
      for (const auto& t : pr["tables"]) tables.push_back(t);
    }
    std::sort(tables.begin(), tables.end());
    EXPECT_EQ(tables.size(), 26u);
    EXPECT_EQ(std::unique(tables.begin(), tables.end()), tables.end());
  }
  // The food-truck model's one shared table: one owner, the other ranks only ask.
  const std::string ft_score = "eval --model " + ft_ + "/model --chunk-rows 100 " + ft_ + "/test.csv --output-dir ";
  r = run(ft_score + (dir_ / "f1").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run(ft_score + (dir_ / "f3").string() + " --shard-tables", std::string(FLURRY_MPIEXEC) + " -np 3 --oversubscribe");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(slurp(dir_ / "f1" / "scores.csv"), slurp(dir_ / "f3" / "scores.csv"));
  EXPECT_EQ(slurp(dir_ / "f1" / "metrics.json"), slurp(dir_ / "f3" / "metrics.json"));
  r = run(recommend_args("r1"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run(recommend_args("r2") + " --shard-tables", std::string(FLURRY_MPIEXEC) + " -np 2 --oversubscribe");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(slurp(dir_ / "r1" / "recommendations.jsonl"), slurp(dir_ / "r2" / "recommendations.jsonl"));
  EXPECT_EQ(slurp(dir_ / "r1" / "recommendations.csv"), slurp(dir_ / "r2" / "recommendations.csv"));
  const json m = json::parse(slurp(dir_ / "r2" / "manifest.json"));
  EXPECT_EQ(m["sharding"]["per_rank"][0]["tables"], json::array({"shared"})) << m.dump();
  EXPECT_TRUE(m["sharding"]["per_rank"][1]["tables"].empty()) << m.dump();
}

TEST_F(DlrmCli, ModelsAndSpecsThatDoNotFitAreRefusedBeforeScoring) {
  // A spec whose vocabulary is larger than the shared table.
  json spec = json::parse(slurp(ft_ + "/model/features.json"));
  for (int i = 0; i < 200; ++i) spec["categorical"][0]["vocab"].push_back("extra" + std::to_string(i));
  std::ofstream(dir_ / "big_vocab.json") << spec.dump();
  auto r = run("score --model " + ft_ + "/model --spec " + (dir_ / "big_vocab.json").string() + " --output-dir " +
               (dir_ / "x").string() + " " + ft_ + "/test.csv");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("do not belong together"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ / "x" / "scores.csv"));
  // A model folder whose config says another top MLP than its weights hold.
  fs::create_directories(dir_ / "m");
  json cfg = json::parse(slurp(ft_ + "/model/config.json"));
  cfg["top_mlp"] = {64, 1};
  std::ofstream(dir_ / "m" / "config.json") << cfg.dump();
  fs::copy_file(ft_ + "/model/features.json", dir_ / "m" / "features.json");
  fs::create_symlink(fs::absolute(ft_ + "/model/model.safetensors"), dir_ / "m" / "model.safetensors");
  r = run("score --model " + (dir_ / "m").string() + " --output-dir " + (dir_ / "y").string() + " " + ft_ + "/test.csv");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("top_mlp.0.weight"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace flurry
