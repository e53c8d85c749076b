// WhisperGpuModel: Whisper's weight table uploaded from the mapped checkpoint into the arena, and the
// device views of it the encoder and decoder read.
#include <cuda_runtime.h>

#include <string>

#include "models/common/gpu/weight_upload.h"
#include "models/whisper/gpu/whisper_gpu.h"
#include "models/whisper/weights.h"
#include "runtime/check.h"

namespace flurry::whisper {
namespace {

using models::DeviceWeights;
using models::WeightTable;

// The device views of one table key: <key>.weight and, when the table has one, <key>.bias.
GpuLinear linear(const WeightTable& t, const DeviceWeights& w, const std::string& key) {
  const models::WeightGroup& g = t.group(key + ".weight");
  GpuLinear l;
  l.out = g.shape[0];
  l.in = g.numel() / g.shape[0];
  l.w = w.get(key + ".weight");
  if (t.has(key + ".bias")) l.b = w.get(key + ".bias");
  return l;
}
GpuLayerNorm layernorm(const DeviceWeights& w, const std::string& key) {
  return GpuLayerNorm{w.get(key + ".weight"), w.get(key + ".bias")};
}

GpuEncoderLayer encoder_layer(const WeightTable& t, const DeviceWeights& w, int64_t i) {
  const std::string k = encoder_layer_key(i);
  GpuEncoderLayer e;
  e.attn_ln = layernorm(w, k + "self_attn_layer_norm");
  e.qkv = linear(t, w, k + "self_attn.qkv");
  e.attn_out = linear(t, w, k + "self_attn.out_proj");
  e.ffn_ln = layernorm(w, k + "final_layer_norm");
  e.fc1 = linear(t, w, k + "fc1");
  e.fc2 = linear(t, w, k + "fc2");
  return e;
}

GpuDecoderLayer decoder_layer(const WeightTable& t, const DeviceWeights& w, int64_t i) {
  const std::string k = decoder_layer_key(i);
  GpuDecoderLayer e;
  e.self_ln = layernorm(w, k + "self_attn_layer_norm");
  e.self_qkv = linear(t, w, k + "self_attn.qkv");
  e.self_out = linear(t, w, k + "self_attn.out_proj");
  e.cross_ln = layernorm(w, k + "encoder_attn_layer_norm");
  e.cross_q = linear(t, w, k + "encoder_attn.q");
  e.cross_kv = linear(t, w, k + "encoder_attn.kv");
  e.cross_out = linear(t, w, k + "encoder_attn.out_proj");
  e.ffn_ln = layernorm(w, k + "final_layer_norm");
  e.fc1 = linear(t, w, k + "fc1");
  e.fc2 = linear(t, w, k + "fc2");
  return e;
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

size_t WhisperGpuModel::device_bytes(const WhisperConfig& c, DType dtype) {
  return models::table_bytes(whisper_weight_table(c), dtype, Arena::kDefaultAlign);
}

std::unique_ptr<WhisperGpuModel> WhisperGpuModel::upload(const WhisperConfig& c, const Checkpoint& ck, DType dtype,
                                                         Arena& arena, cudaStream_t stream) {
  check_supported(c, dtype);
  const WeightTable t = checked_whisper_table(c, ck);
  const DeviceWeights w = models::upload_weights(t, ck, dtype, arena, stream);
  std::unique_ptr<WhisperGpuModel> g(new WhisperGpuModel());
  g->config_ = c;
  g->dtype_ = dtype;
  g->conv1_w = w.get("encoder.conv1.weight");
  g->conv1_b = w.get("encoder.conv1.bias");
  g->conv2_w = w.get("encoder.conv2.weight");
  g->conv2_b = w.get("encoder.conv2.bias");
  g->enc_positions = w.get("encoder.embed_positions.weight");
  for (int64_t i = 0; i < c.encoder_layers; ++i) g->enc_layers.push_back(encoder_layer(t, w, i));
  g->enc_ln = layernorm(w, "encoder.layer_norm");
  g->embed_tokens = w.get("decoder.embed_tokens.weight");
  g->dec_positions = w.get("decoder.embed_positions.weight");
  for (int64_t i = 0; i < c.decoder_layers; ++i) g->dec_layers.push_back(decoder_layer(t, w, i));
  g->dec_ln = layernorm(w, "decoder.layer_norm");
  g->proj_out = w.has("proj_out.weight") ? w.get("proj_out.weight") : g->embed_tokens;  // tied
  return g;
}

}  // namespace flurry::whisper
