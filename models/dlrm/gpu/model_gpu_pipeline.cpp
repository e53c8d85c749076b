// DlrmGpu's passes: two staging slots, the copy streams around the model's stream, the CUDA graph
// of each bucket size, and the public entries that queue passes (model_gpu_impl.h has the scheme).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "kernels/dlrm/topk.cuh"
#include "models/dlrm/gpu/model_gpu.h"
#include "models/dlrm/gpu/model_gpu_impl.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry::dlrm {

int64_t DlrmGpu::Impl::bucket(int64_t m) const {
  if (!opt.use_graphs) return m;
  // Powers of two: at most log2(max_batch / 16) + 1 graphs per slot, and a ragged pass does at
  // most twice the work of its exact size (full passes, the common case, are not padded).
  int64_t b = 16;
  while (b < m) b <<= 1;
  return std::min(b, shape.max_batch);
}

void DlrmGpu::Impl::enqueue_inputs(int k, int64_t m, int64_t padded, int64_t nidx) {
  DlrmSlot& sl = slots[static_cast<size_t>(k)];
  const size_t es = dtype_size(opt.dtype);
  cudaStream_t c = *h2d;
  CUDA_CHECK(cudaMemcpyAsync(sl.dev.dense, sl.p_dense.data(), static_cast<size_t>(m * shape.dense_ld) * es,
                             cudaMemcpyHostToDevice, c));
  CUDA_CHECK(cudaMemcpyAsync(sl.dev.offsets, sl.p_offsets.data(),
                             static_cast<size_t>(shape.bags * padded + 1) * sizeof(int32_t), cudaMemcpyHostToDevice, c));
  if (nidx > 0) {
    CUDA_CHECK(cudaMemcpyAsync(sl.dev.indices, sl.p_indices.data(), static_cast<size_t>(nidx) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, c));
  }
  sl.h2d.record(c);
  stream->wait(sl.h2d);
}

void DlrmGpu::Impl::launch_pass(int64_t padded, int k) {
  if (!opt.use_graphs) {
    enqueue_pass(padded, k);
    return;
  }
  const std::pair<int64_t, int> key(padded, k);
  const auto it = graphs.find(key);
  if (it != graphs.end()) {
    it->second.launch(*stream);
    return;
  }
  // First pass of this size and slot: eagerly, so that cuBLASLt builds its plans (descriptors,
  // heuristic) and the kernels set their attributes outside any capture; then the same launches
  // are captured for the next passes. Inside the capture cuBLASLt only enqueues matmuls on the
  // arena's fixed workspace: nothing allocates or synchronises.
  enqueue_pass(padded, k);
  CudaGraph g;
  g.capture(*stream, [&] { enqueue_pass(padded, k); });
  graphs.emplace(key, std::move(g));
}

void DlrmGpu::Impl::retire(int k) {
  DlrmSlot& sl = slots[static_cast<size_t>(k)];
  if (!sl.queued && !sl.fenced) return;
  {
    ScopedStage st(timers, "dlrm_gpu");
    sl.d2h.synchronize();
  }
  if (sl.queued) std::memcpy(sl.dst, sl.p_logits.data(), static_cast<size_t>(sl.m) * sizeof(float));
  sl.queued = false;
  sl.fenced = false;
}

void DlrmGpu::Impl::drain() {
  // next_slot holds the older pass.
  for (int e = 0; e < kSlots; ++e) retire((next_slot + e) % kSlots);
}

void DlrmGpu::forward(const DlrmBatch& batch, float* host_logits) {
  forward_async(batch, host_logits);
  wait();
}

