// BERT on the GPU (see bert_gpu.h): upload, buffers, the varlen forward of padded shape buckets
// (eager or as CUDA graphs), the two staging slots and length-sorted, pipelined batching.
#include "models/bert/gpu/bert_gpu.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "kernels/embed_layernorm.cuh"
#include "kernels/segment_pool.cuh"
#include "models/bert/model.h"
#include "models/common/gpu/weight_upload.h"
#include "models/common/weight_table.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/device.h"
#include "runtime/log.h"

namespace flurry::bert {

namespace {

constexpr const char* kLowerHint =
    "lower --max-batch-tokens or --batch-size, raise --max-gpu-memory, or free device memory";

size_t align_up(size_t n) { return (n + Arena::kDefaultAlign - 1) / Arena::kDefaultAlign * Arena::kDefaultAlign; }

SegmentPool segment_pool_mode(Pooling p) {
  switch (p) {
    case Pooling::kMean: return SegmentPool::kMean;
    case Pooling::kCls: return SegmentPool::kFirst;
    case Pooling::kMax: return SegmentPool::kMax;
    case Pooling::kMeanSqrtLen: return SegmentPool::kMeanSqrtLen;
  }
  FLURRY_FAIL("bert gpu: unknown pooling");
}

models::GpuLinear linear(const models::DeviceWeights& w, const std::string& key, int64_t in, int64_t out) {
  models::GpuLinear l;
  l.w = w.get(key + ".weight");
  l.b = w.get(key + ".bias");
  l.in = in;
  l.out = out;
  return l;
}
models::GpuLayerNorm layernorm(const models::DeviceWeights& w, const std::string& key) {
  return models::GpuLayerNorm{w.get(key + ".weight"), w.get(key + ".bias")};
}

int resolved_max_batch(int max_batch, int64_t max_tokens) {
  const int64_t b = max_batch > 0 ? max_batch : std::min<int64_t>(max_tokens, kDefaultMaxBatch);
  return static_cast<int>(std::min<int64_t>(b, 65535));  // the attention grid's z limit
}

// Stage boundaries recorded per batch when timing: 0 and 1 around the H2D (copy stream), 2 when
// the compute stream starts the batch, 3 after the embeddings, 4 + 2i after layer i's attention
// (+add & LN), 5 + 2i after its FFN, then after pooling, then after the D2H (copy stream).
size_t event_count(int64_t layers) { return static_cast<size_t>(6 + 2 * layers); }

// flash_attention's grid has ceil(max_len / 64) query tiles (kBlockQ, kernels/attention.cu): every
// max_len of one 64-bucket launches the same grid.
constexpr int kQueryTile = 64;
constexpr int kSlots = 2;
// Graphs kept at most (bucket x slot); past it, new buckets run eagerly. A length-sorted run meets
// a few dozen buckets: the full batches' one and the tails of each request list.
constexpr size_t kMaxGraphs = 128;

}  // namespace

// One staging slot (see "Staging" in bert_gpu.h).
struct BertGpu::Slot {
  int32_t* ids = nullptr;    // device [max_tokens]
  int32_t* cu = nullptr;     // device [max_batch + 1]
  float* pooled = nullptr;   // device [max_batch, d]
  int32_t* error = nullptr;  // device word, kEmbedBad* bits
  PinnedBuffer host_in;      // ids [max_tokens], then cu_seqlens [max_batch + 1]
  PinnedBuffer host_out;     // vectors [max_batch, d] fp32, then the error word
  Event h2d{false}, computed{false}, d2h{false};
  std::vector<Event> stages;  // time_stages: event_count() boundaries
  // The batch in flight and where its vectors go.
  bool queued = false;
  int batch = 0;
  int64_t rows = 0;
  BertBatchShape shape;
  float* out = nullptr;
  const size_t* out_rows = nullptr;  // row of `out` per sequence; null: sequence b -> row b
};

BertGpu::BertGpu() = default;

BertGpu::~BertGpu() { abandon(); }

BertBatchShape BertGpu::bucket_shape(int64_t rows, int batch, int max_len, int64_t max_tokens, int max_batch) {
  FLURRY_CHECK(rows >= 1 && rows <= max_tokens && batch >= 1 && batch <= max_batch && max_len >= 1,
               "bert gpu: no bucket for " << rows << " tokens in " << batch << " sequences (caps " << max_tokens
                                          << ", " << max_batch << ")");
  BertBatchShape s;
  // Tokens: eight steps per power of two, at least 64: under 1/8 more rows, ~8 sizes per octave.
  int64_t top = 1;
  while (top * 2 <= rows) top *= 2;
  const int64_t step = std::max<int64_t>(64, top / 8);
  s.rows = std::min(max_tokens, (rows + step - 1) / step * step);
  // Sequences: a power of two; the empty ones cost a few idle attention and pooling blocks.
  int64_t b = 1;
  while (b < batch) b *= 2;
  s.batch = static_cast<int>(std::min<int64_t>(b, max_batch));
  s.max_len = (max_len + kQueryTile - 1) / kQueryTile * kQueryTile;
  return s;
}

void BertGpu::check_supported(const BertConfig& c, const BertGpuOptions& o) {
  FLURRY_CHECK(o.dtype == DType::F16 || o.dtype == DType::BF16,
               "bert gpu: weights must be f16 or bf16, not " << dtype_name(o.dtype));
  FLURRY_CHECK(c.head_dim() == 32 || c.head_dim() == 64,
               "bert gpu: head_dim " << c.head_dim() << " (hidden " << c.hidden_size << " / " << c.num_attention_heads
                                     << " heads): the attention kernels are built for 32 and 64; use --device cpu");
  FLURRY_CHECK(c.hidden_size % 8 == 0 && c.intermediate_size % 8 == 0,
               "bert gpu: hidden " << c.hidden_size << " and intermediate " << c.intermediate_size
                                   << " must be multiples of 8");
  FLURRY_CHECK(c.hidden_size <= 1536, "bert gpu: hidden " << c.hidden_size << " above the pooling kernel's 1536");
  FLURRY_CHECK(c.type_vocab_size >= 1, "bert gpu: no token-type embedding");
  FLURRY_CHECK(o.max_seq_len >= 0 && o.max_seq_len <= c.max_position_embeddings,
               "bert gpu: max_seq_len " << o.max_seq_len << " above max_position_embeddings "
                                        << c.max_position_embeddings);
}

size_t BertGpu::weight_bytes(const BertConfig& c, DType dtype) {
  return models::table_bytes(bert_weight_table(c), dtype, Arena::kDefaultAlign);
}

size_t BertGpu::state_bytes(const BertConfig& c, DType dtype, int64_t max_tokens, int max_batch) {
  const auto t = static_cast<size_t>(max_tokens);
  const size_t elt = dtype_size(dtype), d = static_cast<size_t>(c.hidden_size);
  const size_t ffn = static_cast<size_t>(c.intermediate_size);
  const auto b = static_cast<size_t>(resolved_max_batch(max_batch, max_tokens));
  size_t n = 0;
  for (size_t bytes :
       {t * d * elt, t * 3 * d * elt, t * d * elt, t * d * elt, t * ffn * elt, GemmLt::kWorkspaceBytes}) {
    n += align_up(bytes);
  }
  for (int k = 0; k < kSlots; ++k) {
    for (size_t bytes : {b * d * sizeof(float), t * sizeof(int32_t), (b + 1) * sizeof(int32_t), sizeof(int32_t)}) {
      n += align_up(bytes);
    }
  }
  return n;
}

int64_t BertGpu::tokens_for_memory(const BertConfig& c, DType dtype, size_t bytes, int max_batch) {
  const size_t weights = weight_bytes(c, dtype) + Arena::kDefaultAlign;
  if (bytes <= weights) return 0;
  int64_t lo = 0, hi = kDefaultMaxTokens / 64;  // in units of 64 tokens
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (weights + state_bytes(c, dtype, mid * 64, max_batch) <= bytes) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo * 64;
}

std::unique_ptr<BertGpu> BertGpu::load(const std::string& dir, const BertGpuOptions& o) {
  FLURRY_CHECK(std::filesystem::is_directory(dir), "model directory '" << dir << "' does not exist");
  const BertConfig c = load_bert_config((std::filesystem::path(dir) / "config.json").string());
  return create(c, Checkpoint::open(dir), o);
}

std::unique_ptr<BertGpu> BertGpu::create(const BertConfig& c, const Checkpoint& ck, const BertGpuOptions& o) {
  check_supported(c, o);
  std::unique_ptr<BertGpu> g(new BertGpu());
  g->config_ = c;
  g->opts_ = o;
  g->max_seq_len_ = o.max_seq_len > 0 ? o.max_seq_len : c.max_position_embeddings;
  std::string why;
  FLURRY_CHECK(cuda_device_count(&why) > 0, "bert gpu: no usable GPU (" << why << "); use --device cpu");
  size_t free_b = 0, total_b = 0;
  device_memory_info(&free_b, &total_b);
  // Room for what lives outside the arena: the CUDA context and cuBLASLt's own allocations.
  const size_t margin = std::max<size_t>(size_t{512} << 20, total_b / 50);
  const size_t avail = free_b > margin ? free_b - margin : 0;
  const size_t limit = o.max_gpu_memory > 0 ? std::min(o.max_gpu_memory, avail) : avail;
  int64_t tokens = o.max_tokens;
  if (tokens <= 0) tokens = tokens_for_memory(c, o.dtype, limit, o.max_batch);
  FLURRY_CHECK(tokens >= g->max_seq_len_,
               "bert gpu: a token budget of " << tokens << " cannot hold one " << g->max_seq_len_ << "-token sequence ("
                                              << format_bytes(limit) << " available); " << kLowerHint);
  g->max_tokens_ = tokens;
  g->max_batch_ = resolved_max_batch(o.max_batch, tokens);
  const size_t weights = weight_bytes(c, o.dtype);
  const size_t state = state_bytes(c, o.dtype, tokens, g->max_batch_);
  const size_t need = weights + state + Arena::kDefaultAlign;
  if (need > limit) {
    FLURRY_FAIL("bert gpu: " << format_bytes(need) << " of device memory needed (weights " << format_bytes(weights)
                             << " + buffers " << format_bytes(state) << " for " << tokens << " tokens, "
                             << g->max_batch_ << " sequences per batch) but " << format_bytes(limit)
                             << " is available (" << format_bytes(free_b) << " free of " << format_bytes(total_b)
                             << "); " << kLowerHint);
  }
  g->arena_ = std::make_unique<Arena>(need, Where::Device, "bert gpu arena");
  g->arena_->set_oom_hint(kLowerHint);
  g->lt_ = std::make_unique<GemmLt>();
  g->stream_ = std::make_unique<Stream>();
  g->upload(ck);
  g->allocate();
  LOG_INFO("bert gpu: " << dtype_name(o.dtype) << " weights " << format_bytes(weights) << ", buffers "
                        << format_bytes(state) << " (" << tokens << " tokens, " << g->max_batch_
                        << " sequences per batch, max_seq_len " << g->max_seq_len_ << "), CUDA graphs "
                        << (g->graphs_enabled_ ? "on" : "off"));
  return g;
}

void BertGpu::upload(const Checkpoint& ck) {
  const BertConfig& c = config_;
  const models::WeightTable t = bert_weight_table(c, detect_bert_prefix(ck));
  models::validate_checkpoint(t, ck);
  const models::DeviceWeights w = models::upload_weights(t, ck, opts_.dtype, *arena_, *stream_);
  const int64_t d = c.hidden_size, ffn = c.intermediate_size;
  word_ = w.get("embeddings.word_embeddings.weight");
  position_ = w.get("embeddings.position_embeddings.weight");
  token_type_ = w.get("embeddings.token_type_embeddings.weight");
  emb_ln_ = layernorm(w, "embeddings.LayerNorm");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string k = "encoder.layer." + std::to_string(i) + ".";
    BertGpuLayer l;
    l.qkv = linear(w, k + "attention.qkv", d, 3 * d);
    l.attn_out = linear(w, k + "attention.output.dense", d, d);
    l.attn_ln = layernorm(w, k + "attention.output.LayerNorm");
    l.ffn_in = linear(w, k + "intermediate.dense", d, ffn);
    l.ffn_out = linear(w, k + "output.dense", ffn, d);
    l.ffn_ln = layernorm(w, k + "output.LayerNorm");
    layers_.push_back(l);
  }
}

