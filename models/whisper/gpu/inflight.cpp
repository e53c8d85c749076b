// InflightScheduler: InflightCore's slot bookkeeping over a GPU backend: admission through batched
// log-mel + encoder, slot moves, one uniform decoder step per iteration with the selection on the
// device (inflight.h has the design).
#include "models/whisper/gpu/inflight.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
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
  p.logmel = true;  // encode_samples: log-mel of the staged windows on the device
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

// Device selection state: per-call inputs and outputs ([max_slots] each; a forward has at most one
// call per slot), their pinned mirrors, and each rule set seen so far with its id lists uploaded
// (a run uses one or two: the options' rules, with and without timestamps at most).
struct GpuSlotBackend::Select {
  struct Rules {
    LogitRuleSet key;
    int32_t* suppress = nullptr;
    int32_t* blank = nullptr;
  };
  static constexpr int K = kMaxSelectTopK;
  static_assert(K == kLogitsMaxTopK, "the selection stride is logits_select's largest top-k");
  int S = 0;
  int32_t* d_n_sampled = nullptr;  // [S]
  int32_t* d_history = nullptr;    // [S, 3] summarize_history
  int32_t* d_eot_after = nullptr;  // [S] forced lengths as what is left (LogitsArgs::eot_after), -1: none
  double* d_uniform = nullptr;     // [S] sampling calls' uniforms
  PinnedBuffer h_uniform;          // [S] doubles
  // [S, K]: a run of calls [b, e) writes from b * K on: argmaxes (stride 1) or top-k (stride k).
  int32_t* d_token = nullptr;
  float* d_logprob = nullptr;
  int32_t* d_error = nullptr;
  PinnedBuffer h_in;   // n_sampled [S] | history [3 S] | eot_after [S]
  PinnedBuffer h_out;  // token [S K] | logprob [S K] | error [1]
  std::vector<Rules> rules;
  std::vector<int> rule_of_call;  // index into `rules`, -1: a full-row call
  std::vector<int> run_of_call;   // first call of the call's run

  explicit Select(int slots) : S(slots) {
    d_n_sampled = device_alloc<int32_t>(static_cast<size_t>(S));
    d_history = device_alloc<int32_t>(static_cast<size_t>(S) * 3);
    d_eot_after = device_alloc<int32_t>(static_cast<size_t>(S));
    d_uniform = device_alloc<double>(static_cast<size_t>(S));
    h_uniform = PinnedBuffer(static_cast<size_t>(S) * sizeof(double));
    d_token = device_alloc<int32_t>(static_cast<size_t>(S) * K);
    d_logprob = device_alloc<float>(static_cast<size_t>(S) * K);
    d_error = device_alloc<int32_t>(1);
    h_in = PinnedBuffer(static_cast<size_t>(S) * 5 * sizeof(int32_t));
    h_out = PinnedBuffer((static_cast<size_t>(S) * 2 * K + 1) * sizeof(int32_t));
    rule_of_call.reserve(static_cast<size_t>(S));
    run_of_call.reserve(static_cast<size_t>(S));
  }
  ~Select() {
    for (void* p : {static_cast<void*>(d_n_sampled), static_cast<void*>(d_history), static_cast<void*>(d_eot_after),
                    static_cast<void*>(d_uniform), static_cast<void*>(d_token), static_cast<void*>(d_logprob),
                    static_cast<void*>(d_error)}) {
      (void)cudaFree(p);
    }
    for (Rules& r : rules) {
      (void)cudaFree(r.suppress);
      (void)cudaFree(r.blank);
    }
  }
  Select(const Select&) = delete;
  Select& operator=(const Select&) = delete;

  int32_t* h_n_sampled() const { return h_in.as<int32_t>(); }
  int32_t* h_history() const { return h_in.as<int32_t>() + S; }
  int32_t* h_eot_after() const { return h_in.as<int32_t>() + 4 * S; }
  int32_t* h_token() const { return h_out.as<int32_t>(); }
  float* h_logprob() const { return reinterpret_cast<float*>(h_out.as<int32_t>() + S * K); }
  int32_t* h_error() const { return h_out.as<int32_t>() + 2 * S * K; }

