// WhisperGpuState sizing and layout, and WhisperGpu::create: one device arena for weights and state,
// sized from the batch plan before anything runs.
#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>

#include "models/whisper/gpu/conv_frontend.cuh"
#include "kernels/audio/logmel.cuh"
#include "models/common/gpu/decoder_attention.h"
#include "models/whisper/gpu/whisper_gpu.h"
#include "runtime/audio_constants.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/device.h"
#include "runtime/log.h"

namespace flurry::whisper {
namespace {

constexpr const char* kLowerHint = "lower --batch-size or raise --max-gpu-memory";

size_t align_up(size_t n) { return (n + Arena::kDefaultAlign - 1) / Arena::kDefaultAlign * Arena::kDefaultAlign; }

GpuPlan normalized(const WhisperConfig& c, GpuPlan p) {
  FLURRY_CHECK(p.max_windows >= 1 && p.max_slots >= 1, "whisper gpu: plan needs max_windows and max_slots >= 1 (got "
                                                           << p.max_windows << ", " << p.max_slots << ")");
  FLURRY_CHECK(p.max_slots <= 65535, "whisper gpu: max_slots " << p.max_slots << " above 65535");
  if (p.enc_batch <= 0 || p.enc_batch > p.max_windows) p.enc_batch = p.max_windows;
  if (p.max_tokens <= 0) p.max_tokens = static_cast<int>(c.max_target_positions);
  FLURRY_CHECK(p.max_tokens <= c.max_target_positions,
               "whisper gpu: max_tokens " << p.max_tokens << " above max_target_positions " << c.max_target_positions);
  if (p.dec_rows <= 0) p.dec_rows = std::max(p.max_tokens, 8 * p.max_slots);
  p.dec_rows = std::max(p.dec_rows, p.max_tokens);  // one sequence's prefill always fits one chunk
  return p;
}

// The largest split-K workspace the decoder's attention blocks ask for: batch 1 .. max_slots, 1 .. 8
// queries, over the self cache or the cross K/V.
size_t max_attention_workspace(const WhisperConfig& c, const GpuPlan& p) {
  const int heads = static_cast<int>(c.decoder_attention_heads), hd = static_cast<int>(c.decoder_head_dim());
  return std::max(models::gpu_decode_attention_workspace_bytes(heads, hd, p.max_slots, p.max_tokens),
                  models::gpu_decode_attention_workspace_bytes(heads, hd, p.max_slots,
                                                               static_cast<int>(c.max_source_positions)));
}

// Walks the state layout once; `take` either counts or allocates.
void layout(const WhisperConfig& c, DType dtype, const GpuPlan& p, WhisperGpuState* st,
            const std::function<void*(size_t, const char*)>& take) {
  const size_t e = dtype_size(dtype);
  const int64_t d = c.d_model, T = c.max_source_positions, F = c.n_frames();
  const int64_t ffn = std::max(c.encoder_ffn_dim, c.decoder_ffn_dim);
  const int64_t eb = p.enc_batch, rows = eb * T, dr = p.dec_rows, sel = 2 * int64_t{p.max_slots};
  const auto n = [](int64_t v) { return static_cast<size_t>(v); };

  ConvFrontendArgs ca;
  ca.type = dtype;
  ca.batch = eb;
  ca.n_mels = c.num_mel_bins;
  ca.t_in = F;
  ca.d = d;
  const size_t conv_ws = conv_frontend_workspace_bytes(ca);
  const size_t attn_ws = max_attention_workspace(c, p);
  const size_t logmel_ws = p.logmel ? LogMelGpu::workspace_bytes(p.enc_batch) : 0;

  void* mel = take(n(eb * c.num_mel_bins * F) * e, "mel");
  // kLogMelContextSamples per window: long-form windows carry their edge frames' context.
  void* samples = p.logmel ? take(n(eb * kLogMelContextSamples) * 4, "audio samples") : nullptr;
  void* lengths = p.logmel ? take(n(eb) * 4, "sample lengths") : nullptr;
  void* lws = logmel_ws ? take(logmel_ws, "log-mel workspace") : nullptr;
  void* cws = take(conv_ws, "conv front-end workspace");
  void* h = take(n(rows * d) * e, "encoder residual stream");
  void* normed = take(n(rows * d) * e, "encoder normed");
  void* qkv = take(n(rows * 3 * d) * e, "encoder qkv");
  void* attn = take(n(rows * d) * e, "encoder attention");
  void* proj = take(n(rows * d) * e, "encoder projection");
  void* f = take(n(rows * c.encoder_ffn_dim) * e, "encoder ffn");
  void* out = take(n(rows * d) * e, "encoder output");
  std::vector<void*> ckv, sk, sv;
  for (int64_t l = 0; l < c.decoder_layers; ++l) {
    ckv.push_back(take(n(int64_t{p.max_windows} * T * 2 * d) * e, "cross-attention K/V"));
  }
  for (int64_t l = 0; l < c.decoder_layers; ++l) {
    sk.push_back(take(n((int64_t{p.max_slots} + 1) * p.max_tokens * d) * e, "self-attention K cache"));
    sv.push_back(take(n((int64_t{p.max_slots} + 1) * p.max_tokens * d) * e, "self-attention V cache"));
  }
  void* dh = take(n(dr * d) * e, "decoder residual stream");
  void* dn = take(n(dr * d) * e, "decoder normed");
  void* dq = take(n(dr * 3 * d) * e, "decoder qkv");
  void* da = take(n(dr * d) * e, "decoder attention");
  void* dp = take(n(dr * d) * e, "decoder projection");
  void* df = take(n(dr * c.decoder_ffn_dim) * e, "decoder ffn");
  void* ds = take(n(sel * d) * e, "decoder selected rows");
  void* lg = take(n(sel * c.vocab_size) * 4, "logits");
  void* ids = take(n(dr) * 4, "token ids");
  void* index = take(n(models::decode_index_ints(p.max_slots)) * 4, "decoder sequence index");
  void* err = take(4, "embedding / K/V append error word");
  void* aws = attn_ws ? take(attn_ws, "decode attention workspace") : nullptr;
  void* gws = take(GemmLt::kWorkspaceBytes, "cuBLASLt workspace");
  (void)ffn;
  if (st == nullptr) return;
  st->mel = mel;
  st->samples = static_cast<float*>(samples);
  st->sample_lengths = static_cast<int32_t*>(lengths);
  st->logmel_ws = lws;
  st->logmel_ws_bytes = logmel_ws;
  st->conv_ws = cws;
  st->conv_ws_bytes = conv_ws;
  st->enc_h = h;
  st->enc_normed = normed;
  st->enc_qkv = qkv;
  st->enc_attn = attn;
  st->enc_proj = proj;
  st->enc_ffn = f;
  st->enc_out = out;
  st->cross_kv = ckv;
  st->self_k = sk;
  st->self_v = sv;
  st->dec_h = dh;
  st->dec_normed = dn;
  st->dec_qkv = dq;
  st->dec_attn = da;
  st->dec_proj = dp;
  st->dec_ffn = df;
  st->dec_sel = ds;
  st->logits = static_cast<float*>(lg);
  st->ids = static_cast<int32_t*>(ids);
  st->dec_index = static_cast<int32_t*>(index);
  st->error = static_cast<int32_t*>(err);
  st->attn_ws = aws;
  st->attn_ws_bytes = attn_ws;
  st->gemm_ws = gws;
  st->gemm_ws_bytes = GemmLt::kWorkspaceBytes;
}

}  // namespace

size_t WhisperGpuState::device_bytes(const WhisperConfig& c, DType dtype, const GpuPlan& plan) {
  const GpuPlan p = normalized(c, plan);
  size_t total = 0;
  layout(c, dtype, p, nullptr, [&](size_t bytes, const char*) -> void* {
    total += align_up(bytes);
    return nullptr;
  });
  return total;
}

WhisperGpuState::WhisperGpuState(const WhisperConfig& c, DType dtype, const GpuPlan& plan_, Arena& arena)
    : plan(normalized(c, plan_)) {
  d = c.d_model;
  n_ctx = c.max_source_positions;
  n_frames = c.n_frames();
  n_mels = c.num_mel_bins;
  vocab = c.vocab_size;
  max_tokens = plan.max_tokens;
  dec_rows = plan.dec_rows;
  ffn = std::max(c.encoder_ffn_dim, c.decoder_ffn_dim);
  elt = dtype_size(dtype);
  layout(c, dtype, plan, this, [&](size_t bytes, const char* what) { return arena.alloc(bytes, what); });
  host_ints = PinnedBuffer(static_cast<size_t>(dec_rows + models::decode_index_ints(plan.max_slots)) * sizeof(int32_t));
  host_logits = PinnedBuffer(static_cast<size_t>(2 * plan.max_slots) * static_cast<size_t>(vocab) * sizeof(float));
  host_mel = PinnedBuffer(static_cast<size_t>(plan.enc_batch * n_mels * n_frames) * elt);
  encoded.assign(static_cast<size_t>(plan.max_windows), false);
}

size_t whisper_gpu_bytes(const WhisperConfig& c, const WhisperGpuOptions& o) {
  return WhisperGpuModel::device_bytes(c, o.dtype) + WhisperGpuState::device_bytes(c, o.dtype, o.plan) +
         Arena::kDefaultAlign;
}
size_t whisper_gpu_bytes(const WhisperModel& cpu, const WhisperGpuOptions& o) {
  return whisper_gpu_bytes(cpu.config(), o);
}

WhisperGpu::~WhisperGpu() = default;

std::unique_ptr<WhisperGpu> WhisperGpu::load(const std::string& dir, const WhisperGpuOptions& o) {
  const WhisperConfig c = load_whisper_config((std::filesystem::path(dir) / "config.json").string());
  return create(c, Checkpoint::open(dir), o);
}

std::unique_ptr<WhisperGpu> WhisperGpu::create(const WhisperModel& cpu, const WhisperGpuOptions& o) {
  FLURRY_CHECK(!cpu.checkpoint_dir().empty(), "whisper gpu: the CPU model does not say which checkpoint it came from");
  return create(cpu.config(), Checkpoint::open(cpu.checkpoint_dir()), o);
}

std::unique_ptr<WhisperGpu> WhisperGpu::create(const WhisperConfig& c, const Checkpoint& ck,
                                               const WhisperGpuOptions& o) {
  WhisperGpuModel::check_supported(c, o.dtype);
  const size_t weights = WhisperGpuModel::device_bytes(c, o.dtype);
  const size_t state = WhisperGpuState::device_bytes(c, o.dtype, o.plan);
  const size_t need = weights + state + Arena::kDefaultAlign;
  size_t free_b = 0, total_b = 0;
  device_memory_info(&free_b, &total_b);
  // Room for what lives outside the arena: the CUDA context's own use, cuBLASLt and cuFFT plans.
  const size_t margin = std::max<size_t>(size_t{512} << 20, total_b / 50);
  const size_t avail = free_b > margin ? free_b - margin : 0;
  const size_t limit = o.max_gpu_memory > 0 ? std::min(o.max_gpu_memory, avail) : avail;
  if (need > limit) {
    FLURRY_FAIL("whisper gpu: the batch plan needs " << format_bytes(need) << " of device memory (weights "
                << format_bytes(weights) << " + state " << format_bytes(state) << " for " << o.plan.max_windows
                << " windows, " << o.plan.max_slots << " decoder slots) but only " << format_bytes(limit)
                << " is available (" << format_bytes(free_b) << " free of " << format_bytes(total_b)
                << (o.max_gpu_memory > 0 ? ", --max-gpu-memory " + format_bytes(o.max_gpu_memory) : std::string())
                << "); " << kLowerHint);
  }
  std::unique_ptr<WhisperGpu> g(new WhisperGpu());
  g->arena = std::make_unique<Arena>(need, Where::Device, "whisper gpu arena");
  g->arena->set_oom_hint(kLowerHint);
  g->lt = std::make_unique<GemmLt>();
  g->stream = std::make_unique<Stream>();
  g->model = WhisperGpuModel::upload(c, ck, o.dtype, *g->arena, *g->stream);
  g->state = std::make_unique<WhisperGpuState>(c, o.dtype, o.plan, *g->arena);
  if (g->state->plan.logmel) {
    g->logmel = std::make_unique<LogMelGpu>(static_cast<int>(c.num_mel_bins));
    g->logmel->prepare(g->state->plan.enc_batch);
  }
  CUDA_CHECK(cudaMemsetAsync(g->state->error, 0, sizeof(int32_t), *g->stream));
  CUDA_CHECK(cudaStreamSynchronize(*g->stream));
  LOG_INFO("whisper gpu: " << dtype_name(o.dtype) << " weights " << format_bytes(weights) << ", state "
                           << format_bytes(state) << " (" << g->state->plan.max_windows << " windows, "
                           << g->state->plan.max_slots << " slots of " << g->state->plan.max_tokens << " tokens)");
  return g;
}

}  // namespace flurry::whisper
