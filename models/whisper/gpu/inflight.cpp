// InflightScheduler: the slot pool, admission through batched log-mel + encoder, one uniform decoder
// step per iteration, selection on the device, retirement (inflight.h has the design).
#include "models/whisper/gpu/inflight.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <deque>
#include <utility>

#include "kernels/logits.cuh"
#include "kernels/logmel.cuh"
#include "models/whisper/gpu/gpu_ops.h"
#include "runtime/audio_constants.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/stream.h"

namespace flurry::whisper {

namespace {

constexpr int64_t kWindowSamples = kAudioWindowSamples;
constexpr int kTopK = 2;                    // top-1, and the best non-EOT id when top-1 is EOT

struct Slot {
  bool live = false;
  int64_t id = 0;
  std::vector<int32_t> prompt;
  std::vector<int32_t> tokens;  // text tokens picked so far
  int pos = 0;                  // tokens in the slot's self cache
  int32_t next = 0;             // the token the next step feeds once the prompt is in
  int forced_length = -1;
  int max_new_tokens = 0;
};

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

struct InflightScheduler::Impl {
  Impl(WhisperGpu& gpu, InflightOptions o, InflightStats& st) : g(gpu), opt(std::move(o)), stats(st) {}

  WhisperGpu& g;
  InflightOptions opt;
  InflightStats& stats;
  int S = 0, E = 0;
  std::deque<InflightWindow> queue;
  std::vector<Slot> slots;

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
  std::vector<int32_t> feed;
  std::vector<int> free_slots;
  std::vector<const float*> win_ptrs;
  std::vector<int32_t> win_lens;

  Event mel0, mel1, enc1, dec0, dec1;

  ~Impl() {
    for (void* p : {static_cast<void*>(d_suppress), static_cast<void*>(d_blank), static_cast<void*>(d_n_sampled),
                    static_cast<void*>(d_topk), static_cast<void*>(d_topk_lp), static_cast<void*>(d_error)}) {
      (void)cudaFree(p);
    }
  }

  void init() {
    const WhisperGpuState& s = *g.state;
    S = s.plan.max_slots;
    E = s.plan.enc_batch;
    FLURRY_CHECK(s.plan.max_windows >= S + E, "inflight: the plan holds " << s.plan.max_windows
                                                  << " audio indices; the scheduler needs max_slots + enc_batch = "
                                                  << S + E << " (use inflight_plan)");
    FLURRY_CHECK(s.dec_rows >= S, "inflight: " << s.dec_rows << " decoder rows for " << S << " slots");
    FLURRY_CHECK(opt.rules.eot >= 0 && opt.rules.eot < s.vocab, "inflight: EOT id " << opt.rules.eot);
    for (int32_t id : opt.rules.suppress_ids) {
      FLURRY_CHECK(id >= 0 && id < s.vocab, "inflight: suppress id " << id << " outside the vocabulary");
    }
    for (int32_t id : opt.rules.blank_ids) {
      FLURRY_CHECK(id >= 0 && id < s.vocab, "inflight: blank id " << id << " outside the vocabulary");
    }
    d_suppress = device_alloc<int32_t>(opt.rules.suppress_ids.size());
    d_blank = device_alloc<int32_t>(opt.rules.blank_ids.size());
    d_n_sampled = device_alloc<int32_t>(static_cast<size_t>(S));
    d_topk = device_alloc<int32_t>(static_cast<size_t>(S) * kTopK);
    d_topk_lp = device_alloc<float>(static_cast<size_t>(S) * kTopK);
    d_error = device_alloc<int32_t>(1);
    if (!opt.rules.suppress_ids.empty()) {
      CUDA_CHECK(cudaMemcpy(d_suppress, opt.rules.suppress_ids.data(), opt.rules.suppress_ids.size() * 4,
                            cudaMemcpyHostToDevice));
    }
    if (!opt.rules.blank_ids.empty()) {
      CUDA_CHECK(cudaMemcpy(d_blank, opt.rules.blank_ids.data(), opt.rules.blank_ids.size() * 4,
                            cudaMemcpyHostToDevice));
    }
    h_ints = PinnedBuffer(static_cast<size_t>(S * (1 + kTopK) + 1) * sizeof(int32_t));
    slots.assign(static_cast<size_t>(S), Slot{});
    for (Slot& sl : slots) sl.tokens.reserve(static_cast<size_t>(s.max_tokens));
    seqs.reserve(static_cast<size_t>(S));
    feed.assign(static_cast<size_t>(S), 0);
    free_slots.reserve(static_cast<size_t>(S));
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

  // One encoder batch into free slots; returns the number of windows admitted.
  int admit_batch() {
    free_slots.clear();
    for (int i = 0; i < S; ++i) {
      if (!slots[static_cast<size_t>(i)].live) free_slots.push_back(i);
    }
    if (free_slots.empty() || queue.empty()) return 0;
    const bool from_samples = queue.front().mel == nullptr;
    const int limit = std::min<int>({E, static_cast<int>(free_slots.size()), static_cast<int>(queue.size())});
    int n = 0;
    win_ptrs.clear();
    win_lens.clear();
    while (n < limit && (queue[static_cast<size_t>(n)].mel == nullptr) == from_samples) {
      const InflightWindow& w = queue[static_cast<size_t>(n)];
      if (from_samples) {
        FLURRY_CHECK(w.samples != nullptr || w.n_samples == 0, "inflight: window " << w.id << " has no audio");
        win_ptrs.push_back(w.samples);
        win_lens.push_back(static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(w.n_samples, 0), kWindowSamples)));
      } else {
        win_ptrs.push_back(w.mel);
      }
      ++n;
    }
    mel0.record(*g.stream);
    if (from_samples) {
      logmel_windows(g, n, win_ptrs.data(), win_lens.data());
    } else {
      upload_mels(g, n, win_ptrs.data());
    }
    mel1.record(*g.stream);
    encode_windows(g, S, n);
    for (int k = 0; k < n; ++k) {
      const int slot = free_slots[static_cast<size_t>(k)];
      move_cross_kv(S + k, slot);
      InflightWindow& w = queue.front();
      Slot& sl = slots[static_cast<size_t>(slot)];
      sl.live = true;
      sl.id = w.id;
      sl.prompt = std::move(w.prompt);
      sl.tokens.clear();
      sl.pos = 0;
      sl.next = 0;
      sl.forced_length = w.forced_length;
      sl.max_new_tokens = w.max_new_tokens;
      queue.pop_front();
    }
    enc1.record(*g.stream);
    enc1.synchronize();
    stats.mel_s += mel1.elapsed_ms_since(mel0) * 1e-3;
    stats.encoder_s += enc1.elapsed_ms_since(mel1) * 1e-3;
    stats.windows += n;
    stats.encoder_batches += 1;
    return n;
  }

