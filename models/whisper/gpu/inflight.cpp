// InflightScheduler: InflightCore's slot bookkeeping over a GPU backend: admission through batched
// log-mel + encoder, slot moves, one uniform decoder step per iteration with the selection on the
// device (inflight.h has the design).
#include "models/whisper/gpu/inflight.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <utility>

#include "models/whisper/gpu/logits.cuh"
#include "kernels/audio/logmel.cuh"
#include "models/whisper/gpu/gpu_ops.h"
#include "runtime/audio_constants.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/stream.h"

namespace flurry::whisper {

namespace {

constexpr int64_t kWindowSamples = kAudioWindowSamples;
constexpr int kTopK = 2;                    // top-1, and the best non-EOT id when top-1 is EOT

template <typename T>
T* device_alloc(size_t n) {
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  return static_cast<T*>(p);
}

}  // namespace

GpuPlan inflight_plan(int slots, int enc_batch) {
  FLURRY_CHECK(slots >= 1 && enc_batch >= 1, "inflight: " << slots << " slots, encoder batch " << enc_batch);
  GpuPlan p;
  p.max_slots = slots;
  p.enc_batch = enc_batch;
  p.max_windows = slots + enc_batch;  // the last enc_batch indices are the encoder's staging
  p.max_tokens = 0;                   // max_target_positions
  p.dec_rows = slots;                 // one token per slot per step (raised to max_tokens by the plan)
  p.logmel = true;
  return p;
}

namespace {

// The GPU side of InflightCore's contract.
class GpuInflightBackend final : public InflightBackend {
 public:
  GpuInflightBackend(WhisperGpu& gpu, const InflightRules& rules) : g(gpu), rules_(rules) { init(); }
  ~GpuInflightBackend() override {
    for (void* p : {static_cast<void*>(d_suppress), static_cast<void*>(d_blank), static_cast<void*>(d_n_sampled),
                    static_cast<void*>(d_topk), static_cast<void*>(d_topk_lp), static_cast<void*>(d_error)}) {
      (void)cudaFree(p);
    }
  }

  int slots() const override { return S; }
  int encoder_batch() const override { return E; }
  int max_tokens() const override { return static_cast<int>(g.state->max_tokens); }
  int vocab() const override { return static_cast<int>(g.state->vocab); }
  // decoder_forward's single-launch path covers consecutive slots reading the same-numbered audio.
  bool needs_compact_slots() const override { return true; }

  void begin_run() override { CUDA_CHECK(cudaMemsetAsync(d_error, 0, sizeof(int32_t), *g.stream)); }

  void end_run() override {
    CUDA_CHECK(cudaMemcpyAsync(h_error(), d_error, sizeof(int32_t), cudaMemcpyDeviceToHost, *g.stream));
    g.stream->synchronize();
    FLURRY_CHECK(*h_error() == 0, "inflight: logits_select flagged bad ids or history (bits " << *h_error() << ")");
  }

  void admit(const std::vector<const InflightWindow*>& windows, const std::vector<int>& dest,
             InflightStats& stats) override {
    const int n = static_cast<int>(windows.size());
    const bool from_samples = windows.front()->mel == nullptr;
    FLURRY_CHECK(!from_samples || g.logmel != nullptr, "inflight: windows bring samples but the plan has no device log-mel");
    win_ptrs.clear();
    win_lens.clear();
    for (const InflightWindow* w : windows) {
      if (from_samples) {
        FLURRY_CHECK(w->samples != nullptr || w->n_samples == 0, "inflight: window " << w->id << " has no audio");
        win_ptrs.push_back(w->samples);
        win_lens.push_back(static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(w->n_samples, 0), kWindowSamples)));
      } else {
        win_ptrs.push_back(w->mel);
      }
    }
    mel0.record(*g.stream);
    if (from_samples) {
      logmel_windows(g, n, win_ptrs.data(), win_lens.data());
    } else {
      upload_mels(g, n, win_ptrs.data());
    }
    mel1.record(*g.stream);
    encode_windows(g, S, n);  // into the staging audio indices [S, S + n)
    for (int k = 0; k < n; ++k) move_cross_kv(S + k, dest[static_cast<size_t>(k)]);
    enc1.record(*g.stream);
    enc1.synchronize();
    stats.mel_s += mel1.elapsed_ms_since(mel0) * 1e-3;
    stats.encoder_s += enc1.elapsed_ms_since(mel1) * 1e-3;
  }

