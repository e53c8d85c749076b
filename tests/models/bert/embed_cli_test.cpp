// flurry-embed as a user runs it: a JSONL corpus with bad rows and a plain text file, alone and as
// two ranks under mpirun; embeddings.npy (numpy's format) row-aligned with ids.jsonl, every row once
// in input order, bad rows as errors with zero vectors, vectors equal to sentence-transformers'
// for the golden sentences, --resume doing nothing twice; then search and a BEIR eval on a tiny
// folder whose answers are known; --vectors-jsonl equal to embeddings.npy.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/npy.h"
#include "tests/common/test_util.h"
#include "tests/dist/subprocess.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace flurry {
namespace {

std::string minilm_dir() { return std::string(FLURRY_SOURCE_DIR) + "/models-cache/all-MiniLM-L6-v2"; }

// vectors.jsonl (--vectors-jsonl) against embeddings.npy and ids.jsonl of the same run: one line per
// row in row order with the row's id and status, the vector of an ok row equal to its npy row (the
// text round-trips a float exactly), null for an error row.
void expect_vectors_jsonl_equal_npy(const fs::path& out) {
  const NpyMatrix m = read_npy((out / "embeddings.npy").string());
  std::ifstream ids_in(out / "ids.jsonl"), vec_in(out / "vectors.jsonl");
  ASSERT_TRUE(vec_in.good()) << out / "vectors.jsonl" << " absent";
  int64_t r = 0, ok_rows = 0;
  for (std::string il, vl; std::getline(ids_in, il); ++r) {
    ASSERT_TRUE(static_cast<bool>(std::getline(vec_in, vl))) << "vectors.jsonl ends before row " << r;
    const json id = json::parse(il), v = json::parse(vl);
    EXPECT_EQ(v["row"], r);
    EXPECT_EQ(v["id"], id["id"]);
    EXPECT_EQ(v["status"], id["status"]);
    if (id["status"] != "ok") {
      EXPECT_TRUE(v["vector"].is_null()) << vl;
      continue;
    }
    ++ok_rows;
    ASSERT_EQ(v["vector"].size(), static_cast<size_t>(m.cols)) << "row " << r;
    for (int64_t j = 0; j < m.cols; ++j) {
      ASSERT_EQ(v["vector"][static_cast<size_t>(j)].get<float>(), m.data[static_cast<size_t>(r * m.cols + j)])
          << "row " << r << " element " << j;
    }
  }
  EXPECT_EQ(r, m.rows);
  EXPECT_GT(ok_rows, 0);
  std::string extra;
  EXPECT_FALSE(static_cast<bool>(std::getline(vec_in, extra))) << "vectors.jsonl has more lines than ids.jsonl";
}

class EmbedCli : public ::testing::Test {
 protected:
  void SetUp() override {
    FLURRY_REQUIRE_MODEL_DATA(fs::exists(minilm_dir() + "/model.safetensors"),
                              minilm_dir() << " absent (run make models: tools/fetch_minilm.sh)");
    dir_ = test::fresh_temp_dir("embed-cli");
    std::ifstream in(test::fixture_path("bert/minilm_goldens.json"));
    goldens_ = json::parse(in);
    std::ofstream c(dir_ / "corpus.jsonl");
    for (size_t i = 0; i < 6; ++i) {
      c << json{{"_id", "g" + std::to_string(i)}, {"text", goldens_["cases"][i]["text"]}}.dump() << "\n";
      if (i == 2) c << "{broken json\n";
      if (i == 4) c << json{{"_id", "empty"}, {"text", "  "}}.dump() << "\n";
    }
    std::ofstream(dir_ / "extra.txt") << "one more line\nand another\n";
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }
  void TearDown() override {
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
  }
  std::string embed(const std::string& launcher, const std::string& out, const std::string& extra) const {
    return launcher + " " + FLURRY_EMBED_BIN + " --device cpu --model " + minilm_dir() + " --id-field _id --chunk-rows 3 " +
           "--output-dir " + (dir_ / out).string() + " " + extra + " " + (dir_ / "corpus.jsonl").string() + " " +
           (dir_ / "extra.txt").string() + " 2>&1";
  }
  // 10 rows: g0 g1 g2 <broken> g3 g4 <empty> g5, then two lines of extra.txt.
  void check(const std::string& out) const {
    const NpyMatrix m = read_npy((dir_ / out / "embeddings.npy").string());
    ASSERT_EQ(m.rows, 10);
    ASSERT_EQ(m.cols, 384);
    std::vector<json> ids;
    std::ifstream in(dir_ / out / "ids.jsonl");
    for (std::string l; std::getline(in, l);) ids.push_back(json::parse(l));
    ASSERT_EQ(ids.size(), 10u);
    const std::vector<std::string> want_ids = {"g0", "g1", "g2", "", "g3", "g4", "", "g5", "", ""};
    for (size_t r = 0; r < ids.size(); ++r) {
      EXPECT_EQ(ids[r]["row"], r);
      const bool bad = r == 3 || r == 6;
      EXPECT_EQ(ids[r]["status"], bad ? "error" : "ok") << ids[r].dump();
      if (!want_ids[r].empty()) {
        EXPECT_EQ(ids[r]["id"], want_ids[r]);
      }
      double norm = 0;
      for (int64_t j = 0; j < 384; ++j) norm += std::pow(m.data[r * 384 + static_cast<size_t>(j)], 2);
      EXPECT_NEAR(norm, bad ? 0.0 : 1.0, 1e-5) << "row " << r;
    }
    EXPECT_EQ(ids[8]["id"], (dir_ / "extra.txt").string() + ":0");
    // The golden sentences' vectors are sentence-transformers'.
    const std::vector<size_t> golden_row = {0, 1, 2, 4, 5, 7};
    for (size_t i = 0; i < golden_row.size(); ++i) {
      const auto want = goldens_["cases"][i]["embedding"].get<std::vector<float>>();
      for (size_t j = 0; j < 384; ++j) ASSERT_NEAR(m.data[golden_row[i] * 384 + j], want[j], 2e-5) << "case " << i;
    }
    std::ifstream min(dir_ / out / "manifest.json");
    const json man = json::parse(min);
    EXPECT_EQ(man["rows"], 10);
    EXPECT_EQ(man["row_errors"], 2);
    EXPECT_EQ(man["embedding"]["dim"], 384);
  }
  fs::path dir_;
  json goldens_;
};

TEST_F(EmbedCli, AloneThenResume) {
  auto run = test::run_command(embed("", "one", "--vectors-jsonl"), 300);
  EXPECT_EQ(run.exit_code, 1) << "two rows are errors\n" << run.output;
  check("one");
  expect_vectors_jsonl_equal_npy(dir_ / "one");
  run = test::run_command(embed("", "one", "--resume --vectors-jsonl"), 300);
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("4 of 4 inputs already have a record"), std::string::npos) << run.output;
  check("one");
  expect_vectors_jsonl_equal_npy(dir_ / "one");
}