  // The index of `r` in `rules`, uploading its id lists the first time it is seen (outside the
  // steady state: a run's rule sets are all seen in its first steps). The forced length is per row
  // (eot_after), not part of the key, so lanes with different lengths share one launch.
  int find_or_add(const LogitRuleSet& r) {
    for (size_t i = 0; i < rules.size(); ++i) {
      if (rules[i].key.same_rules(r)) return static_cast<int>(i);
    }
    Rules e;
    e.key = r;
    e.key.forced_length = 0;
    e.suppress = device_alloc<int32_t>(r.suppress.size());
    e.blank = device_alloc<int32_t>(r.blank_tokens.size());
    if (!r.suppress.empty()) {
      CUDA_CHECK(cudaMemcpy(e.suppress, r.suppress.data(), r.suppress.size() * sizeof(int32_t),
                            cudaMemcpyHostToDevice));
    }
    if (!r.blank_tokens.empty()) {
      CUDA_CHECK(cudaMemcpy(e.blank, r.blank_tokens.data(), r.blank_tokens.size() * sizeof(int32_t),
                            cudaMemcpyHostToDevice));
    }
    rules.push_back(std::move(e));
    return static_cast<int>(rules.size()) - 1;
  }

  LogitRulesGpu device_rules(int i) const {
    const Rules& e = rules[static_cast<size_t>(i)];
    LogitRulesGpu g;
    g.suppress_ids = e.suppress;
    g.n_suppress = static_cast<int>(e.key.suppress.size());
    g.suppress_blank = e.key.suppress_blank;
    g.blank_ids = e.blank;
    g.n_blank = static_cast<int>(e.key.blank_tokens.size());
    g.timestamps = e.key.timestamps;
    g.eot = e.key.ts.eot;
    g.no_timestamps = e.key.ts.no_timestamps;
    g.timestamp_begin = e.key.ts.timestamp_begin;
    g.max_initial_timestamp_index = e.key.ts.max_initial_timestamp_index;
    return g;
  }
};

// Log-mel staging: window k of an encoder batch (or a tile of a peak pass) is staged in pinned
// memory at k * kLogMelContextSamples and uploaded to the state's sample buffer at the same offset.
struct GpuSlotBackend::Mel {
  int E = 0;
  PinnedBuffer h_samples;  // [E, kLogMelContextSamples]
  PinnedBuffer h_small;    // lengths [E] | valid frames [E] | floors [E] | peaks [E]
  int32_t* d_valid = nullptr;
  float* d_floor = nullptr;
  float* d_peak = nullptr;
  Event mel0, mel1;

  Mel(WhisperGpu& g, int enc_batch) : E(enc_batch) {
    h_samples = PinnedBuffer(static_cast<size_t>(E) * kLogMelContextSamples * sizeof(float));
    h_small = PinnedBuffer(static_cast<size_t>(E) * 4 * sizeof(int32_t));
    d_valid = device_alloc<int32_t>(static_cast<size_t>(E));
    d_floor = device_alloc<float>(static_cast<size_t>(E));
    d_peak = device_alloc<float>(static_cast<size_t>(E));
    // cuFFT plans allocate device memory: one per batch size now, not while serving.
    for (int b = 1; b <= E; ++b) g.logmel->prepare(b);
  }
  ~Mel() {
    (void)cudaFree(d_valid);
    (void)cudaFree(d_floor);
    (void)cudaFree(d_peak);
  }
  Mel(const Mel&) = delete;
  Mel& operator=(const Mel&) = delete;

  int32_t* h_lengths() const { return h_small.as<int32_t>(); }
  int32_t* h_valid() const { return h_small.as<int32_t>() + E; }
  float* h_floor() const { return reinterpret_cast<float*>(h_small.as<int32_t>() + 2 * E); }
  float* h_peak() const { return reinterpret_cast<float*>(h_small.as<int32_t>() + 3 * E); }

  // Stages window `seek` of a file as entry k and queues its upload; returns the samples staged.
  int32_t stage(int k, const float* x, int64_t n, int64_t seek, float* d_samples, cudaStream_t st) {
    float* dst = h_samples.as<float>() + static_cast<int64_t>(k) * kLogMelContextSamples;
    const int32_t valid = stage_window_samples(x, n, seek, dst);
    if (valid > 0) {
      CUDA_CHECK(cudaMemcpyAsync(d_samples + static_cast<int64_t>(k) * kLogMelContextSamples, dst,
                                 static_cast<size_t>(valid) * sizeof(float), cudaMemcpyHostToDevice, st));
    }
    return static_cast<int32_t>(valid);
  }
};