void DlrmGpu::forward_async(const DlrmBatch& batch, float* host_logits) {
  FLURRY_CHECK(impl_, "dlrm gpu: forward before load");
  Impl& im = *impl_;
  FLURRY_CHECK(im.all_tables, "dlrm gpu: forward on a model holding only some tables (table-sharded): use forward_pooled");
  im.check_batch(batch);
  for (int64_t s0 = 0; s0 < batch.n;) {
    const int64_t s1 = im.fit_end(batch, s0, std::min(batch.n, s0 + im.shape.max_batch), 1);
    const int64_t m = s1 - s0, padded = im.bucket(m);
    const int k = im.next_slot;
    im.retire(k);  // the slot's previous pass: its logits out, its pinned buffers free
    const int64_t nidx = im.stage(batch, s0, s1, padded, k);
    im.enqueue_inputs(k, m, padded, nidx);
    im.launch_pass(padded, k);
    DlrmSlot& sl = im.slots[static_cast<size_t>(k)];
    sl.pass.record(*im.stream);
    im.d2h->wait(sl.pass);
    CUDA_CHECK(cudaMemcpyAsync(sl.p_logits.data(), sl.dev.logits, static_cast<size_t>(m) * sizeof(float),
                               cudaMemcpyDeviceToHost, *im.d2h));
    sl.d2h.record(*im.d2h);
    sl.dst = host_logits + s0;
    sl.m = m;
    sl.queued = true;
    im.next_slot = (k + 1) % Impl::kSlots;
    s0 = s1;
  }
}

void DlrmGpu::wait() {
  if (impl_) impl_->drain();
}

void DlrmGpu::recommend(const DlrmBatch& batch, int64_t customers, int64_t candidates, const uint8_t* valid, int k,
                        float* top_logits, int32_t* top_index) {
  FLURRY_CHECK(impl_, "dlrm gpu: recommend before load");
  Impl& im = *impl_;
  FLURRY_CHECK(im.all_tables, "dlrm gpu: recommend on a model holding only some tables (table-sharded)");
  FLURRY_CHECK(k >= 1 && k <= kTopKMax, "dlrm gpu: top-k of " << k << " (1.." << kTopKMax << ")");
  FLURRY_CHECK(customers >= 0 && candidates >= 1 && batch.n == customers * candidates,
               "dlrm gpu: a batch of " << batch.n << " samples is not " << customers << " customers x " << candidates
                                       << " candidates");
  FLURRY_CHECK(candidates <= im.shape.max_batch,
               "dlrm gpu: " << candidates << " candidates per customer exceed the " << im.shape.max_batch
                            << " samples of a pass; raise --batch-size");
  im.check_batch(batch);
  im.drain();
  for (int64_t s0 = 0; s0 < batch.n;) {
    const int64_t limit = std::min(batch.n, s0 + im.shape.max_batch / candidates * candidates);
    const int64_t s1 = im.fit_end(batch, s0, limit, candidates);
    const int64_t m = s1 - s0, rows = m / candidates, padded = im.bucket(m);
    // Slot 0 throughout: each pass is waited for (its top-k comes back before the next).
    const int64_t nidx = im.stage(batch, s0, s1, padded, 0);
    ScopedStage st(im.timers, "dlrm_gpu");
    if (valid) {
      std::memcpy(im.p_mask.data(), valid + s0, static_cast<size_t>(m));
      CUDA_CHECK(cudaMemcpyAsync(im.buf.mask, im.p_mask.data(), static_cast<size_t>(m), cudaMemcpyHostToDevice, *im.h2d));
    }
    im.enqueue_inputs(0, m, padded, nidx);
    im.launch_pass(padded, 0);
    TopKArgs a;
    a.scores = im.slots[0].dev.logits;
    a.ld_scores = candidates;
    a.mask = valid ? im.buf.mask : nullptr;
    a.ld_mask = candidates;
    a.rows = rows;
    a.cols = candidates;
    a.k = k;
    a.out_scores = im.buf.top_scores;
    a.out_index = im.buf.top_index;
    topk_rows(a, *im.stream);
    const size_t nk = static_cast<size_t>(rows) * static_cast<size_t>(k);
    CUDA_CHECK(cudaMemcpyAsync(im.p_top_scores.data(), im.buf.top_scores, nk * sizeof(float), cudaMemcpyDeviceToHost,
                               *im.stream));
    CUDA_CHECK(cudaMemcpyAsync(im.p_top_index.data(), im.buf.top_index, nk * sizeof(int32_t), cudaMemcpyDeviceToHost,
                               *im.stream));
    im.stream->synchronize();
    const size_t at = static_cast<size_t>(s0 / candidates) * static_cast<size_t>(k);
    std::memcpy(top_logits + at, im.p_top_scores.data(), nk * sizeof(float));
    std::memcpy(top_index + at, im.p_top_index.data(), nk * sizeof(int32_t));
    s0 = s1;
  }
}