TEST_F(EmbedCli, TwoRanksUnderMpirunAndFloat16) {
  if (std::string(FLURRY_MPIEXEC).empty()) GTEST_SKIP() << "mpirun not found";
  const std::string mpirun = std::string(FLURRY_MPIEXEC) +
                             " --oversubscribe --bind-to none --mca btl self,vader --mca oob_tcp_if_include lo -np 2";
  auto run = test::run_command(embed(mpirun, "two", "--threads 1"), 300);
  EXPECT_EQ(run.exit_code, 1) << run.output;
  check("two");
  EXPECT_FALSE(fs::exists(dir_ / "two" / "vectors.jsonl")) << "written only when asked";
  run = test::run_command(embed("", "half", "--dtype float16 --vectors-jsonl"), 300);
  expect_vectors_jsonl_equal_npy(dir_ / "half");
  const NpyMatrix h = read_npy((dir_ / "half" / "embeddings.npy").string());
  EXPECT_EQ(h.dtype, NpyDtype::kFloat16);
  const NpyMatrix f = read_npy((dir_ / "two" / "embeddings.npy").string());
  ASSERT_EQ(h.data.size(), f.data.size());
  for (size_t i = 0; i < f.data.size(); ++i) ASSERT_NEAR(h.data[i], f.data[i], 1e-3);
}

