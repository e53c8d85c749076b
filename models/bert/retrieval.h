// Retrieval evaluation as BEIR reports it (pytrec_eval underneath): for each query with judgements,
// recall@k, MRR@k and nDCG@k over the ranked documents, then the mean over those queries; plus
// hit@1 (the top document is relevant), the check the embedding seed ran. Exact top-k by cosine
// (normalised vectors: inner product) is the CPU reference of the GPU search.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace flurry::bert {

// qrels[query id][doc id] = relevance (BEIR: relevant when > 0).
using Qrels = std::map<std::string, std::map<std::string, int>>;

// Reads a BEIR qrels TSV ("query-id<TAB>corpus-id<TAB>score", header line optional). Throws
// flurry::Error naming the file and line for a malformed one.
Qrels read_qrels_tsv(const std::string& path);

struct Ranked {
  std::string doc;
  float score = 0;
};
// results[query id] = documents best first (as many as were retrieved).
using RunResults = std::map<std::string, std::vector<Ranked>>;

struct RetrievalMetrics {
  std::map<int, double> recall, ndcg, mrr;  // by cut-off k
  double hit_at_1 = 0;
  int64_t queries = 0;  // judged queries evaluated
};

// Means over the queries that have judgements with a relevant document; a judged query with no
// results counts as zeros. Cut-offs `ks` (e.g. 1, 5, 10, 100); gains are linear in relevance and
// ranks are discounted by log2(rank + 1), as pytrec_eval's ndcg_cut.
RetrievalMetrics evaluate_retrieval(const Qrels& qrels, const RunResults& results, const std::vector<int>& ks);

// Exact top-k by inner product: queries [nq, d] x corpus [nc, d] (row-major fp32), best first,
// ties to the lower corpus index. ids/scores: [nq, k] (k clipped to nc; missing slots -1 / -inf).
// The CPU search of models/bert/search.h over one shard holding the whole corpus.
void exact_topk_ip(const float* queries, int64_t nq, const float* corpus, int64_t nc, int64_t d, int k,
                   int64_t* ids, float* scores);

}  // namespace flurry::bert