  // Moves the highest live slot into the lowest free one until the live slots are 0..n-1.
  void compact() {
    int lo = 0, hi = S - 1;
    for (;;) {
      while (lo < S && slots[static_cast<size_t>(lo)].live) ++lo;
      while (hi >= 0 && !slots[static_cast<size_t>(hi)].live) --hi;
      if (lo >= hi) return;
      Slot& from = slots[static_cast<size_t>(hi)];
      copy_slot(g, hi, lo, from.pos);
      move_cross_kv(hi, lo);
      std::swap(slots[static_cast<size_t>(lo)], from);  // `from` becomes the free one
      from.live = false;
      stats.slot_moves += 1;
    }
  }

  int live_count() const {
    int n = 0;
    while (n < S && slots[static_cast<size_t>(n)].live) ++n;
    return n;
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
    a.rules.n_suppress = static_cast<int>(opt.rules.suppress_ids.size());
    a.rules.suppress_blank = !opt.rules.blank_ids.empty();
    a.rules.blank_ids = d_blank;
    a.rules.n_blank = static_cast<int>(opt.rules.blank_ids.size());
    a.rules.timestamps = false;
    a.rules.eot = opt.rules.eot;
    a.top_k = kTopK;
    a.topk_ids = d_topk;
    a.topk_logprobs = d_topk_lp;
    a.error = d_error;
    logits_select(a, *g.stream);
  }

  // The id a slot takes from its top-2 row (inflight.h, step 4).
  int32_t pick(const Slot& sl, const int32_t* top) const {
    const int32_t eot = opt.rules.eot;
    const int64_t vocab = g.state->vocab;
    const auto valid = [&](int32_t id) { return id >= 0 && id < vocab; };
    if (sl.forced_length < 0) return valid(top[0]) ? top[0] : eot;
    if (static_cast<int>(sl.tokens.size()) >= sl.forced_length) return eot;
    const int32_t best = top[0] != eot ? top[0] : top[1];
    return valid(best) && best != eot ? best : 0;  // a NaN row: any text id keeps the length
  }