  void move_slot(int from, int to, int pos) override {
    copy_slot(g, from, to, pos);
    move_cross_kv(from, to);
  }

  void step(const std::vector<int>& live, const std::vector<int32_t>& feed, const std::vector<int>& pos,
            const std::vector<int32_t>& n_sampled, std::vector<int32_t>& top2, InflightStats& stats) override {
    const int n = static_cast<int>(live.size());
    dec0.record(*g.stream);
    seqs.clear();
    feed_.assign(feed.begin(), feed.end());
    int32_t* h_ns = h_n_sampled();
    for (int i = 0; i < n; ++i) {
      FLURRY_CHECK(live[static_cast<size_t>(i)] == i, "inflight: GPU steps need slots 0..n-1 (compacted)");
      GpuSeq q;
      q.slot = i;
      q.audio = i;
      q.pos = pos[static_cast<size_t>(i)];
      q.tokens = &feed_[static_cast<size_t>(i)];
      q.n_new = 1;
      seqs.push_back(q);
      h_ns[i] = n_sampled[static_cast<size_t>(i)];
    }
    // The pinned mirrors are idle: the previous step ended with a synchronisation.
    CUDA_CHECK(cudaMemcpyAsync(d_n_sampled, h_ns, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, *g.stream));
    decoder_forward(g, seqs, nullptr, nullptr);
    select(n);
    CUDA_CHECK(cudaMemcpyAsync(h_topk(), d_topk, static_cast<size_t>(n) * kTopK * 4, cudaMemcpyDeviceToHost,
                               *g.stream));
    dec1.record(*g.stream);
    dec1.synchronize();
    stats.decoder_s += dec1.elapsed_ms_since(dec0) * 1e-3;
    std::copy(h_topk(), h_topk() + static_cast<size_t>(n) * kTopK, top2.begin());
  }

 private:
  void init() {
    const WhisperGpuState& s = *g.state;
    S = s.plan.max_slots;
    E = s.plan.enc_batch;
    FLURRY_CHECK(s.plan.max_windows >= S + E, "inflight: the plan holds " << s.plan.max_windows
                                                  << " audio indices; the scheduler needs max_slots + enc_batch = "
                                                  << S + E << " (use inflight_plan)");
    FLURRY_CHECK(s.dec_rows >= S, "inflight: " << s.dec_rows << " decoder rows for " << S << " slots");
    d_suppress = device_alloc<int32_t>(rules_.suppress_ids.size());
    d_blank = device_alloc<int32_t>(rules_.blank_ids.size());
    d_n_sampled = device_alloc<int32_t>(static_cast<size_t>(S));
    d_topk = device_alloc<int32_t>(static_cast<size_t>(S) * kTopK);
    d_topk_lp = device_alloc<float>(static_cast<size_t>(S) * kTopK);
    d_error = device_alloc<int32_t>(1);
    if (!rules_.suppress_ids.empty()) {
      CUDA_CHECK(cudaMemcpy(d_suppress, rules_.suppress_ids.data(), rules_.suppress_ids.size() * 4,
                            cudaMemcpyHostToDevice));
    }
    if (!rules_.blank_ids.empty()) {
      CUDA_CHECK(cudaMemcpy(d_blank, rules_.blank_ids.data(), rules_.blank_ids.size() * 4, cudaMemcpyHostToDevice));
    }
    h_ints = PinnedBuffer(static_cast<size_t>(S * (1 + kTopK) + 1) * sizeof(int32_t));
    seqs.reserve(static_cast<size_t>(S));
    feed_.reserve(static_cast<size_t>(S));
    win_ptrs.reserve(static_cast<size_t>(E));
    win_lens.reserve(static_cast<size_t>(E));
    // cuFFT plans allocate device memory: build one per encoder batch size now, not in the loop.
    if (g.logmel) {
      for (int b = 1; b <= E; ++b) g.logmel->prepare(b);
    }
  }

