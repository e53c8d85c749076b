// flurry-embed: sentence embeddings with a BERT-family encoder in its Hugging Face /
// sentence-transformers folder, alone or as one rank of an mpirun/srun job.
//
//   flurry-embed [embed] --model DIR corpus.jsonl --text-field text --id-field _id --output-dir out
//   flurry-embed search --corpus out --top-k 10 --output-dir q queries.txt
//   flurry-embed eval --beir DIR --split test --output-dir eval
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/npy.h"
#include "models/bert/app/embed_job.h"
#include "models/bert/app/sharded_search.h"
#ifdef FLURRY_EMBED_GPU
#include "models/bert/app/gpu_encoder.h"
#endif
#include "models/bert/retrieval.h"
#include "runtime/app/app.h"
#include "runtime/check.h"
#include "runtime/dist/records.h"
#include "runtime/log.h"

namespace fs = std::filesystem;

namespace {

using namespace flurry;

struct Flags {
  std::string mode = "embed";
  std::string model, input_format = "auto", pooling, dtype = "float32", gpu_dtype = "float16";
  int64_t max_batch_tokens = 0;
  bert::EmbedOptions embed;
  TextSpec text;
  bool normalize = false, no_normalize = false, no_cuda_graphs = false;
  // search / eval
  std::string corpus, beir, split = "test";
  int top_k = 10;
  // Prompts (sentence-transformers' prompt / prompt_name): the texts this run embeds, and in eval
  // the queries' and the corpus's. A prompt option counts as given even when empty.
  std::string prompt, prompt_name, query_prompt, query_prompt_name, corpus_prompt, corpus_prompt_name;
  CLI::Option *prompt_opt = nullptr, *query_prompt_opt = nullptr, *corpus_prompt_opt = nullptr;
};

std::optional<std::string> given(const CLI::Option* opt, const std::string& value) {
  return opt != nullptr && opt->count() > 0 ? std::optional<std::string>(value) : std::nullopt;
}

// "flurry-embed eval ..." / "search" / "embed": the first word picks the job.
std::vector<std::string> mode_word(std::vector<std::string> args) {
  if (!args.empty() && (args[0] == "embed" || args[0] == "search" || args[0] == "eval")) {
    args[0] = "--mode=" + args[0];
  }
  return args;
}

void add_flags(CLI::App& cli, Flags& f) {
  cli.add_option("--mode", f.mode, "embed (default), search or eval; also given as the first word")
      ->check(CLI::IsMember({"embed", "search", "eval"}));
  cli.add_option("--model", f.model,
                 "checkpoint folder (config.json, model.safetensors, tokenizer, sentence-transformers files); "
                 "default: $FLURRY_EMBED_MODEL or the all-MiniLM-L6-v2 `make models` installs");
  cli.add_option("--input-format", f.input_format, "auto (by extension), lines, jsonl, csv, tsv, file (one document per file)");
  cli.add_option("--text-field", f.text.text_field, "JSONL key or CSV/TSV column holding the text");
  cli.add_option("--id-field", f.text.id_field, "JSONL key or column holding the row id; default: <file>:<row>");
  cli.add_option("--title-field", f.text.title_field, "optional JSONL key or column prepended to the text (BEIR)");
  cli.add_option("--max-seq-length,--max_seq_length", f.embed.max_seq_length,
                 "tokens per text, [CLS] and [SEP] included; 0: the checkpoint's (sentence_bert_config.json)");
  cli.add_flag("--normalize", f.normalize, "L2-normalise the vectors (default: as modules.json says)");
  cli.add_flag("--no-normalize", f.no_normalize, "do not L2-normalise the vectors");
  cli.add_option("--dtype", f.dtype, "embeddings.npy element type")->check(CLI::IsMember({"float32", "float16"}));
  cli.add_option("--gpu-dtype", f.gpu_dtype, "cuda: weights and activations (fp32 accumulation either way)")
      ->check(CLI::IsMember({"float16", "bfloat16"}));
  cli.add_option("--max-batch-tokens", f.max_batch_tokens,
                 "cuda: tokens per batch; 0: as many as --max-gpu-memory (or the free memory) allows, at most 65536")
      ->check(CLI::NonNegativeNumber);
  cli.add_option("--reader-threads", f.embed.reader_threads,
                 "threads that read and tokenise work items ahead of the encoder; 0: min(4, cores - 1)")
      ->check(CLI::NonNegativeNumber);
  cli.add_flag("--no-cuda-graphs", f.no_cuda_graphs,
               "cuda: launch every batch's kernels one by one instead of replaying the CUDA graph of its shape "
               "(the same vectors; for profiling and comparison)");
  cli.add_option("--chunk-rows", f.embed.rows_per_chunk, "rows per work unit handed to a rank")->check(CLI::PositiveNumber);
  cli.add_option("--chunk-tokens", f.embed.chunk_tokens,
                 "split long texts into windows of this many tokens ([CLS]/[SEP] included), one row each, "
                 "keeping doc_id and token offsets in ids.jsonl; 0: one row per text, truncated at max_seq_length")
      ->check(CLI::NonNegativeNumber);
  cli.add_option("--chunk-overlap", f.embed.chunk_overlap, "tokens shared by consecutive windows of --chunk-tokens")
      ->check(CLI::NonNegativeNumber);
  cli.add_flag("--vectors-jsonl", f.embed.vectors_jsonl,
               "embed: also write vectors.jsonl, one {row, id, status, vector} line per row in input order "
               "(vector null for an error row)");
  cli.add_option("--corpus", f.corpus, "search: the output folder of an earlier embed run");
  cli.add_option("--top-k", f.top_k, "search/eval: documents per query (eval: at least 100; cuda: at most 1024)")
      ->check(CLI::PositiveNumber);
  cli.add_option("--beir", f.beir, "eval: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)");
  cli.add_option("--split", f.split, "eval: the qrels split");
  f.prompt_opt = cli.add_option("--prompt", f.prompt,
                                "embed/search: text prepended to every text before tokenization, as "
                                "sentence-transformers' encode(prompt=...); given empty: no prompt even where the "
                                "checkpoint has a default one");
  cli.add_option("--prompt-name", f.prompt_name,
                 "embed/search: a prompt of the checkpoint's config_sentence_transformers.json, e.g. query; "
                 "default: its default_prompt_name, if any");
  f.query_prompt_opt = cli.add_option("--query-prompt", f.query_prompt, "eval: --prompt for the queries");
  cli.add_option("--query-prompt-name", f.query_prompt_name, "eval: --prompt-name for the queries");
  f.corpus_prompt_opt = cli.add_option("--corpus-prompt", f.corpus_prompt, "eval: --prompt for the corpus");
  cli.add_option("--corpus-prompt-name", f.corpus_prompt_name, "eval: --prompt-name for the corpus");
}

std::string default_model(const char* argv0) {
  if (const char* env = std::getenv("FLURRY_EMBED_MODEL")) return env;
  std::vector<fs::path> roots = {fs::current_path()};
  std::error_code ec;
  const fs::path exe = fs::canonical(argv0, ec);
  if (!ec) roots.push_back(exe.parent_path().parent_path().parent_path());
  for (const fs::path& r : roots) {
    if (fs::exists(r / "models-cache" / "all-MiniLM-L6-v2" / "config.json", ec)) {
      return (r / "models-cache" / "all-MiniLM-L6-v2").string();
    }
  }
  return "";
}

int run_eval(app::AppContext& app, const bert::EmbedAssets& assets, Flags& f, std::unique_ptr<bert::Encoder>& encoder,
             StageTimers* timers) {
  bert::Encoder& enc = *encoder;
  FLURRY_CHECK(!f.beir.empty(), "eval needs --beir DIR");
  const fs::path dir(f.beir);
  const std::string qrels_path = (dir / "qrels" / (f.split + ".tsv")).string();
  FLURRY_CHECK(fs::exists(dir / "corpus.jsonl") && fs::exists(dir / "queries.jsonl") && fs::exists(qrels_path),
               f.beir << ": a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/" << f.split << ".tsv");
  const std::string out = app.runner.output_dir;
  // Documents as sentence-transformers' BEIR evaluator builds them: title + " " + text.
  TextSpec docs;
  docs.format = TextFormat::kJsonl;
  docs.id_field = "_id";
  docs.title_field = "title";
  TextSpec queries;
  queries.format = TextFormat::kJsonl;
  queries.id_field = "_id";
  // The prompts as sentence-transformers' InformationRetrievalEvaluator passes them to encode().
  bert::EmbedOptions corpus_opts = f.embed, query_opts = f.embed;
  corpus_opts.prompt = bert::resolve_prompt(assets.sentence, given(f.corpus_prompt_opt, f.corpus_prompt),
                                            f.corpus_prompt_name, "--corpus-prompt");
  query_opts.prompt = bert::resolve_prompt(assets.sentence, given(f.query_prompt_opt, f.query_prompt),
                                           f.query_prompt_name, "--query-prompt");
  int status = 0;
  app.runner.output_dir = out + "/corpus";
  status |= bert::run_embed(app, assets, corpus_opts, enc, {(dir / "corpus.jsonl").string()}, docs, timers);
  app.runner.output_dir = out + "/queries";
  status |= bert::run_embed(app, assets, query_opts, enc, {(dir / "queries.jsonl").string()}, queries, timers);
  encoder.reset();  // its device memory goes back before the search takes its own
  bert::ShardedSearchOptions so;
  so.k = std::max(f.top_k, 100);
  so.cuda = app.device == "cuda";
  bert::sharded_search(app.dist, out + "/corpus", out + "/queries", so, out + "/search.jsonl");
  if (!app.dist.is_root()) return status;
  // Back from search.jsonl to BEIR's run format.
  bert::RunResults run;
  std::ifstream in(out + "/search.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    auto& list = run[j["query_id"].get<std::string>()];
    for (const auto& r : j["results"]) list.push_back({r["id"].get<std::string>(), r["score"].get<float>()});
  }
  const bert::Qrels qrels = bert::read_qrels_tsv(qrels_path);
  const std::vector<int> ks = {1, 5, 10, 100};
  const bert::RetrievalMetrics m = bert::evaluate_retrieval(qrels, run, ks);
  nlohmann::ordered_json j;
  j["beir"] = f.beir;
  j["split"] = f.split;
  j["model"] = assets.dir;
  j["query_prompt"] = query_opts.prompt;
  j["corpus_prompt"] = corpus_opts.prompt;
  j["queries"] = m.queries;
  j["corpus_rows"] = read_npy_info(out + "/corpus/embeddings.npy").rows;
  for (int kk : ks) j["recall@" + std::to_string(kk)] = m.recall.at(kk);
  j["mrr@10"] = m.mrr.at(10);
  j["ndcg@10"] = m.ndcg.at(10);
  j["hit@1"] = m.hit_at_1;
  dist::write_file_atomic(out + "/eval.json", j.dump(2) + "\n");
  std::printf("%s\n", j.dump(2).c_str());
  return status;
}

int process(app::AppContext& app, Flags& f, const std::string& argv0) {
  if (f.model.empty()) f.model = default_model(argv0.c_str());
  FLURRY_CHECK(!f.model.empty(), "no --model given and no default checkpoint found: run `make models` "
                                 "(it installs all-MiniLM-L6-v2 under models-cache/) or pass --model DIR");
#ifndef FLURRY_EMBED_GPU
  FLURRY_CHECK(app.device == "cpu", "flurry-embed was built without the CUDA backend; use --device cpu");
#endif
  const bool cuda = app.device == "cuda";
  FLURRY_CHECK(!(f.normalize && f.no_normalize), "--normalize and --no-normalize together");
  f.embed.normalize = f.normalize ? 1 : (f.no_normalize ? 0 : -1);
  f.embed.fp16_output = f.dtype == "float16";
  f.text.format = parse_text_format(f.input_format);
  f.text.glob = app.inputs.glob == "*" ? "*.txt" : app.inputs.glob;
  StageTimers timers;
  std::optional<bert::EmbedAssets> assets;
  {
    ScopedStage st(&timers, "load");
    assets.emplace(bert::load_embed_assets(f.model, /*cpu_model=*/!cuda));
  }
  std::unique_ptr<bert::Encoder> encoder;
  if (cuda) {
#ifdef FLURRY_EMBED_GPU
    ScopedStage st(&timers, "load");
    bert::GpuEncoderOptions g;
    g.dtype = f.gpu_dtype == "bfloat16" ? DType::BF16 : DType::F16;
    g.max_batch = app.common.batch_size;
    g.max_tokens = f.max_batch_tokens;
    g.max_gpu_memory = app.max_gpu_bytes;
    g.use_graphs = !f.no_cuda_graphs;
    encoder = std::make_unique<bert::GpuEncoder>(*assets, f.embed, g, &timers);
#endif
  } else {
    encoder = std::make_unique<bert::CpuEncoder>(*assets, f.embed, &timers);
  }
  bert::Encoder& enc = *encoder;
  LOG_INFO("model " << f.model << ": " << assets->config.num_hidden_layers << " layers, dim " << enc.dim()
                    << ", pooling " << bert::pooling_name(assets->sentence.pooling) << ", normalize "
                    << (bert::effective_normalize(*assets, f.embed) ? "yes" : "no") << ", max_seq_length "
                    << bert::effective_max_len(*assets, f.embed) << "; device " << app.device);
  if (f.mode == "eval") {
    FLURRY_CHECK(f.prompt_opt->count() == 0 && f.prompt_name.empty(),
                 "eval takes --query-prompt(-name) and --corpus-prompt(-name), not --prompt(-name)");
    return run_eval(app, *assets, f, encoder, &timers);
  }
  FLURRY_CHECK(f.query_prompt_opt->count() == 0 && f.corpus_prompt_opt->count() == 0 && f.query_prompt_name.empty() &&
                   f.corpus_prompt_name.empty(),
               "--query-prompt(-name) and --corpus-prompt(-name) are for eval; use --prompt(-name)");
  f.embed.prompt = bert::resolve_prompt(assets->sentence, given(f.prompt_opt, f.prompt), f.prompt_name, "--prompt");
  std::vector<std::string> paths = app.inputs.paths;
  if (!app.inputs.input_list.empty()) {
    std::ifstream in(app.inputs.input_list);
    FLURRY_CHECK(in.good(), "cannot read input list " << app.inputs.input_list);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line[0] != '#') paths.push_back(line);
    }
  }
  if (f.mode == "search") FLURRY_CHECK(!f.corpus.empty(), "search needs --corpus DIR (an earlier embed run's output)");
  const int status = bert::run_embed(app, *assets, f.embed, enc, paths, f.text, &timers);
  if (f.mode == "search") {
    encoder.reset();  // its device memory goes back before the search takes its own
    bert::ShardedSearchOptions so;
    so.k = f.top_k;
    so.cuda = cuda;
    bert::sharded_search(app.dist, f.corpus, app.runner.output_dir, so, app.runner.output_dir + "/search.jsonl");
    if (app.dist.is_root()) LOG_INFO("top-" << f.top_k << " per query: " << app.runner.output_dir << "/search.jsonl");
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  app::AppSpec spec;
  spec.binary = "flurry-embed";
  spec.description = "sentence embeddings with BERT-family encoders (sentence-transformers folders), search and "
                     "BEIR retrieval evaluation";
  spec.batch_size_help =
      "cuda: at most this many texts per GPU batch (the token budget, from --max-batch-tokens or "
      "--max-gpu-memory, also bounds it); the CPU reference path encodes one at a time";
  spec.default_batch_size = 1024;
#ifdef FLURRY_EMBED_GPU
  spec.cuda_backend = true;
#endif
  spec.rewrite_args = mode_word;
  Flags f;
  spec.add_flags = [&](CLI::App& cli) { add_flags(cli, f); };
  const std::string argv0 = argv[0];
  return app::run_app(argc, argv, spec, [&](app::AppContext& a) { return process(a, f, argv0); });
}