void BertGpu::allocate() {
  const size_t t = static_cast<size_t>(max_tokens_), d = static_cast<size_t>(config_.hidden_size);
  const size_t elt = dtype_size(opts_.dtype), b = static_cast<size_t>(max_batch_);
  h_ = arena_->alloc(t * d * elt, "hidden states");
  qkv_ = arena_->alloc(t * 3 * d * elt, "fused QKV");
  attn_ = arena_->alloc(t * d * elt, "attention output");
  proj_ = arena_->alloc(t * d * elt, "projection output");
  ffn_ = arena_->alloc(t * static_cast<size_t>(config_.intermediate_size) * elt, "FFN hidden");
  // Attention leaves a padding row (no sequence) as it was: zeros from the start keep it finite.
  CUDA_CHECK(cudaMemsetAsync(attn_, 0, t * d * elt, *stream_));
  ctx_.lt = lt_.get();
  ctx_.stream = *stream_;
  ctx_.gemm_ws = arena_->alloc(GemmLt::kWorkspaceBytes, "cuBLASLt workspace");
  ctx_.gemm_ws_bytes = GemmLt::kWorkspaceBytes;
  ctx_.dtype = opts_.dtype;
  ctx_.d = config_.hidden_size;
  ctx_.eps = config_.layer_norm_eps;
  h2d_stream_ = std::make_unique<Stream>();
  d2h_stream_ = std::make_unique<Stream>();
  slots_.resize(kSlots);
  for (Slot& sl : slots_) {
    sl.pooled = static_cast<float*>(arena_->alloc(b * d * sizeof(float), "pooled vectors"));
    sl.ids = static_cast<int32_t*>(arena_->alloc(t * sizeof(int32_t), "token ids"));
    sl.cu = static_cast<int32_t*>(arena_->alloc((b + 1) * sizeof(int32_t), "cu_seqlens"));
    sl.error = static_cast<int32_t*>(arena_->alloc(sizeof(int32_t), "error word"));
    sl.host_in = PinnedBuffer((t + b + 1) * sizeof(int32_t));
    sl.host_out = PinnedBuffer(b * d * sizeof(float) + sizeof(int32_t));
    if (opts_.time_stages) {
      for (size_t i = 0; i < event_count(config_.num_hidden_layers); ++i) sl.stages.emplace_back(true);
    }
    CUDA_CHECK(cudaMemsetAsync(sl.error, 0, sizeof(int32_t), *stream_));
  }
  // Per-launch events or synchronisation cannot sit inside a graph.
  graphs_enabled_ = opts_.use_graphs && !opts_.time_stages && !sync_launches();
  stream_->synchronize();
}

