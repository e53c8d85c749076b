// BERT on the GPU (see bert_gpu.h): upload, buffers, the varlen forward and length-sorted batching.
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

// Stage boundaries recorded per batch when timing: 0 start, 1 after H2D, 2 after embeddings,
// 3 + 2i after layer i's attention (+add & LN), 4 + 2i after its FFN, then pooling, then D2H.
size_t event_count(int64_t layers) { return static_cast<size_t>(5 + 2 * layers); }

}  // namespace

BertGpu::~BertGpu() = default;

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
  for (size_t bytes : {t * d * elt, t * 3 * d * elt, t * d * elt, t * d * elt, t * ffn * elt, b * d * sizeof(float),
                       t * sizeof(int32_t), (b + 1) * sizeof(int32_t), sizeof(int32_t), GemmLt::kWorkspaceBytes}) {
    n += align_up(bytes);
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
                        << " sequences per batch, max_seq_len " << g->max_seq_len_ << ")");
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
  pooled_ = static_cast<float*>(arena_->alloc(b * d * sizeof(float), "pooled vectors"));
  ids_ = static_cast<int32_t*>(arena_->alloc(t * sizeof(int32_t), "token ids"));
  cu_ = static_cast<int32_t*>(arena_->alloc((b + 1) * sizeof(int32_t), "cu_seqlens"));
  error_ = static_cast<int32_t*>(arena_->alloc(sizeof(int32_t), "error word"));
  ctx_.lt = lt_.get();
  ctx_.stream = *stream_;
  ctx_.gemm_ws = arena_->alloc(GemmLt::kWorkspaceBytes, "cuBLASLt workspace");
  ctx_.gemm_ws_bytes = GemmLt::kWorkspaceBytes;
  ctx_.dtype = opts_.dtype;
  ctx_.d = config_.hidden_size;
  ctx_.eps = config_.layer_norm_eps;
  host_ints_ = PinnedBuffer((t + b + 1) * sizeof(int32_t));
  host_pooled_ = PinnedBuffer(b * d * sizeof(float));
  if (opts_.time_stages) {
    for (size_t i = 0; i < event_count(config_.num_hidden_layers); ++i) events_.emplace_back(true);
  }
  CUDA_CHECK(cudaMemsetAsync(error_, 0, sizeof(int32_t), *stream_));
  stream_->synchronize();
}

void BertGpu::run_layers(int64_t rows, int batch, int max_len) {
  models::GpuAttentionShape shape;
  shape.heads = static_cast<int>(config_.num_attention_heads);
  shape.head_dim = static_cast<int>(config_.head_dim());
  shape.batch = batch;
  shape.max_len = max_len;
  shape.cu_seqlens = cu_;
  shape.scale = 1.0f;  // head_dim^-0.5 folded into the query weights at load time
  size_t ev = 3;
  for (const BertGpuLayer& l : layers_) {
    models::gpu_self_attention(ctx_, l.qkv, l.attn_out, shape, h_, qkv_, attn_, proj_, rows);
    models::gpu_add_layernorm(ctx_, h_, proj_, l.attn_ln, h_, rows);
    if (opts_.time_stages) events_[ev++].record(*stream_);
    models::gpu_ffn(ctx_, l.ffn_in, l.ffn_out, h_, ffn_, proj_, rows);
    models::gpu_add_layernorm(ctx_, h_, proj_, l.ffn_ln, h_, rows);
    if (opts_.time_stages) events_[ev++].record(*stream_);
  }
}