void DlrmGpu::pool_bag(int64_t bag, const int32_t* offsets, const int32_t* indices, int64_t n, void* device_out,
                       int64_t ld_out) {
  FLURRY_CHECK(impl_, "dlrm gpu: pool_bag before load");
  Impl& im = *impl_;
  FLURRY_CHECK(bag >= 0 && bag < im.shape.bags, "dlrm gpu: bag " << bag << " of " << im.shape.bags);
  const EmbeddingBagSpec& spec = im.bags[static_cast<size_t>(bag)];
  const int64_t rows = im.bag_rows[static_cast<size_t>(bag)];
  FLURRY_CHECK(spec.table != nullptr, "dlrm gpu: bag '" << im.cfg.bags[static_cast<size_t>(bag)].name
                                                         << "': its table is not held by this rank");
  im.drain();
  const size_t es = dtype_size(im.opt.dtype);
  DlrmSlot& sl = im.slots[0];
  // Passes of at most max_batch samples and max_indices indices through slot 0's staging and
  // offsets/indices buffers, on the model's stream (free between passes: everything is drained).
  for (int64_t s0 = 0; s0 < n;) {
    int64_t s1 = std::min(n, s0 + im.shape.max_batch);
    while (s1 > s0 + 1 && offsets[s1] - offsets[s0] > im.shape.max_indices) s1 = s0 + (s1 - s0) / 2;
    const int32_t base = offsets[s0], nidx = offsets[s1] - base;
    FLURRY_CHECK(nidx <= im.shape.max_indices, "dlrm gpu: one sample holds " << nidx << " indices, more than the "
                                                                             << im.shape.max_indices << " of a pass");
    im.stream->synchronize();  // the pinned staging may still feed an earlier copy
    int32_t* off = sl.p_offsets.as<int32_t>();
    int32_t* idx = sl.p_indices.as<int32_t>();
    for (int64_t i = 0; i <= s1 - s0; ++i) off[i] = offsets[s0 + i] - base;
    for (int32_t e = 0; e < nidx; ++e) {
      const int32_t r = indices[base + e];
      FLURRY_CHECK(r >= 0 && r < rows, "dlrm gpu: embedding index " << r << " outside the table's " << rows << " rows");
      idx[e] = r;
    }
    CUDA_CHECK(cudaMemcpyAsync(sl.dev.offsets, off, static_cast<size_t>(s1 - s0 + 1) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, *im.stream));
    if (nidx > 0) {
      CUDA_CHECK(cudaMemcpyAsync(sl.dev.indices, idx, static_cast<size_t>(nidx) * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, *im.stream));
    }
    EmbeddingBagsArgs eb;
    eb.bags = {EmbeddingBagSpec{spec.table, spec.dim, 0, spec.pooling}};
    eb.table_type = im.opt.dtype;
    eb.offsets = sl.dev.offsets;
    eb.indices = sl.dev.indices;
    eb.n = s1 - s0;
    eb.out = static_cast<char*>(device_out) + static_cast<size_t>(s0 * ld_out) * es;
    eb.out_type = im.opt.dtype;
    eb.ld_out = ld_out;
    embedding_bags(eb, *im.stream);
    s0 = s1;
  }
  // Not waited for: the next user of slot 0 waits for this fence before refilling its staging.
  sl.d2h.record(*im.stream);
  sl.fenced = true;
}