  int32_t* h_n_sampled() const { return h_ints.as<int32_t>(); }
  int32_t* h_topk() const { return h_ints.as<int32_t>() + S; }
  int32_t* h_error() const { return h_ints.as<int32_t>() + S * (1 + kTopK); }

  // Copies audio index `from`'s cross K/V (every decoder layer) over audio index `to`.
  void move_cross_kv(int from, int to) {
    WhisperGpuState& s = *g.state;
    const size_t bytes = static_cast<size_t>(s.n_ctx * 2 * s.d) * s.elt;
    for (void* layer : s.cross_kv) {
      CUDA_CHECK(cudaMemcpyAsync(gpu_detail::row_ptr(layer, int64_t{to} * s.n_ctx, 2 * s.d, s.elt),
                                 gpu_detail::row_ptr(layer, int64_t{from} * s.n_ctx, 2 * s.d, s.elt), bytes,
                                 cudaMemcpyDeviceToDevice, *g.stream));
    }
    s.encoded[static_cast<size_t>(to)] = true;
  }

  void select(int n) {
    const WhisperGpuState& s = *g.state;
    LogitsArgs a;
    a.logits = s.logits;
    a.rows = n;
    a.vocab = s.vocab;
    a.ld = s.vocab;
    a.n_sampled = d_n_sampled;
    a.sampled = nullptr;  // only the timestamp rules read the history itself
    a.sampled_ld = 0;
    a.rules.suppress_ids = d_suppress;
    a.rules.n_suppress = static_cast<int>(rules_.suppress_ids.size());
    a.rules.suppress_blank = !rules_.blank_ids.empty();
    a.rules.blank_ids = d_blank;
    a.rules.n_blank = static_cast<int>(rules_.blank_ids.size());
    a.rules.timestamps = false;
    a.rules.eot = rules_.eot;
    a.top_k = kTopK;
    a.topk_ids = d_topk;
    a.topk_logprobs = d_topk_lp;
    a.error = d_error;
    logits_select(a, *g.stream);
  }

  WhisperGpu& g;
  InflightRules rules_;
  int S = 0, E = 0;
  // Selection buffers (device) and their pinned host mirrors.
  int32_t* d_suppress = nullptr;
  int32_t* d_blank = nullptr;
  int32_t* d_n_sampled = nullptr;  // [S]
  int32_t* d_topk = nullptr;       // [S, kTopK]
  float* d_topk_lp = nullptr;      // [S, kTopK]
  int32_t* d_error = nullptr;
  PinnedBuffer h_ints;             // n_sampled [S] | topk [S * kTopK] | error [1]
  // Host scratch reserved once.
  std::vector<GpuSeq> seqs;
  std::vector<int32_t> feed_;
  std::vector<const float*> win_ptrs;
  std::vector<int32_t> win_lens;
  Event mel0, mel1, enc1, dec0, dec1;
};

}  // namespace

struct InflightScheduler::Impl {
  Impl(WhisperGpu& g, InflightOptions o) : backend(g, o.rules), core(backend, std::move(o)) {}
  GpuInflightBackend backend;
  InflightCore core;
};

InflightScheduler::InflightScheduler(WhisperGpu& g, InflightOptions options)
    : impl_(std::make_unique<Impl>(g, std::move(options))) {}

InflightScheduler::~InflightScheduler() = default;

void InflightScheduler::submit(InflightWindow w) { impl_->core.submit(std::move(w)); }
void InflightScheduler::run(const std::function<void(InflightResult&&)>& on_done) { impl_->core.run(on_done); }
const InflightStats& InflightScheduler::stats() const { return impl_->core.stats(); }
void InflightScheduler::reset_stats() { impl_->core.reset_stats(); }

}  // namespace flurry::whisper