void BertGpu::forward_batch(const int32_t* ids, const int32_t* cu_seqlens, int batch, float* out) {
  if (batch == 0) return;
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
  const int64_t d = config_.hidden_size;
  cudaStream_t s = *stream_;

  // Host -> device: ids and cu_seqlens through pinned staging, one copy.
  auto* hi = host_ints_.as<int32_t>();
  std::memcpy(hi, ids, static_cast<size_t>(rows) * sizeof(int32_t));
  std::memcpy(hi + rows, cu_seqlens, static_cast<size_t>(batch + 1) * sizeof(int32_t));
  if (opts_.time_stages) events_[0].record(s);
  CUDA_CHECK(cudaMemcpyAsync(ids_, hi, static_cast<size_t>(rows) * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaMemcpyAsync(cu_, hi + rows, static_cast<size_t>(batch + 1) * sizeof(int32_t), cudaMemcpyHostToDevice,
                             s));
  if (opts_.time_stages) events_[1].record(s);

  EmbedLayerNormArgs e;
  e.ids = ids_;
  e.cu_seqlens = cu_;
  e.word = word_;
  e.pos = position_;
  e.type_row = token_type_;  // row 0: token type 0
  e.gamma = emb_ln_.gamma;
  e.beta = emb_ln_.beta;
  e.out = h_;
  e.error = error_;
  e.type = opts_.dtype;
  e.batch = batch;
  e.rows = rows;
  e.vocab = config_.vocab_size;
  e.n_pos = config_.max_position_embeddings;
  e.d = d;
  e.eps = config_.layer_norm_eps;
  embed_layernorm(e, s);
  if (opts_.time_stages) events_[2].record(s);

  run_layers(rows, batch, max_len);

  SegmentPoolArgs p;
  p.x = h_;
  p.cu_seqlens = cu_;
  p.out = pooled_;
  p.type = opts_.dtype;
  p.batch = batch;
  p.d = d;
  p.mode = segment_pool_mode(opts_.pooling);
  p.l2_normalize = opts_.normalize;
  segment_pool(p, s);
  const size_t n_ev = events_.size();
  if (opts_.time_stages) events_[n_ev - 2].record(s);
  const size_t out_bytes = static_cast<size_t>(batch) * static_cast<size_t>(d) * sizeof(float);
  CUDA_CHECK(cudaMemcpyAsync(host_pooled_.data(), pooled_, out_bytes, cudaMemcpyDeviceToHost, s));
  int32_t err = 0;
  CUDA_CHECK(cudaMemcpyAsync(hi, error_, sizeof(int32_t), cudaMemcpyDeviceToHost, s));
  if (opts_.time_stages) events_[n_ev - 1].record(s);
  stream_->synchronize();
  std::memcpy(&err, hi, sizeof(int32_t));
  if (err != 0) {  // clear the word so a caller that handles the error can go on
    CUDA_CHECK(cudaMemsetAsync(error_, 0, sizeof(int32_t), s));
    stream_->synchronize();
  }
  FLURRY_CHECK(err == 0, "bert gpu: a token id outside the vocabulary of " << config_.vocab_size
                                                                           << " or a position past "
                                                                           << config_.max_position_embeddings);
  std::memcpy(out, host_pooled_.data(), out_bytes);

  times_.batches += 1;
  times_.sequences += batch;
  times_.tokens += rows;
  if (opts_.time_stages) {
    auto ms = [&](size_t a, size_t b) { return static_cast<double>(events_[b].elapsed_ms_since(events_[a])); };
    times_.h2d_ms += ms(0, 1);
    times_.embed_ms += ms(1, 2);
    for (size_t i = 0; i < layers_.size(); ++i) {
      times_.attention_ms += ms(2 + 2 * i, 3 + 2 * i);
      times_.ffn_ms += ms(3 + 2 * i, 4 + 2 * i);
    }
    times_.pool_ms += ms(n_ev - 3, n_ev - 2);
    times_.d2h_ms += ms(n_ev - 2, n_ev - 1);
  }
}

void BertGpu::encode(const std::vector<std::vector<int32_t>>& seqs, float* out) {
  const size_t n = seqs.size();
  if (n == 0) return;
  const auto d = static_cast<size_t>(config_.hidden_size);
  // Longest first: batches of similar lengths (little wasted attention work) and the largest
  // batch, which would fail the budget if anything does, goes first.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return seqs[a].size() > seqs[b].size(); });
  std::vector<int32_t> ids, cu;
  std::vector<float> pooled;
  ids.reserve(static_cast<size_t>(max_tokens_));
  cu.reserve(static_cast<size_t>(max_batch_) + 1);
  pooled.resize(static_cast<size_t>(max_batch_) * d);
  size_t i = 0;
  while (i < n) {
    ids.clear();
    cu.assign(1, 0);
    const size_t first = i;
    while (i < n && static_cast<int>(cu.size()) - 1 < max_batch_ &&
           static_cast<int64_t>(ids.size() + seqs[order[i]].size()) <= max_tokens_) {
      const std::vector<int32_t>& s = seqs[order[i]];
      FLURRY_CHECK(!s.empty() && static_cast<int64_t>(s.size()) <= max_seq_len_,
                   "bert gpu: a sequence of " << s.size() << " tokens, outside [1, " << max_seq_len_ << "]");
      ids.insert(ids.end(), s.begin(), s.end());
      cu.push_back(static_cast<int32_t>(ids.size()));
      ++i;
    }
    FLURRY_CHECK(i > first, "bert gpu: a sequence of " << seqs[order[i]].size() << " tokens does not fit the budget of "
                                                       << max_tokens_ << " tokens");
    const int batch = static_cast<int>(i - first);
    forward_batch(ids.data(), cu.data(), batch, pooled.data());
    for (int b = 0; b < batch; ++b) {
      std::memcpy(out + order[first + static_cast<size_t>(b)] * d, pooled.data() + static_cast<size_t>(b) * d,
                  d * sizeof(float));
    }
  }
}

}  // namespace flurry::bert