void BertGpu::run_layers(Slot& sl, const BertBatchShape& shape) {
  models::GpuAttentionShape a;
  a.heads = static_cast<int>(config_.num_attention_heads);
  a.head_dim = static_cast<int>(config_.head_dim());
  a.batch = shape.batch;
  a.max_len = shape.max_len;
  a.cu_seqlens = sl.cu;
  a.scale = 1.0f;  // head_dim^-0.5 folded into the query weights at load time
  const int64_t rows = shape.rows;
  size_t ev = 4;
  for (const BertGpuLayer& l : layers_) {
    models::gpu_self_attention(ctx_, l.qkv, l.attn_out, a, h_, qkv_, attn_, proj_, rows);
    models::gpu_add_layernorm(ctx_, h_, proj_, l.attn_ln, h_, rows);
    if (opts_.time_stages) sl.stages[ev++].record(*stream_);
    models::gpu_ffn(ctx_, l.ffn_in, l.ffn_out, h_, ffn_, proj_, rows);
    models::gpu_add_layernorm(ctx_, h_, proj_, l.ffn_ln, h_, rows);
    if (opts_.time_stages) sl.stages[ev++].record(*stream_);
  }
}

void BertGpu::enqueue_forward(int k, const BertBatchShape& shape) {
  Slot& sl = slots_[static_cast<size_t>(k)];
  cudaStream_t s = *stream_;
  EmbedLayerNormArgs e;
  e.ids = sl.ids;
  e.cu_seqlens = sl.cu;
  e.word = word_;
  e.pos = position_;
  e.type_row = token_type_;  // row 0: token type 0
  e.gamma = emb_ln_.gamma;
  e.beta = emb_ln_.beta;
  e.out = h_;
  e.error = sl.error;
  e.type = opts_.dtype;
  e.batch = shape.batch;
  e.rows = shape.rows;
  e.vocab = config_.vocab_size;
  e.n_pos = config_.max_position_embeddings;
  e.d = config_.hidden_size;
  e.eps = config_.layer_norm_eps;
  embed_layernorm(e, s);
  if (opts_.time_stages) sl.stages[3].record(s);

  run_layers(sl, shape);

  SegmentPoolArgs p;
  p.x = h_;
  p.cu_seqlens = sl.cu;
  p.out = sl.pooled;
  p.type = opts_.dtype;
  p.batch = shape.batch;
  p.d = config_.hidden_size;
  p.mode = segment_pool_mode(opts_.pooling);
  p.l2_normalize = opts_.normalize;
  segment_pool(p, s);
}