namespace flurry::whisper {

GpuPlan pipeline_plan(int slots, int audios, int enc_batch) {
  FLURRY_CHECK(slots >= 1 && audios >= 1 && enc_batch >= 1,
               "pipeline plan: " << slots << " slots, " << audios << " audios, encoder batch " << enc_batch);
  GpuPlan p;
  p.max_slots = slots;
  p.enc_batch = enc_batch;
  p.max_windows = audios + enc_batch;  // the last enc_batch indices are the encoder's staging
  p.max_tokens = 0;
  p.dec_rows = 0;  // max(max_tokens, 8 * slots): a prompt prefill fits one chunk
  p.logmel = false;
  return p;
}

int pipeline_slots_for_memory(const WhisperConfig& c, WhisperGpuOptions o, int group, int enc_batch, size_t budget,
                              int max_slots) {
  FLURRY_CHECK(group >= 1, "pipeline plan: group " << group);
  int best = 0;
  for (int s = group; s <= max_slots; s += group) {
    const int files = s / group;
    o.plan = pipeline_plan(s, files, std::min(enc_batch, files));
    if (whisper_gpu_bytes(c, o) > budget) break;
    best = s;
  }
  return best;
}

GpuSlotBackend::GpuSlotBackend(WhisperGpu& g, int audios) : g_(g), audios_(audios) {
  const GpuPlan& p = g_.state->plan;
  FLURRY_CHECK(audios >= 1 && p.max_windows >= audios + p.enc_batch,
               "GpuSlotBackend: the plan holds " << p.max_windows << " windows; " << audios << " audios and "
                                                 << p.enc_batch << " staging ones are needed (use pipeline_plan)");
  seqs_.reserve(static_cast<size_t>(p.max_slots));
}

int GpuSlotBackend::vocab() const { return static_cast<int>(g_.state->vocab); }
int GpuSlotBackend::n_text_ctx() const { return static_cast<int>(g_.state->max_tokens); }
int GpuSlotBackend::slots() const { return g_.state->plan.max_slots; }
int GpuSlotBackend::encoder_batch() const { return g_.state->plan.enc_batch; }
int GpuSlotBackend::spare_slot() const { return g_.state->plan.max_slots; }  // the state's extra slot

void GpuSlotBackend::encode(const std::vector<int>& audio, const std::vector<const float*>& mels,
                            InflightStats& stats) {
  const int n = static_cast<int>(audio.size());
  FLURRY_CHECK(n >= 1 && n <= encoder_batch() && mels.size() == audio.size(),
               "GpuSlotBackend: encode of " << n << " windows");
  WhisperGpuState& s = *g_.state;
  const auto t0 = std::chrono::steady_clock::now();
  upload_mels(g_, n, mels.data());
  encode_windows(g_, audios_, n);
  const size_t bytes = static_cast<size_t>(s.n_ctx * 2 * s.d) * s.elt;
  for (int k = 0; k < n; ++k) {
    const int to = audio[static_cast<size_t>(k)];
    FLURRY_CHECK(to >= 0 && to < audios_, "GpuSlotBackend: audio index " << to);
    for (void* layer : s.cross_kv) {
      CUDA_CHECK(cudaMemcpyAsync(gpu_detail::row_ptr(layer, int64_t{to} * s.n_ctx, 2 * s.d, s.elt),
                                 gpu_detail::row_ptr(layer, int64_t{audios_ + k} * s.n_ctx, 2 * s.d, s.elt), bytes,
                                 cudaMemcpyDeviceToDevice, *g_.stream));
    }
    s.encoded[static_cast<size_t>(to)] = true;
  }
  g_.stream->synchronize();  // stage time, and the staging is free for the next batch
  stats.encoder_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void GpuSlotBackend::forward(const std::vector<SlotCall>& calls, float* last, float* aux_out, InflightStats& stats) {
  const auto t0 = std::chrono::steady_clock::now();
  // decoder_forward wants auxiliary rows for all sequences or none: those that asked for none get
  // their last token's row, which nobody reads.
  const bool any_aux = std::any_of(calls.begin(), calls.end(), [](const SlotCall& c) { return c.aux >= 0; });
  seqs_.clear();
  for (const SlotCall& c : calls) {
    GpuSeq q;
    q.slot = c.slot;
    q.audio = c.audio;
    q.pos = c.pos;
    q.tokens = c.tokens;
    q.n_new = c.n_new;
    q.aux = any_aux ? (c.aux >= 0 ? c.aux : c.n_new - 1) : -1;
    seqs_.push_back(q);
  }
  decoder_forward(g_, seqs_, last, any_aux ? aux_out : nullptr);
  stats.decoder_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void GpuSlotBackend::copy_slot(int from, int to, int len) { whisper::copy_slot(g_, from, to, len); }

}  // namespace flurry::whisper