// --chunk-tokens: a long passage becomes overlapping windows, one row each with its document id and
// token span; short texts stay one row.
TEST_F(EmbedCli, LongDocumentsAsOverlappingWindows) {
  const std::string long_text = goldens_["cases"][14]["text"];  // ~360 tokens
  std::ofstream(dir_ / "docs.jsonl") << json{{"_id", "long"}, {"text", long_text}}.dump() << "\n"
                                     << json{{"_id", "short"}, {"text", "A short one."}}.dump() << "\n";
  const auto run = test::run_command(std::string(FLURRY_EMBED_BIN) + " --device cpu --model " + minilm_dir() +
                                         " --id-field _id --chunk-tokens 128 --chunk-overlap 32 --output-dir " +
                                         (dir_ / "chunks").string() + " " + (dir_ / "docs.jsonl").string() + " 2>&1",
                                     300);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::vector<json> rows;
  std::ifstream in(dir_ / "chunks" / "ids.jsonl");
  for (std::string l; std::getline(in, l);) rows.push_back(json::parse(l));
  const size_t body = goldens_["cases"][14]["ids"].size() - 2;  // the golden is truncated at 256
  ASSERT_GE(rows.size(), 4u);
  int64_t prev_end = -1;
  size_t n_long = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i]["row"], i);
    EXPECT_EQ(rows[i]["status"], "ok");
    if (rows[i]["doc_id"] != "long") continue;
    ++n_long;
    const int64_t b = rows[i]["token_start"], e = rows[i]["token_end"];
    EXPECT_EQ(rows[i]["id"], "long#" + std::to_string(n_long - 1));
    EXPECT_LE(e - b, 126);
    EXPECT_LE(rows[i]["tokens"].get<int64_t>(), 128);
    if (prev_end >= 0) {
      EXPECT_EQ(prev_end - b, 32) << "consecutive windows share 32 tokens";
    } else {
      EXPECT_EQ(b, 0);
    }
    prev_end = e;
  }
  EXPECT_GT(static_cast<size_t>(prev_end), body) << "the windows reach past the 256-token truncation";
  EXPECT_EQ(rows.back()["doc_id"], "short");
  EXPECT_EQ(rows.back()["id"], "short#0");
  const NpyMatrix m = read_npy((dir_ / "chunks" / "embeddings.npy").string());
  EXPECT_EQ(m.rows, static_cast<int64_t>(rows.size()));
  // The first window starts like the truncated text: the same 126 first tokens, but not the same vector.
  double dot = 0;
  const auto whole = goldens_["cases"][14]["embedding"].get<std::vector<float>>();
  for (size_t j = 0; j < 384; ++j) dot += m.data[j] * whole[j];
  EXPECT_GT(dot, 0.8);
  EXPECT_LT(dot, 0.99999);
}

TEST_F(EmbedCli, SearchAndBeirEval) {
  // A tiny BEIR folder: three documents, two queries, each with one relevant document.
  const fs::path beir = dir_ / "beir";
  fs::create_directories(beir / "qrels");
  std::ofstream(beir / "corpus.jsonl")
      << json{{"_id", "paris"}, {"title", "Paris"}, {"text", "Paris is the capital and largest city of France."}}.dump() << "\n"
      << json{{"_id", "horse"}, {"title", "Horse"}, {"text", "The horse is a domesticated, one-toed, hoofed mammal."}}.dump() << "\n"
      << json{{"_id", "gpu"}, {"title", "GPU"}, {"text", "A graphics processing unit accelerates matrix multiplication."}}.dump() << "\n";
  std::ofstream(beir / "queries.jsonl") << json{{"_id", "q1"}, {"text", "What is the capital of France?"}}.dump() << "\n"
                                        << json{{"_id", "q2"}, {"text", "Which animal has hooves?"}}.dump() << "\n";
  std::ofstream(beir / "qrels" / "test.tsv") << "query-id\tcorpus-id\tscore\nq1\tparis\t1\nq2\thorse\t1\n";
  auto run = test::run_command(std::string(FLURRY_EMBED_BIN) + " eval --device cpu --model " + minilm_dir() +
                                   " --beir " + beir.string() + " --output-dir " + (dir_ / "eval").string() + " 2>&1",
                               300);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream ein(dir_ / "eval" / "eval.json");
  const json e = json::parse(ein);
  EXPECT_EQ(e["queries"], 2);
  EXPECT_EQ(e["hit@1"], 1.0) << e.dump();
  EXPECT_EQ(e["recall@5"], 1.0);
  EXPECT_EQ(e["ndcg@10"], 1.0);
  EXPECT_EQ(e["query_prompt"], "");  // all-MiniLM-L6-v2 names no default prompt
  // The evaluator's prompts (sentence-transformers' query_prompt / corpus_prompt): recorded in
  // eval.json and in each side's manifest; a prompt name the checkpoint lacks is refused.
  run = test::run_command(std::string(FLURRY_EMBED_BIN) + " eval --device cpu --model " + minilm_dir() + " --beir " +
                              beir.string() + " --query-prompt 'query: ' --corpus-prompt 'passage: ' --output-dir " +
                              (dir_ / "eval-prompts").string() + " 2>&1",
                          300);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream pin(dir_ / "eval-prompts" / "eval.json");
  const json pe = json::parse(pin);
  EXPECT_EQ(pe["query_prompt"], "query: ");
  EXPECT_EQ(pe["corpus_prompt"], "passage: ");
  EXPECT_EQ(pe["hit@1"], 1.0) << pe.dump();
  std::ifstream qm(dir_ / "eval-prompts" / "queries" / "manifest.json");
  EXPECT_EQ(json::parse(qm)["embedding"]["prompt"], "query: ");
  run = test::run_command(std::string(FLURRY_EMBED_BIN) + " --device cpu --model " + minilm_dir() +
                              " --prompt-name query --output-dir " + (dir_ / "bad-prompt").string() + " " +
                              (beir / "corpus.jsonl").string() + " 2>&1",
                          300);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("no prompt named 'query'"), std::string::npos) << run.output;
  // search against the embedded corpus: the same answers.
  std::ofstream(dir_ / "q.txt") << "capital city of France\n";
  run = test::run_command(std::string(FLURRY_EMBED_BIN) + " search --device cpu --model " + minilm_dir() + " --corpus " +
                              (dir_ / "eval" / "corpus").string() + " --top-k 2 --output-dir " + (dir_ / "s").string() +
                              " " + (dir_ / "q.txt").string() + " 2>&1",
                          300);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream sin(dir_ / "s" / "search.jsonl");
  std::string line;
  ASSERT_TRUE(static_cast<bool>(std::getline(sin, line)));
  const json s = json::parse(line);
  ASSERT_EQ(s["results"].size(), 2u);
  EXPECT_EQ(s["results"][0]["id"], "paris");
}