void BertGpu::launch_forward(int k, const BertBatchShape& shape) {
  if (!graphs_enabled_) {
    enqueue_forward(k, shape);
    return;
  }
  const auto key = std::make_pair(shape, k);
  const auto it = graphs_.find(key);
  if (it != graphs_.end()) {
    it->second.launch(*stream_);
    ++times_.graph_batches;
    return;
  }
  // A bucket's first batch runs eagerly: cuBLASLt builds its plans (descriptors, heuristic) and
  // the kernels their attributes outside any capture. Its next batch in each slot is captured.
  if (ran_eagerly_.insert(shape).second || graphs_.size() >= kMaxGraphs) {
    enqueue_forward(k, shape);
    return;
  }
  const size_t plans = lt_->cached_plans();
  CudaGraph g;
  g.capture(*stream_, [&] { enqueue_forward(k, shape); });
  FLURRY_CHECK(lt_->cached_plans() == plans, "bert gpu: cuBLASLt built a plan while capturing the graph of "
                                                 << shape.rows << " tokens x " << shape.batch << " sequences (max "
                                                 << shape.max_len << "): plans must exist before capture");
  g.launch(*stream_);
  graphs_.emplace(key, std::move(g));
  ++times_.graph_batches;
}

void BertGpu::enqueue_batch(int k, const int32_t* ids, const int32_t* cu_seqlens, int batch, float* out,
                            const size_t* out_rows) {
  Slot& sl = slots_[static_cast<size_t>(k)];
  FLURRY_CHECK(!sl.queued, "bert gpu: staging slot " << k << " still holds a batch");
  FLURRY_CHECK(batch > 0 && batch <= max_batch_, "bert gpu: " << batch << " sequences, at most " << max_batch_);
  FLURRY_CHECK(cu_seqlens[0] == 0, "bert gpu: cu_seqlens must start at 0");
  int max_len = 0;
  for (int b = 0; b < batch; ++b) {
    const int n = cu_seqlens[b + 1] - cu_seqlens[b];
    FLURRY_CHECK(n >= 1 && n <= max_seq_len_,
                 "bert gpu: sequence " << b << " has " << n << " tokens, outside [1, " << max_seq_len_ << "]");
    max_len = std::max(max_len, n);
  }
  const int64_t rows = cu_seqlens[batch];
  FLURRY_CHECK(rows <= max_tokens_, "bert gpu: " << rows << " tokens in one batch, the budget is " << max_tokens_);
  const BertBatchShape shape = bucket_shape(rows, batch, max_len, max_tokens_, max_batch_);
  const auto d = static_cast<size_t>(config_.hidden_size);
  const size_t n_ev = sl.stages.size();

  // Host -> device on the copy stream: the ids, and cu_seqlens padded with empty sequences to the
  // bucket's count (their start is the end of the real rows; the padding rows belong to none).
  auto* hi = sl.host_in.as<int32_t>();
  int32_t* hc = hi + max_tokens_;
  std::memcpy(hi, ids, static_cast<size_t>(rows) * sizeof(int32_t));
  std::memcpy(hc, cu_seqlens, static_cast<size_t>(batch + 1) * sizeof(int32_t));
  std::fill(hc + batch + 1, hc + shape.batch + 1, cu_seqlens[batch]);
  cudaStream_t c = *h2d_stream_;
  if (opts_.time_stages) sl.stages[0].record(c);
  CUDA_CHECK(cudaMemcpyAsync(sl.ids, hi, static_cast<size_t>(rows) * sizeof(int32_t), cudaMemcpyHostToDevice, c));
  CUDA_CHECK(cudaMemcpyAsync(sl.cu, hc, static_cast<size_t>(shape.batch + 1) * sizeof(int32_t),
                             cudaMemcpyHostToDevice, c));
  if (opts_.time_stages) sl.stages[1].record(c);
  sl.h2d.record(c);

  // The forward on the compute stream, once its inputs are there.
  stream_->wait(sl.h2d);
  if (opts_.time_stages) sl.stages[2].record(*stream_);
  launch_forward(k, shape);
  if (opts_.time_stages) sl.stages[n_ev - 2].record(*stream_);
  sl.computed.record(*stream_);

  // Device -> host on the other copy stream: the real sequences' vectors and the error word.
  cudaStream_t o = *d2h_stream_;
  d2h_stream_->wait(sl.computed);
  auto* ho = sl.host_out.as<float>();
  CUDA_CHECK(cudaMemcpyAsync(ho, sl.pooled, static_cast<size_t>(batch) * d * sizeof(float), cudaMemcpyDeviceToHost, o));
  CUDA_CHECK(cudaMemcpyAsync(ho + static_cast<size_t>(max_batch_) * d, sl.error, sizeof(int32_t),
                             cudaMemcpyDeviceToHost, o));
  if (opts_.time_stages) sl.stages[n_ev - 1].record(o);
  sl.d2h.record(o);
  sl.queued = true;
  sl.batch = batch;
  sl.rows = rows;
  sl.shape = shape;
  sl.out = out;
  sl.out_rows = out_rows;
}