  void step(const std::function<void(InflightResult&&)>& on_done) {
    WhisperGpuState& s = *g.state;
    dec0.record(*g.stream);
    compact();
    const int n = live_count();
    if (n == 0) return;
    seqs.clear();
    int32_t* n_sampled = h_n_sampled();
    for (int i = 0; i < n; ++i) {
      const Slot& sl = slots[static_cast<size_t>(i)];
      feed[static_cast<size_t>(i)] = sl.pos < static_cast<int>(sl.prompt.size()) ? sl.prompt[static_cast<size_t>(sl.pos)]
                                                                                 : sl.next;
      GpuSeq q;
      q.slot = i;
      q.audio = i;
      q.pos = sl.pos;
      q.tokens = &feed[static_cast<size_t>(i)];
      q.n_new = 1;
      seqs.push_back(q);
      n_sampled[i] = static_cast<int32_t>(sl.tokens.size());
    }
    // The pinned mirrors are idle: the previous step ended with a synchronisation.
    CUDA_CHECK(cudaMemcpyAsync(d_n_sampled, n_sampled, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, *g.stream));
    decoder_forward(g, seqs, nullptr, nullptr);
    select(n);
    CUDA_CHECK(cudaMemcpyAsync(h_topk(), d_topk, static_cast<size_t>(n) * kTopK * 4, cudaMemcpyDeviceToHost,
                               *g.stream));
    dec1.record(*g.stream);
    dec1.synchronize();
    stats.decoder_s += dec1.elapsed_ms_since(dec0) * 1e-3;
    stats.steps += 1;
    stats.sequence_steps += n;

    for (int i = 0; i < n; ++i) {
      Slot& sl = slots[static_cast<size_t>(i)];
      sl.pos += 1;
      if (sl.pos < static_cast<int>(sl.prompt.size())) continue;  // still feeding the prompt
      const int32_t id = pick(sl, h_topk() + static_cast<size_t>(i) * kTopK);
      const bool eot = id == opt.rules.eot;
      if (!eot) sl.tokens.push_back(id);
      const bool full = sl.pos + 1 > s.max_tokens ||
                        (sl.max_new_tokens > 0 && static_cast<int>(sl.tokens.size()) >= sl.max_new_tokens);
      if (!eot && !full) {
        sl.next = id;
        continue;
      }
      InflightResult r;
      r.id = sl.id;
      r.tokens = sl.tokens;
      r.ended_with_eot = eot;
      r.forced_length = sl.forced_length;
      sl.live = false;
      on_done(std::move(r));
    }
  }

  void run(const std::function<void(InflightResult&&)>& on_done) {
    CUDA_CHECK(cudaMemsetAsync(d_error, 0, sizeof(int32_t), *g.stream));
    for (;;) {
      const auto is_live = [](const Slot& sl) { return sl.live; };
      if (opt.refill || std::none_of(slots.begin(), slots.end(), is_live)) {
        while (admit_batch() > 0) {
        }
      }
      const bool any_live = std::any_of(slots.begin(), slots.end(), is_live);
      if (!any_live) {
        FLURRY_CHECK(queue.empty(), "inflight: windows wait but none could be admitted");
        break;
      }
      step(on_done);
    }
    CUDA_CHECK(cudaMemcpyAsync(h_error(), d_error, sizeof(int32_t), cudaMemcpyDeviceToHost, *g.stream));
    g.stream->synchronize();
    FLURRY_CHECK(*h_error() == 0, "inflight: logits_select flagged bad ids or history (bits " << *h_error() << ")");
  }
};

InflightScheduler::InflightScheduler(WhisperGpu& g, InflightOptions options)
    : impl_(std::make_unique<Impl>(g, std::move(options), stats_)) {
  impl_->init();
}

InflightScheduler::~InflightScheduler() = default;

void InflightScheduler::submit(InflightWindow w) {
  FLURRY_CHECK(!w.prompt.empty(), "inflight: window " << w.id << " has no prompt");
  FLURRY_CHECK((w.samples != nullptr) != (w.mel != nullptr) || (w.mel == nullptr && w.n_samples == 0),
               "inflight: window " << w.id << " needs exactly one of samples and mel");
  FLURRY_CHECK(w.mel != nullptr || impl_->g.logmel != nullptr,
               "inflight: window " << w.id << " brings samples but the plan has no device log-mel");
  const int ctx = static_cast<int>(impl_->g.state->max_tokens);
  FLURRY_CHECK(static_cast<int>(w.prompt.size()) + std::max(w.forced_length, 0) + 1 <= ctx,
               "inflight: window " << w.id << ": prompt " << w.prompt.size() << " + forced " << w.forced_length
                                   << " + EOT exceed the decoder context of " << ctx);
  impl_->queue.push_back(std::move(w));
}

void InflightScheduler::run(const std::function<void(InflightResult&&)>& on_done) { impl_->run(on_done); }

}  // namespace flurry::whisper