// --vectors-jsonl with the committed random head-dim-64 checkpoint (runs without `make models`),
// under two ranks when mpirun is there: rank 0 writes the file once, in input order.
TEST(EmbedCliVectors, VectorsJsonlEqualsTheNpyRows) {
  const fs::path dir = test::fresh_temp_dir("embed-vectors");
  {
    std::ofstream c(dir / "in.jsonl");
    for (int i = 0; i < 7; ++i) {
      if (i == 3) {
        c << json{{"_id", "missing"}}.dump() << "\n";  // no text field: an error row
      } else {
        c << json{{"_id", "d" + std::to_string(i)}, {"text", "the quick brown fox number " + std::to_string(i)}}.dump()
          << "\n";
      }
    }
  }
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const std::string launcher =
      std::string(FLURRY_MPIEXEC).empty()
          ? std::string()
          : std::string(FLURRY_MPIEXEC) + " --oversubscribe --bind-to none --mca btl self,vader --mca oob_tcp_if_include lo -np 2";
  const auto run = test::run_command(launcher + " " + FLURRY_EMBED_BIN + " --device cpu --threads 1 --model " +
                                         test::fixture_path("bert/random_h64") + " --id-field _id --chunk-rows 2 " +
                                         "--vectors-jsonl --output-dir " + (dir / "out").string() + " " +
                                         (dir / "in.jsonl").string() + " 2>&1",
                                     300);
  EXPECT_EQ(run.exit_code, 1) << "one row is an error\n" << run.output;
  expect_vectors_jsonl_equal_npy(dir / "out");
  std::ifstream vin(dir / "out" / "vectors.jsonl");
  std::vector<json> lines;
  for (std::string l; std::getline(vin, l);) lines.push_back(json::parse(l));
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(lines[0]["id"], "d0");
  EXPECT_EQ(lines[3]["status"], "error");
  EXPECT_EQ(lines[6]["id"], "d6");
  EXPECT_EQ(lines[6]["vector"].size(), 256u);
  if (!HasFailure()) fs::remove_all(dir);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `search` with the corpus sharded over 1, 2 and 3 ranks writes the same bytes. The corpus is a
// synthetic embed-run folder (embeddings.npy + ids.jsonl) of three search tiles and a tail, with
// exact duplicates of one row in other shards and tiles (ties, to the lower row) and error rows.
TEST_F(EmbedCli, SearchShardedOverRanksIsByteIdentical) {
  if (std::string(FLURRY_MPIEXEC).empty()) GTEST_SKIP() << "mpirun not found";
  const int64_t n = 5000, d = 384;
  std::mt19937_64 rng(20261201);
  std::normal_distribution<float> normal;
  std::vector<float> v(static_cast<size_t>(n * d));
  for (float& x : v) x = normal(rng);
  for (int64_t dup : {2100, 4000, 4990}) std::copy_n(v.begin() + 10 * d, d, v.begin() + dup * d);
  for (int64_t r = 0; r < n; ++r) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double{v[static_cast<size_t>(r * d + j)]} * v[static_cast<size_t>(r * d + j)];
    for (int64_t j = 0; j < d; ++j) v[static_cast<size_t>(r * d + j)] = static_cast<float>(v[static_cast<size_t>(r * d + j)] / std::sqrt(s));
  }
  const fs::path corpus = dir_ / "synth";
  fs::create_directories(corpus);
  {
    std::ofstream npy(corpus / "embeddings.npy", std::ios::binary);
    const std::string h = npy_header(NpyDtype::kFloat32, n, d);
    npy.write(h.data(), static_cast<std::streamsize>(h.size()));
    npy.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
    std::ofstream ids(corpus / "ids.jsonl");
    for (int64_t r = 0; r < n; ++r) {
      ids << json{{"row", r}, {"id", "c" + std::to_string(r)}, {"status", r % 211 == 7 ? "error" : "ok"}}.dump() << "\n";
    }
  }
  std::ofstream(dir_ / "q.txt") << "capital city of France\nhow do I copy a file\nmatrix multiplication on GPUs\n";
  const std::string mpirun = std::string(FLURRY_MPIEXEC) + " --oversubscribe --bind-to none --mca btl self,vader --mca oob_tcp_if_include lo -np ";
  auto search = [&](const std::string& launcher, const std::string& out) {
    const auto run = test::run_command(launcher + " " + FLURRY_EMBED_BIN + " search --device cpu --threads 1 --model " + minilm_dir() +
                                           " --corpus " + corpus.string() + " --top-k 25 --output-dir " + (dir_ / out).string() +
                                           " " + (dir_ / "q.txt").string() + " 2>&1",
                                       300);
    EXPECT_EQ(run.exit_code, 0) << run.output;
    return slurp(dir_ / out / "search.jsonl");
  };
  const std::string one = search("", "s1");
  std::istringstream lines(one);
  int n_lines = 0;
  for (std::string line; std::getline(lines, line); ++n_lines) {
    const json j = json::parse(line);
    ASSERT_EQ(j["results"].size(), 25u);
    for (const auto& r : j["results"]) EXPECT_NE(r["row"].get<int64_t>() % 211, 7) << "an error row was returned";
  }
  EXPECT_EQ(n_lines, 3);
  EXPECT_EQ(search(mpirun + "2", "s2"), one);
  EXPECT_EQ(search(mpirun + "3", "s3"), one);
  // Written best first; equal scores in row order.
  const json first = json::parse(one.substr(0, one.find('\n')));
  for (size_t i = 1; i < first["results"].size(); ++i) {
    const float a = first["results"][i - 1]["score"], b = first["results"][i]["score"];
    EXPECT_GE(a, b);
    if (a == b) {
      EXPECT_LT(first["results"][i - 1]["row"].get<int64_t>(), first["results"][i]["row"].get<int64_t>());
    }
  }
}