int32_t stage_window_samples(const float* x, int64_t n, int64_t seek, float* out) {
  const int64_t j0 = seek * kMelHop - kMelNfft / 2;
  const int64_t valid = std::max<int64_t>(0, std::min<int64_t>(n - j0, kLogMelContextSamples));
  int64_t i = 0;
  for (; i < valid && j0 + i < 0; ++i) {
    const int64_t r = -(j0 + i);
    out[i] = r < n ? x[r] : 0.0f;
  }
  if (i < valid) std::memcpy(out + i, x + j0 + i, static_cast<size_t>(valid - i) * sizeof(float));
  return static_cast<int32_t>(valid);
}

std::vector<int64_t> peak_tiles(int64_t n_samples) {
  std::vector<int64_t> seeks;
  for (int64_t f0 = 0; f0 == 0 || f0 * kMelHop - kMelNfft / 2 < n_samples; f0 += kMelWindowFrames) {
    seeks.push_back(f0);
  }
  return seeks;
}

int32_t window_valid_frames(int64_t n_samples, int64_t seek, int64_t n_frames) {
  const int64_t total_frames = (n_samples + kAudioWindowSamples) / kMelHop;  // log_mel_whole's n_frames
  return static_cast<int32_t>(
      std::max<int64_t>(0, std::min({n_frames, static_cast<int64_t>(kMelWindowFrames), total_frames - seek})));
}

int summarize_history(const int* h, int n, int timestamp_begin, int32_t out[3]) {
  out[0] = out[1] = out[2] = 0;
  if (n <= 3) {
    for (int i = 0; i < n; ++i) out[i] = h[i];
    return std::max(n, 0);
  }
  for (int i = n - 3; i >= 0; --i) {
    if (h[i] >= timestamp_begin) {
      out[0] = h[i];
      break;
    }
  }
  out[1] = h[n - 2];
  out[2] = h[n - 1];
  return 3;
}

GpuSlotBackend::GpuSlotBackend(WhisperGpu& g, int audios, bool device_select)
    : g_(g), audios_(audios), device_select_(device_select) {
  const GpuPlan& p = g_.state->plan;
  FLURRY_CHECK(audios >= 1 && p.max_windows >= audios + p.enc_batch,
               "GpuSlotBackend: the plan holds " << p.max_windows << " windows; " << audios << " audios and "
                                                 << p.enc_batch << " staging ones are needed (use pipeline_plan)");
  seqs_.reserve(static_cast<size_t>(p.max_slots));
  if (device_select_) sel_ = std::make_unique<Select>(p.max_slots);
  if (g_.logmel != nullptr) mel_ = std::make_unique<Mel>(g_, p.enc_batch);
}

GpuSlotBackend::~GpuSlotBackend() = default;

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
  const auto t0 = std::chrono::steady_clock::now();
  upload_mels(g_, n, mels.data());
  encode_staged(audio);
  stats.encoder_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void GpuSlotBackend::encode_staged(const std::vector<int>& audio) {
  WhisperGpuState& s = *g_.state;
  const int n = static_cast<int>(audio.size());
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
}

// decoder_forward wants auxiliary rows for all sequences or none: those that asked for none get
// their last token's row, which nobody reads.
void GpuSlotBackend::build_seqs(const std::vector<SlotCall>& calls, bool any_aux) {
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
}

