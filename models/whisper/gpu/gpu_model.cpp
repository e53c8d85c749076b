// WhisperGpuModel: the CPU model's fp32 weights converted to fp16/bf16 and copied into the arena.
#include <cuda_runtime.h>

#include <vector>

#include "models/whisper/gpu/whisper_gpu.h"
#include "runtime/check.h"
#include "runtime/cuda/cuda_check.h"

namespace flurry::whisper {
namespace {

// One traversal serves both sizing and uploading: with no arena it only counts bytes.
class WeightSink {
 public:
  WeightSink(DType t, Arena* arena) : type_(t), arena_(arena) {}

  const void* put(const std::vector<float>& v, const char* what) {
    const size_t bytes = v.size() * dtype_size(type_);
    bytes_ += (bytes + Arena::kDefaultAlign - 1) / Arena::kDefaultAlign * Arena::kDefaultAlign;
    if (arena_ == nullptr || v.empty()) return nullptr;
    void* dst = arena_->alloc(bytes, what);
    staging_.resize(bytes);
    convert_from_f32(v.data(), staging_.data(), v.size(), type_);
    CUDA_CHECK(cudaMemcpy(dst, staging_.data(), bytes, cudaMemcpyHostToDevice));
    return dst;
  }
  GpuLinear linear(const LinearW& l, const char* what) {
    FLURRY_CHECK(static_cast<int64_t>(l.w.size()) == l.in * l.out, "whisper gpu: " << what << " has "
                     << l.w.size() << " weights for [" << l.out << ", " << l.in << "]");
    GpuLinear g;
    g.in = l.in;
    g.out = l.out;
    g.w = put(l.w, what);
    if (!l.b.empty()) g.b = put(l.b, what);
    return g;
  }
  GpuLayerNorm layernorm(const LayerNormW& l, const char* what) {
    return GpuLayerNorm{put(l.gamma, what), put(l.beta, what)};
  }
  size_t bytes() const { return bytes_; }

 private:
  DType type_;
  Arena* arena_;
  size_t bytes_ = 0;
  std::vector<uint8_t> staging_;
};

void bind_all(const WhisperModel& m, WeightSink& s, WhisperGpuModel& g) {
  g.conv1_w = s.put(m.conv1.w, "conv1.weight");
  g.conv1_b = s.put(m.conv1.b, "conv1.bias");
  g.conv2_w = s.put(m.conv2.w, "conv2.weight");
  g.conv2_b = s.put(m.conv2.b, "conv2.bias");
  g.enc_positions = s.put(m.enc_positions, "encoder positions");
  g.enc_layers.clear();
  for (const EncoderLayerW& l : m.enc_layers) {
    GpuEncoderLayer e;
    e.attn_ln = s.layernorm(l.attn_ln, "encoder self_attn_layer_norm");
    e.qkv = s.linear(l.qkv, "encoder qkv");
    e.attn_out = s.linear(l.attn_out, "encoder out_proj");
    e.ffn_ln = s.layernorm(l.ffn_ln, "encoder final_layer_norm");
    e.fc1 = s.linear(l.fc1, "encoder fc1");
    e.fc2 = s.linear(l.fc2, "encoder fc2");
    g.enc_layers.push_back(e);
  }
  g.enc_ln = s.layernorm(m.enc_ln, "encoder layer_norm");
  g.embed_tokens = s.put(m.embed_tokens, "decoder embed_tokens");
  g.dec_positions = s.put(m.dec_positions, "decoder positions");
  g.dec_layers.clear();
  for (const DecoderLayerW& l : m.dec_layers) {
    GpuDecoderLayer e;
    e.self_ln = s.layernorm(l.self_ln, "decoder self_attn_layer_norm");
    e.self_qkv = s.linear(l.self_qkv, "decoder self qkv");
    e.self_out = s.linear(l.self_out, "decoder self out_proj");
    e.cross_ln = s.layernorm(l.cross_ln, "decoder encoder_attn_layer_norm");
    e.cross_q = s.linear(l.cross_q, "decoder cross q_proj");
    e.cross_kv = s.linear(l.cross_kv, "decoder cross kv");
    e.cross_out = s.linear(l.cross_out, "decoder cross out_proj");
    e.ffn_ln = s.layernorm(l.ffn_ln, "decoder final_layer_norm");
    e.fc1 = s.linear(l.fc1, "decoder fc1");
    e.fc2 = s.linear(l.fc2, "decoder fc2");
    g.dec_layers.push_back(e);
  }
  g.dec_ln = s.layernorm(m.dec_ln, "decoder layer_norm");
  g.proj_out = m.proj_out.empty() ? g.embed_tokens : s.put(m.proj_out, "proj_out");
}

}  // namespace

void WhisperGpuModel::check_supported(const WhisperConfig& c, DType dtype) {
  FLURRY_CHECK(dtype == DType::F16 || dtype == DType::BF16,
               "whisper gpu: weights must be f16 or bf16, not " << dtype_name(dtype));
  FLURRY_CHECK(c.encoder_head_dim() == 64 && c.decoder_head_dim() == 64,
               "whisper gpu: head_dim " << c.encoder_head_dim() << "/" << c.decoder_head_dim()
                                        << " (d_model " << c.d_model
                                        << "): the attention kernels are built for head_dim 64 only "
                                           "(every released Whisper); use --device cpu");
  FLURRY_CHECK(c.d_model % 8 == 0, "whisper gpu: d_model " << c.d_model << " is not a multiple of 8");
}

size_t WhisperGpuModel::device_bytes(const WhisperModel& cpu, DType dtype) {
  WeightSink s(dtype, nullptr);
  WhisperGpuModel dummy;
  bind_all(cpu, s, dummy);
  return s.bytes();
}

std::unique_ptr<WhisperGpuModel> WhisperGpuModel::upload(const WhisperModel& cpu, DType dtype, Arena& arena) {
  check_supported(cpu.config(), dtype);
  FLURRY_CHECK(arena.where() == Where::Device, "whisper gpu: weights need a device arena");
  std::unique_ptr<WhisperGpuModel> g(new WhisperGpuModel());
  g->config_ = cpu.config();
  g->dtype_ = dtype;
  WeightSink s(dtype, &arena);
  bind_all(cpu, s, *g);
  return g;
}

}  // namespace flurry::whisper