// flurry-embed eval on the pydoc BEIR set (tests/fixtures/retrieval/pydoc: real text, judgements
// written by hand) gives the metrics pytrec_eval computes from the same embeddings
// (make_pydoc_golden.py), and those of sentence-transformers' own embeddings (the same, to 1e-6,
// on this set: no two documents are close enough in score for the small vector differences to
// swap them).
TEST_F(EmbedCli, PydocEvalMatchesPytrecEval) {
  const auto run = test::run_command(std::string(FLURRY_EMBED_BIN) + " eval --device cpu --model " + minilm_dir() +
                                         " --beir " + test::fixture_path("retrieval/pydoc") + " --output-dir " +
                                         (dir_ / "pydoc").string() + " 2>&1",
                                     300);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream ein(dir_ / "pydoc" / "eval.json");
  const json e = json::parse(ein);
  std::ifstream gin(test::fixture_path("retrieval/pydoc_metrics.json"));
  const json g = json::parse(gin);
  EXPECT_EQ(e["queries"], g["flurry_embeddings"]["queries"]);
  EXPECT_EQ(e["corpus_rows"], 326);
  for (const char* m : {"recall@1", "recall@5", "recall@10", "recall@100", "mrr@10", "ndcg@10", "hit@1"}) {
    EXPECT_NEAR(e[m].get<double>(), g["flurry_embeddings"][m].get<double>(), 1e-6) << m;
    EXPECT_NEAR(e[m].get<double>(), g["sentence_transformers_embeddings"][m].get<double>(), 1e-6) << m;
  }
  EXPECT_GT(e["ndcg@10"].get<double>(), 0.5) << "the set is easy enough for MiniLM to mean something";
}

}  // namespace
}  // namespace flurry