void BertGpu::retire(int k) {
  Slot& sl = slots_[static_cast<size_t>(k)];
  if (!sl.queued) return;
  sl.d2h.synchronize();
  sl.queued = false;
  const auto d = static_cast<size_t>(config_.hidden_size);
  const auto* ho = sl.host_out.as<float>();
  int32_t err = 0;
  std::memcpy(&err, ho + static_cast<size_t>(max_batch_) * d, sizeof(int32_t));
  if (err != 0) {  // clear the word so a caller that handles the error can go on
    CUDA_CHECK(cudaMemsetAsync(sl.error, 0, sizeof(int32_t), *stream_));
    FLURRY_FAIL("bert gpu: a token id outside the vocabulary of " << config_.vocab_size << " or a position past "
                                                                  << config_.max_position_embeddings);
  }
  for (int b = 0; b < sl.batch; ++b) {
    const size_t row = sl.out_rows != nullptr ? sl.out_rows[b] : static_cast<size_t>(b);
    std::memcpy(sl.out + row * d, ho + static_cast<size_t>(b) * d, d * sizeof(float));
  }
  times_.batches += 1;
  times_.sequences += sl.batch;
  times_.tokens += sl.rows;
  times_.padded_tokens += sl.shape.rows;
  if (opts_.time_stages) {
    auto ms = [&](size_t a, size_t b) { return static_cast<double>(sl.stages[b].elapsed_ms_since(sl.stages[a])); };
    const size_t n_ev = sl.stages.size();
    times_.h2d_ms += ms(0, 1);
    times_.embed_ms += ms(2, 3);
    for (size_t i = 0; i < layers_.size(); ++i) {
      times_.attention_ms += ms(3 + 2 * i, 4 + 2 * i);
      times_.ffn_ms += ms(4 + 2 * i, 5 + 2 * i);
    }
    times_.pool_ms += ms(n_ev - 3, n_ev - 2);
    times_.d2h_ms += ms(n_ev - 2, n_ev - 1);
  }
}