void DlrmGpu::forward_pooled(const DlrmBatch& batch, const void* device_pooled, int64_t ld_pooled, float* host_logits) {
  FLURRY_CHECK(impl_, "dlrm gpu: forward_pooled before load");
  Impl& im = *impl_;
  const int64_t n = batch.n;
  if (n == 0) return;
  FLURRY_CHECK(static_cast<int64_t>(batch.dense.size()) == n * im.shape.num_dense,
               "dlrm gpu: a batch of " << n << " samples has " << batch.dense.size() << " dense values");
  FLURRY_CHECK(ld_pooled >= im.shape.concat - im.shape.bottom, "dlrm gpu: pooled rows of stride " << ld_pooled);
  const size_t es = dtype_size(im.opt.dtype);
  im.drain();  // also the fence of pool_bag's copies out of slot 0's staging
  DlrmSlot& sl = im.slots[0];
  // Dense rows only: the bags come pooled, so the pass is launched op by op at its exact size
  // (the pooled pointer changes from call to call) with its copies on the model's stream, after
  // the pooling work already queued there.
  DlrmBatch dense_only;
  for (int64_t s0 = 0; s0 < n;) {
    const int64_t s1 = std::min(n, s0 + im.shape.max_batch), m = s1 - s0;
    dense_only.n = m;
    dense_only.dense.assign(batch.dense.begin() + s0 * im.shape.num_dense, batch.dense.begin() + s1 * im.shape.num_dense);
    dense_only.offsets.assign(static_cast<size_t>(im.shape.bags * m + 1), 0);
    dense_only.indices.clear();
    im.stage(dense_only, 0, m, m, 0);
    ScopedStage st(im.timers, "dlrm_gpu");
    CUDA_CHECK(cudaMemcpyAsync(sl.dev.dense, sl.p_dense.data(), static_cast<size_t>(m * im.shape.dense_ld) * es,
                               cudaMemcpyHostToDevice, *im.stream));
    im.enqueue_pass(m, 0, static_cast<const char*>(device_pooled) + static_cast<size_t>(s0 * ld_pooled) * es, ld_pooled);
    CUDA_CHECK(cudaMemcpyAsync(sl.p_logits.data(), sl.dev.logits, static_cast<size_t>(m) * sizeof(float),
                               cudaMemcpyDeviceToHost, *im.stream));
    im.stream->synchronize();
    std::memcpy(host_logits + s0, sl.p_logits.data(), static_cast<size_t>(m) * sizeof(float));
    s0 = s1;
  }
}

void* DlrmGpu::stream() const {
  FLURRY_CHECK(impl_, "dlrm gpu: not loaded");
  return static_cast<void*>(impl_->stream->get());
}

bool DlrmGpu::loaded() const { return impl_ != nullptr; }

const DlrmConfig& DlrmGpu::config() const {
  FLURRY_CHECK(impl_, "dlrm gpu: not loaded");
  return impl_->cfg;
}

const DlrmGpuOptions& DlrmGpu::options() const {
  FLURRY_CHECK(impl_, "dlrm gpu: not loaded");
  return impl_->opt;
}

void DlrmGpu::set_use_graphs(bool on) {
  FLURRY_CHECK(impl_, "dlrm gpu: not loaded");
  impl_->drain();
  impl_->opt.use_graphs = on;
}

size_t DlrmGpu::graphs() const { return impl_ ? impl_->graphs.size() : 0; }

bool DlrmGpu::outer_fused() const { return impl_ && impl_->shape.outer_fused; }

size_t DlrmGpu::device_bytes() const { return impl_ ? impl_->bytes : 0; }

void DlrmGpu::set_timers(StageTimers* timers) {
  timers_ = timers;
  if (impl_) impl_->timers = timers;
}

}  // namespace flurry::dlrm