void GpuSlotBackend::forward(const std::vector<SlotCall>& calls, float* last, float* aux_out, InflightStats& stats) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool any_aux = std::any_of(calls.begin(), calls.end(), [](const SlotCall& c) { return c.aux >= 0; });
  build_seqs(calls, any_aux);
  decoder_forward(g_, seqs_, last, any_aux ? aux_out : nullptr);
  stats.decoder_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The logits stay on the device (decoder_forward with no host outputs: rows 0..n-1 last, n..2n-1
// aux); the selected calls' rows are filtered and reduced in place, and only what the host reads
// comes back: (token, logprob) per selected call, the full rows of the others, the asked-for aux rows.
void GpuSlotBackend::forward_select(const std::vector<SlotCall>& calls, float* last, float* aux_out, int32_t* token,
                                    float* logprob, InflightStats& stats) {
  FLURRY_CHECK(device_select_, "GpuSlotBackend: forward_select with device selection off");
  const auto t0 = std::chrono::steady_clock::now();
  WhisperGpuState& s = *g_.state;
  Select& sel = *sel_;
  const int n = static_cast<int>(calls.size());
  FLURRY_CHECK(n <= sel.S, "GpuSlotBackend: " << n << " calls for " << sel.S << " slots");
  const bool any_aux = std::any_of(calls.begin(), calls.end(), [](const SlotCall& c) { return c.aux >= 0; });
  build_seqs(calls, any_aux);
  decoder_forward(g_, seqs_, nullptr, nullptr);  // ends with the stream synchronised: the staging is idle

  sel.rule_of_call.clear();
  int32_t* h_ns = sel.h_n_sampled();
  int32_t* h_hist = sel.h_history();
  int32_t* h_left = sel.h_eot_after();
  double* h_unif = sel.h_uniform.as<double>();
  bool any_forced = false, any_sampling = false;
  for (int i = 0; i < n; ++i) {
    const SlotCall& c = calls[static_cast<size_t>(i)];
    h_left[i] = -1;
    h_unif[i] = 0.0;
    if (c.rules == nullptr) {
      sel.rule_of_call.push_back(-1);
      h_ns[i] = 0;
      continue;
    }
    sel.rule_of_call.push_back(sel.find_or_add(*c.rules));
    h_ns[i] = summarize_history(c.sampled, c.n_sampled, c.rules->ts.timestamp_begin, h_hist + 3 * i);
    if (c.rules->forced_length > 0) {
      h_left[i] = std::max(c.rules->forced_length - c.n_sampled, 0);
      any_forced = true;
    }
    if (c.temperature > 0.0f) {
      FLURRY_CHECK(c.top_k == 0 && c.uniform >= 0.0 && c.uniform < 1.0,
                   "GpuSlotBackend: a sampling call needs top_k 0 and a uniform in [0, 1), not " << c.uniform);
      h_unif[i] = c.uniform;
      any_sampling = true;
    }
  }
  cudaStream_t st = *g_.stream;
  CUDA_CHECK(cudaMemcpyAsync(sel.d_n_sampled, h_ns, static_cast<size_t>(n) * sizeof(int32_t), cudaMemcpyHostToDevice,
                             st));
  CUDA_CHECK(cudaMemcpyAsync(sel.d_history, h_hist, static_cast<size_t>(n) * 3 * sizeof(int32_t),
                             cudaMemcpyHostToDevice, st));
  if (any_sampling) {
    CUDA_CHECK(cudaMemcpyAsync(sel.d_uniform, h_unif, static_cast<size_t>(n) * sizeof(double), cudaMemcpyHostToDevice,
                               st));
  }
  if (any_forced) {
    CUDA_CHECK(cudaMemcpyAsync(sel.d_eot_after, h_left, static_cast<size_t>(n) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, st));
  }
  CUDA_CHECK(cudaMemsetAsync(sel.d_error, 0, sizeof(int32_t), st));
  // One launch per run of consecutive selected calls with one rule set, one k and one temperature
  // (usually all the greedy calls, each beam lane's, each sampling lane's).
  const int64_t V = s.vocab;
  const int K = Select::K;
  const auto same_run = [&](int i, int j) {
    return sel.rule_of_call[static_cast<size_t>(i)] == sel.rule_of_call[static_cast<size_t>(j)] &&
           calls[static_cast<size_t>(i)].top_k == calls[static_cast<size_t>(j)].top_k &&
           calls[static_cast<size_t>(i)].temperature == calls[static_cast<size_t>(j)].temperature;
  };
  sel.run_of_call.assign(static_cast<size_t>(n), 0);
  for (int b = 0; b < n;) {
    const int r = sel.rule_of_call[static_cast<size_t>(b)];
    const int k = calls[static_cast<size_t>(b)].top_k;
    FLURRY_CHECK(k >= 0 && k <= K, "GpuSlotBackend: top_k " << k);
    int e = b + 1;
    while (e < n && same_run(b, e)) ++e;
    for (int i = b; i < e; ++i) sel.run_of_call[static_cast<size_t>(i)] = b;
    if (r >= 0) {
      LogitsArgs a;
      a.logits = s.logits + b * V;
      a.rows = e - b;
      a.vocab = V;
      a.ld = V;
      a.sampled = sel.d_history + 3 * b;
      a.sampled_ld = 3;
      a.n_sampled = sel.d_n_sampled + b;
      a.rules = sel.device_rules(r);
      if (any_forced) a.eot_after = sel.d_eot_after + b;
      const float temp = calls[static_cast<size_t>(b)].temperature;
      if (temp > 0.0f) {
        a.temperature = temp;
        a.uniform = sel.d_uniform + b;
      }
      if (k == 0) {
        a.argmax = sel.d_token + b * K;
        a.argmax_logprob = sel.d_logprob + b * K;
      } else {
        a.top_k = k;
        a.topk_ids = sel.d_token + b * K;
        a.topk_logprobs = sel.d_logprob + b * K;
      }
      a.error = sel.d_error;
      logits_select(a, st);
    }
    b = e;
  }
  CUDA_CHECK(cudaMemcpyAsync(sel.h_token(), sel.d_token, static_cast<size_t>(n) * K * sizeof(int32_t),
                             cudaMemcpyDeviceToHost, st));
  CUDA_CHECK(cudaMemcpyAsync(sel.h_logprob(), sel.d_logprob, static_cast<size_t>(n) * K * sizeof(float),
                             cudaMemcpyDeviceToHost, st));
  CUDA_CHECK(cudaMemcpyAsync(sel.h_error(), sel.d_error, sizeof(int32_t), cudaMemcpyDeviceToHost, st));
  // Full rows, as runs of consecutive rows, into the same rows of the pinned logits staging.
  const size_t row_bytes = static_cast<size_t>(V) * sizeof(float);
  float* staged = s.host_logits.as<float>();
  auto copy_rows = [&](int first, int count) {
    CUDA_CHECK(cudaMemcpyAsync(staged + first * V, s.logits + first * V, static_cast<size_t>(count) * row_bytes,
                               cudaMemcpyDeviceToHost, st));
  };
  auto copy_runs = [&](int offset, const auto& wanted) {
    for (int b = 0; b < n;) {
      if (!wanted(b)) {
        ++b;
        continue;
      }
      int e = b + 1;
      while (e < n && wanted(e)) ++e;
      copy_rows(offset + b, e - b);
      b = e;
    }
  };
  copy_runs(0, [&](int i) { return calls[static_cast<size_t>(i)].rules == nullptr; });
  if (any_aux) copy_runs(n, [&](int i) { return calls[static_cast<size_t>(i)].aux >= 0; });
  g_.stream->synchronize();
  FLURRY_CHECK(*sel.h_error() == 0, "GpuSlotBackend: logits_select flagged bad suppress ids, history or an all-masked row (bits "
                                        << *sel.h_error() << ")");
  for (int i = 0; i < n; ++i) {
    const SlotCall& c = calls[static_cast<size_t>(i)];
    if (c.rules != nullptr) {
      const int b = sel.run_of_call[static_cast<size_t>(i)];
      const int k = std::max(c.top_k, 1);
      const size_t from = static_cast<size_t>(b) * K + static_cast<size_t>(i - b) * k;
      std::copy_n(sel.h_token() + from, k, token + static_cast<size_t>(i) * K);
      std::copy_n(sel.h_logprob() + from, k, logprob + static_cast<size_t>(i) * K);
    } else {
      std::memcpy(last + static_cast<size_t>(i) * static_cast<size_t>(V), staged + i * V, row_bytes);
    }
    if (any_aux && c.aux >= 0) {
      std::memcpy(aux_out + static_cast<size_t>(i) * static_cast<size_t>(V), staged + (n + i) * V, row_bytes);
    }
  }
  stats.decoder_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void GpuSlotBackend::copy_slot(int from, int to, int len) { whisper::copy_slot(g_, from, to, len); }

}  // namespace flurry::whisper

namespace flurry::whisper {

bool GpuSlotBackend::encodes_samples() const { return mel_ != nullptr; }

namespace {

// Log-mel of the first n windows staged in the state's sample buffer, each with its 30 s of context.
LogMelArgs context_mel_args(const WhisperGpuState& s, int n) {
  LogMelArgs a;
  a.samples = s.samples;
  a.sample_stride = kLogMelContextSamples;
  a.lengths = s.sample_lengths;
  a.batch = n;
  a.context = true;
  return a;
}

}  // namespace

void GpuSlotBackend::find_floors(const std::vector<const SampleWindow*>& windows) {
  WhisperGpuState& s = *g_.state;
  Mel& m = *mel_;
  cudaStream_t st = *g_.stream;
  struct Tile {
    size_t window;
    int64_t seek;
  };
  std::vector<Tile> tiles;
  std::vector<float> peak(windows.size(), -10.0f);
  for (size_t k = 0; k < windows.size(); ++k) {
    const SampleWindow& w = *windows[k];
    if (!std::isnan(*w.floor)) continue;
    for (int64_t f0 : peak_tiles(w.n_samples)) tiles.push_back(Tile{k, f0});
  }
  for (size_t b = 0; b < tiles.size(); b += static_cast<size_t>(m.E)) {
    const int n = static_cast<int>(std::min(tiles.size() - b, static_cast<size_t>(m.E)));
    g_.stream->synchronize();  // the pinned staging may still feed the previous upload
    for (int k = 0; k < n; ++k) {
      const Tile& t = tiles[b + static_cast<size_t>(k)];
      const SampleWindow& w = *windows[t.window];
      m.h_lengths()[k] = m.stage(k, w.samples, w.n_samples, t.seek, s.samples, st);
    }
    CUDA_CHECK(cudaMemcpyAsync(s.sample_lengths, m.h_lengths(), static_cast<size_t>(n) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, st));
    LogMelArgs a = context_mel_args(s, n);
    a.peak_out = m.d_peak;
    a.out = nullptr;
    g_.logmel->run(a, s.logmel_ws, s.logmel_ws_bytes, st);
    CUDA_CHECK(cudaMemcpyAsync(m.h_peak(), m.d_peak, static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToHost,
                               st));
    g_.stream->synchronize();
    for (int k = 0; k < n; ++k) {
      float& p = peak[tiles[b + static_cast<size_t>(k)].window];
      p = std::max(p, m.h_peak()[k]);
    }
  }
  for (size_t k = 0; k < windows.size(); ++k) {
    if (std::isnan(*windows[k]->floor)) *windows[k]->floor = peak[k] - 8.0f;
  }
}

void GpuSlotBackend::encode_samples(const std::vector<int>& audio, const std::vector<const SampleWindow*>& windows,
                                    InflightStats& stats) {
  FLURRY_CHECK(mel_ != nullptr, "GpuSlotBackend: encode_samples needs a plan with logmel = true (pipeline_plan)");
  const int n = static_cast<int>(audio.size());
  FLURRY_CHECK(n >= 1 && n <= encoder_batch() && windows.size() == audio.size(),
               "GpuSlotBackend: encode of " << n << " windows");
  for (const SampleWindow* w : windows) {
    FLURRY_CHECK(w != nullptr && w->floor != nullptr && w->n_samples >= 0 && (w->samples || w->n_samples == 0) &&
                     w->seek >= 0 && w->n_frames >= 0,
                 "GpuSlotBackend: bad sample window");
  }
  WhisperGpuState& s = *g_.state;
  Mel& m = *mel_;
  cudaStream_t st = *g_.stream;
  const auto t0 = std::chrono::steady_clock::now();
  g_.stream->synchronize();  // the pinned staging may still feed the previous upload
  m.mel0.record(st);
  find_floors(windows);
  for (int k = 0; k < n; ++k) {
    const SampleWindow& w = *windows[static_cast<size_t>(k)];
    m.h_lengths()[k] = m.stage(k, w.samples, w.n_samples, w.seek, s.samples, st);
    m.h_valid()[k] = window_valid_frames(w.n_samples, w.seek, w.n_frames);
    m.h_floor()[k] = *w.floor;
  }
  // Each field of h_small holds E entries, of which the first n are sent.
  CUDA_CHECK(cudaMemcpyAsync(s.sample_lengths, m.h_lengths(), static_cast<size_t>(n) * sizeof(int32_t),
                             cudaMemcpyHostToDevice, st));
  CUDA_CHECK(cudaMemcpyAsync(m.d_valid, m.h_valid(), static_cast<size_t>(n) * sizeof(int32_t), cudaMemcpyHostToDevice,
                             st));
  CUDA_CHECK(cudaMemcpyAsync(m.d_floor, m.h_floor(), static_cast<size_t>(n) * sizeof(float), cudaMemcpyHostToDevice,
                             st));
  LogMelArgs a = context_mel_args(s, n);
  a.floors = m.d_floor;
  a.valid_frames = m.d_valid;
  a.out = s.mel;
  a.out_type = g_.model->dtype();
  g_.logmel->run(a, s.logmel_ws, s.logmel_ws_bytes, st);
  m.mel1.record(st);
  encode_staged(audio);  // ends with the stream synchronised
  const double mel_s = m.mel1.elapsed_ms_since(m.mel0) * 1e-3;
  stats.mel_s += mel_s;
  stats.encoder_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - mel_s;
}

}  // namespace flurry::whisper
