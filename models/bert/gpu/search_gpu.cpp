#include "models/bert/gpu/search_gpu.h"

#include <algorithm>
#include <utility>

#include "kernels/retrieval_topk.cuh"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/gemm_gpu.h"
#include "runtime/cuda/gemm_lt.h"
#include "runtime/cuda/stream.h"

namespace flurry::bert {

namespace {

// An owning device allocation, made once at start-up.
class DeviceMem {
 public:
  explicit DeviceMem(size_t bytes) { CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(bytes, 1))); }
  ~DeviceMem() { (void)cudaFree(p_); }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

}  // namespace

struct GpuTileSearcher::Impl {
  int64_t nq, d;
  int k;
  int64_t chunk;
  Stream stream;
  GemmLt lt;
  DeviceMem queries, tile, valid, scores, ws;
  DeviceMem list_scores[2], list_rows[2];
  int cur = 0;  // which of the two lists holds the running top-k

  Impl(int64_t n_queries, int64_t dim, int k_best)
      : nq(n_queries),
        d(dim),
        k(k_best),
        chunk(std::max<int64_t>(1, std::min(n_queries, kQueryChunk))),
        queries(static_cast<size_t>(n_queries * dim) * sizeof(float)),
        tile(static_cast<size_t>(kSearchTile * dim) * sizeof(float)),
        valid(static_cast<size_t>(kSearchTile)),
        scores(static_cast<size_t>(chunk * kSearchTile) * sizeof(float)),
        ws(GemmLt::kWorkspaceBytes),
        list_scores{DeviceMem(static_cast<size_t>(n_queries * k_best) * sizeof(float)),
                    DeviceMem(static_cast<size_t>(n_queries * k_best) * sizeof(float))},
        list_rows{DeviceMem(static_cast<size_t>(n_queries * k_best) * sizeof(int64_t)),
                  DeviceMem(static_cast<size_t>(n_queries * k_best) * sizeof(int64_t))} {}
};

GpuTileSearcher::GpuTileSearcher(const float* queries, int64_t nq, int64_t d, int k) {
  FLURRY_CHECK(nq >= 0 && d > 0 && k >= 1 && k <= kRetrievalTopKMax,
               "GPU search: " << nq << " queries of dim " << d << ", k " << k << " (at most " << kRetrievalTopKMax << ")");
  static_assert(kSearchTile <= kRetrievalTileMaxCols, "a search tile must fit the merge kernel");
  impl_ = std::make_unique<Impl>(nq, d, k);
  Impl& m = *impl_;
  if (nq == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(m.queries.as<float>(), queries, static_cast<size_t>(nq * d) * sizeof(float),
                             cudaMemcpyHostToDevice, m.stream.get()));
  retrieval_topk_clear(m.list_scores[0].as<float>(), m.list_rows[0].as<int64_t>(), nq, k, m.stream.get());
}

GpuTileSearcher::~GpuTileSearcher() = default;

void GpuTileSearcher::add_tile(int64_t base, const float* tile, const uint8_t* valid) {
  Impl& m = *impl_;
  if (m.nq == 0) return;
  cudaStream_t s = m.stream.get();
  // From pageable memory: returns once the host buffer may be reused, so the caller reads the next
  // tile while this one is scored.
  CUDA_CHECK(cudaMemcpyAsync(m.tile.as<float>(), tile, static_cast<size_t>(kSearchTile * m.d) * sizeof(float),
                             cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaMemcpyAsync(m.valid.as<uint8_t>(), valid, static_cast<size_t>(kSearchTile), cudaMemcpyHostToDevice, s));
  const int next = 1 - m.cur;
  for (int64_t q0 = 0; q0 < m.nq; q0 += m.chunk) {
    const int64_t nqc = std::min(m.chunk, m.nq - q0);
    // scores [nqc, T] = queries[q0 : q0 + nqc] [nqc, d] x tile [T, d]^T
    GemmArgs g = gemm_dense(nqc, kSearchTile, m.d, false, true, DType::F32, DType::F32);
    g.a = m.queries.as<float>() + q0 * m.d;
    g.b = m.tile.as<float>();
    g.c = m.scores.as<float>();
    gemm_gpu(m.lt, g, m.ws.as<void>(), GemmLt::kWorkspaceBytes, s);
    RetrievalTopkArgs a;
    a.scores = m.scores.as<float>();
    a.ld_scores = kSearchTile;
    a.valid = m.valid.as<uint8_t>();
    a.rows = nqc;
    a.cols = kSearchTile;
    a.base = base;
    a.k = m.k;
    a.in_scores = m.list_scores[m.cur].as<float>() + q0 * m.k;
    a.in_rows = m.list_rows[m.cur].as<int64_t>() + q0 * m.k;
    a.out_scores = m.list_scores[next].as<float>() + q0 * m.k;
    a.out_rows = m.list_rows[next].as<int64_t>() + q0 * m.k;
    retrieval_topk_merge(a, s);
  }
  m.cur = next;
}

TopkLists GpuTileSearcher::result() {
  Impl& m = *impl_;
  TopkLists out(m.nq, m.k);
  const size_t n = static_cast<size_t>(m.nq * m.k);
  if (n == 0) return out;
  CUDA_CHECK(cudaMemcpyAsync(out.scores.data(), m.list_scores[m.cur].as<float>(), n * sizeof(float),
                             cudaMemcpyDeviceToHost, m.stream.get()));
  CUDA_CHECK(cudaMemcpyAsync(out.rows.data(), m.list_rows[m.cur].as<int64_t>(), n * sizeof(int64_t),
                             cudaMemcpyDeviceToHost, m.stream.get()));
  CUDA_CHECK(cudaStreamSynchronize(m.stream.get()));
  return out;
}

}  // namespace flurry::bert