void BertGpu::abandon() noexcept {
  for (const Stream* s : {stream_.get(), h2d_stream_.get(), d2h_stream_.get()}) {
    if (s != nullptr) (void)cudaStreamSynchronize(*s);
  }
  for (Slot& sl : slots_) sl.queued = false;
}

void BertGpu::forward_batch(const int32_t* ids, const int32_t* cu_seqlens, int batch, float* out) {
  if (batch == 0) return;
  try {
    for (int e = 0; e < kSlots; ++e) retire((next_slot_ + e) % kSlots);
    const int k = next_slot_;
    enqueue_batch(k, ids, cu_seqlens, batch, out, nullptr);
    next_slot_ = (k + 1) % kSlots;
    retire(k);
  } catch (...) {
    abandon();
    throw;
  }
}

void BertGpu::encode(const std::vector<std::vector<int32_t>>& seqs, float* out) {
  const size_t n = seqs.size();
  if (n == 0) return;
  for (const std::vector<int32_t>& s : seqs) {  // refused before anything is queued
    FLURRY_CHECK(!s.empty() && static_cast<int64_t>(s.size()) <= max_seq_len_,
                 "bert gpu: a sequence of " << s.size() << " tokens, outside [1, " << max_seq_len_ << "]");
  }
  // Longest first: batches of similar lengths (little wasted attention work) and the largest
  // batch, which would fail the budget if anything does, goes first.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return seqs[a].size() > seqs[b].size(); });
  std::vector<int32_t> ids, cu;
  ids.reserve(static_cast<size_t>(max_tokens_));
  cu.reserve(static_cast<size_t>(max_batch_) + 1);
  try {
    size_t i = 0;
    while (i < n) {
      ids.clear();
      cu.assign(1, 0);
      const size_t first = i;
      while (i < n && static_cast<int>(cu.size()) - 1 < max_batch_ &&
             static_cast<int64_t>(ids.size() + seqs[order[i]].size()) <= max_tokens_) {
        const std::vector<int32_t>& s = seqs[order[i]];
        ids.insert(ids.end(), s.begin(), s.end());
        cu.push_back(static_cast<int32_t>(ids.size()));
        ++i;
      }
      FLURRY_CHECK(i > first, "bert gpu: a sequence of " << seqs[order[i]].size()
                                                          << " tokens does not fit the budget of " << max_tokens_
                                                          << " tokens");
      // The slot's previous batch comes out first; then this one is staged while the other slot's
      // batch still runs.
      const int k = next_slot_;
      retire(k);
      enqueue_batch(k, ids.data(), cu.data(), static_cast<int>(i - first), out, order.data() + first);
      next_slot_ = (k + 1) % kSlots;
    }
    for (int e = 0; e < kSlots; ++e) retire((next_slot_ + e) % kSlots);  // oldest first
  } catch (...) {
    abandon();
    throw;
  }
}

}  // namespace flurry::bert
