// flurry-wer: word error rate between reference and hypothesis transcripts, after Whisper's
// English normalisation (or the basic one, or none).
//
//   flurry-wer REF.txt HYP.txt                 one utterance per line, lines paired
//   flurry-wer --hyp-jsonl results.jsonl REF.tsv  REF.tsv lines "id<TAB>text"; hypotheses by id
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "io/text_normalizer.h"
#include "io/wer.h"
#include "runtime/check.h"

namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) FLURRY_FAIL(path << ": cannot open");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flurry-wer: word error rate with Whisper's English text normalisation"};
  std::string ref_path, hyp_path, hyp_jsonl, normalizer = "english", spelling;
  bool verbose = false;
  app.add_option("reference", ref_path, "reference transcripts: one per line, or 'id<TAB>text' lines with --hyp-jsonl")
      ->required();
  app.add_option("hypothesis", hyp_path, "hypothesis transcripts, one per line, paired with the reference lines");
  app.add_option("--hyp-jsonl", hyp_jsonl, "take hypotheses from a flurry results.jsonl, matched by id");
  app.add_option("--normalizer", normalizer, "english (Whisper's EnglishTextNormalizer), basic, or none")
      ->check(CLI::IsMember({"english", "basic", "none"}));
  app.add_option("--spelling", spelling,
                 "British->American spelling map (JSON); default: models-cache/openai-whisper/english.json if present");
  app.add_flag("-v,--verbose", verbose, "print every pair with its normalised text and errors");
  CLI11_PARSE(app, argc, argv);

  try {
    if (spelling.empty()) {
      const std::string fallback = "models-cache/openai-whisper/english.json";
      if (std::ifstream(fallback)) spelling = fallback;
    }
    const flurry::EnglishTextNormalizer english(normalizer == "english" ? spelling : "");
    auto norm = [&](const std::string& s) {
      if (normalizer == "english") return english(s);
      if (normalizer == "basic") return flurry::basic_normalize(s);
      return s;
    };
    std::vector<std::pair<std::string, std::string>> pairs;  // (ref, hyp)
    const std::vector<std::string> refs = read_lines(ref_path);
    if (!hyp_jsonl.empty()) {
      std::map<std::string, std::string> hyp_by_id;
      for (const std::string& line : read_lines(hyp_jsonl)) {
        if (line.empty()) continue;
        const auto j = flurry::Json::parse(line);
        hyp_by_id[j.value("id", "")] = j.value("text", "");
      }
      for (const std::string& line : refs) {
        const size_t tab = line.find('\t');
        if (tab == std::string::npos) FLURRY_FAIL(ref_path << ": expected 'id<TAB>text', got: " << line);
        const std::string id = line.substr(0, tab);
        auto it = hyp_by_id.find(id);
        if (it == hyp_by_id.end()) FLURRY_FAIL(hyp_jsonl << ": no hypothesis for id " << id);
        pairs.emplace_back(line.substr(tab + 1), it->second);
      }
    } else {
      if (hyp_path.empty()) FLURRY_FAIL("give a hypothesis file or --hyp-jsonl");
      const std::vector<std::string> hyps = read_lines(hyp_path);
      if (hyps.size() != refs.size()) {
        FLURRY_FAIL(ref_path << " has " << refs.size() << " lines but " << hyp_path << " has " << hyps.size());
      }
      for (size_t i = 0; i < refs.size(); ++i) pairs.emplace_back(refs[i], hyps[i]);
    }
    flurry::WerCounts total;
    for (const auto& [ref, hyp] : pairs) {
      const std::string r = norm(ref), h = norm(hyp);
      const flurry::WerCounts c = flurry::word_errors(r, h);
      total += c;
      if (verbose) {
        std::printf("REF: %s\nHYP: %s\n  errors %lld / %lld words\n", r.c_str(), h.c_str(),
                    static_cast<long long>(c.errors()), static_cast<long long>(c.ref_words));
      }
    }
    std::printf("WER %.4f (%lld substitutions, %lld deletions, %lld insertions, %lld reference words, %zu pairs)\n",
                total.wer(), static_cast<long long>(total.substitutions),
                static_cast<long long>(total.deletions), static_cast<long long>(total.insertions),
                static_cast<long long>(total.ref_words), pairs.size());
    if (normalizer == "english" && !english.has_spelling_map()) {
      std::fprintf(stderr, "flurry-wer: note: no spelling map (run tools/fetch_openai_whisper.sh)\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flurry-wer: %s\n", e.what());
    return 2;
  }
  return 0;
}
