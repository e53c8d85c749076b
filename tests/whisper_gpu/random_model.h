// A Whisper checkpoint with random weights at a chosen shape, written as fp16 safetensors plus
// config.json into a temporary folder and loaded through the CPU model's own loader, so the GPU
// tests exercise the real binding (fused QKV, folded query scale) and both backends see the same
// fp16-exact weights.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "models/whisper/model.h"
#include "runtime/dtype.h"
#include "tests/common/test_util.h"

namespace flurry::whisper::test_gpu {

struct RandomShape {
  const char* name;
  int64_t d, heads, ffn, enc_layers, dec_layers;
};

class RandomCheckpointWriter {
 public:
  explicit RandomCheckpointWriter(uint64_t seed) : rng_(seed) {}

  void uniform(const std::string& name, std::vector<int64_t> shape, float lo, float hi) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng_);
    Entry e;
    e.name = name;
    e.shape = std::move(shape);
    e.bytes.resize(v.size() * 2);
    convert_from_f32(v.data(), e.bytes.data(), v.size(), DType::F16);
    entries_.push_back(std::move(e));
  }
  void linear(const std::string& name, int64_t in, int64_t out, bool bias = true) {
    const float a = 1.7f / std::sqrt(static_cast<float>(in));  // keeps activations O(1) layer to layer
    uniform(name + ".weight", {out, in}, -a, a);
    if (bias) uniform(name + ".bias", {out}, -0.1f, 0.1f);
  }
  void layernorm(const std::string& name, int64_t d) {
    uniform(name + ".weight", {d}, 0.8f, 1.2f);
    uniform(name + ".bias", {d}, -0.1f, 0.1f);
  }
  void write(const std::string& path) const {
    Json header = Json::object();
    size_t off = 0;
    for (const Entry& e : entries_) {
      header[e.name] = {{"dtype", "F16"}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
      off += e.bytes.size();
    }
    std::string h = header.dump();
    while (h.size() % 8 != 0) h.push_back(' ');
    std::ofstream out(path, std::ios::binary);
    const uint64_t len = h.size();
    out.write(reinterpret_cast<const char*>(&len), 8);
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const Entry& e : entries_) out.write(reinterpret_cast<const char*>(e.bytes.data()), static_cast<std::streamsize>(e.bytes.size()));
  }

 private:
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::mt19937_64 rng_;
  std::vector<Entry> entries_;
};

// Large-v3's vocabulary, mel count, context lengths and token ids at the given width and depth.
inline std::shared_ptr<const WhisperModel> random_whisper(const RandomShape& s, uint64_t seed) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("flurry_whisper_gpu_" + std::string(s.name) + "_" +
                                                     std::to_string(seed));
  fs::create_directories(dir);
  Json cfg = read_json_file(test::fixture_path("whisper/tiny-v3/config.json"));
  cfg["d_model"] = s.d;
  cfg["encoder_attention_heads"] = s.heads;
  cfg["decoder_attention_heads"] = s.heads;
  cfg["encoder_ffn_dim"] = s.ffn;
  cfg["decoder_ffn_dim"] = s.ffn;
  cfg["encoder_layers"] = s.enc_layers;
  cfg["decoder_layers"] = s.dec_layers;
  const int64_t d = s.d, mels = cfg["num_mel_bins"].get<int64_t>(), vocab = cfg["vocab_size"].get<int64_t>();
  const int64_t T = cfg["max_source_positions"].get<int64_t>(), ctx = cfg["max_target_positions"].get<int64_t>();
  std::ofstream((dir / "config.json").string()) << cfg.dump(1);

  RandomCheckpointWriter w(seed);
  w.uniform("model.encoder.conv1.weight", {d, mels, 3}, -1.7f / std::sqrt(3.0f * mels), 1.7f / std::sqrt(3.0f * mels));
  w.uniform("model.encoder.conv1.bias", {d}, -0.1f, 0.1f);
  w.uniform("model.encoder.conv2.weight", {d, d, 3}, -1.7f / std::sqrt(3.0f * d), 1.7f / std::sqrt(3.0f * d));
  w.uniform("model.encoder.conv2.bias", {d}, -0.1f, 0.1f);
  w.uniform("model.encoder.embed_positions.weight", {T, d}, -0.5f, 0.5f);
  for (int64_t i = 0; i < s.enc_layers; ++i) {
    const std::string p = "model.encoder.layers." + std::to_string(i) + ".";
    w.layernorm(p + "self_attn_layer_norm", d);
    w.linear(p + "self_attn.q_proj", d, d);
    w.linear(p + "self_attn.k_proj", d, d, false);
    w.linear(p + "self_attn.v_proj", d, d);
    w.linear(p + "self_attn.out_proj", d, d);
    w.layernorm(p + "final_layer_norm", d);
    w.linear(p + "fc1", d, s.ffn);
    w.linear(p + "fc2", s.ffn, d);
  }
  w.layernorm("model.encoder.layer_norm", d);
  w.uniform("model.decoder.embed_tokens.weight", {vocab, d}, -0.1f, 0.1f);
  w.uniform("model.decoder.embed_positions.weight", {ctx, d}, -0.1f, 0.1f);
  for (int64_t i = 0; i < s.dec_layers; ++i) {
    const std::string p = "model.decoder.layers." + std::to_string(i) + ".";
    w.layernorm(p + "self_attn_layer_norm", d);
    w.linear(p + "self_attn.q_proj", d, d);
    w.linear(p + "self_attn.k_proj", d, d, false);
    w.linear(p + "self_attn.v_proj", d, d);
    w.linear(p + "self_attn.out_proj", d, d);
    w.layernorm(p + "encoder_attn_layer_norm", d);
    w.linear(p + "encoder_attn.q_proj", d, d);
    w.linear(p + "encoder_attn.k_proj", d, d, false);
    w.linear(p + "encoder_attn.v_proj", d, d);
    w.linear(p + "encoder_attn.out_proj", d, d);
    w.layernorm(p + "final_layer_norm", d);
    w.linear(p + "fc1", d, s.ffn);
    w.linear(p + "fc2", s.ffn, d);
  }
  w.layernorm("model.decoder.layer_norm", d);
  w.write((dir / "model.safetensors").string());
  auto m = WhisperModel::load(dir.string());
  std::error_code ec;
  fs::remove_all(dir, ec);
  return m;
}

}  // namespace flurry::whisper::test_gpu
