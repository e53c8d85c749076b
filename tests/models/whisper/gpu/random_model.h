// A Whisper checkpoint with random weights at a chosen shape, written from Whisper's weight table
// (models/whisper/weights.h) as fp16 safetensors plus config.json into a temporary folder and loaded
// through the CPU model's own loader. WhisperGpu::create(model, ...) uploads from that same folder
// (straight from the mapping), so both backends bind the same fp16-exact weights through the same
// table (fused QKV, folded query scale).
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "io/json_file.h"
#include "models/common/weight_table.h"
#include "models/whisper/model.h"
#include "models/whisper/weights.h"
#include "runtime/dtype.h"
#include "tests/common/test_util.h"

namespace flurry::whisper::test_gpu {

struct RandomShape {
  const char* name;
  int64_t d, heads, ffn, enc_layers, dec_layers;
};

// Large-v3's vocabulary, mel count, context lengths and token ids at the given width and depth. The
// model keeps its folder (the GPU upload reads the checkpoint from it) until its last reference is
// dropped, then removes it.
inline std::shared_ptr<const WhisperModel> random_whisper(const RandomShape& s, uint64_t seed) {
  namespace fs = std::filesystem;
  static std::atomic<int> serial{0};
  const fs::path dir = fs::temp_directory_path() /
                       ("flurry_whisper_gpu_" + std::string(s.name) + "_" + std::to_string(seed) + "_" +
                        std::to_string(static_cast<long>(::getpid())) + "_" + std::to_string(serial++));
  fs::create_directories(dir);
  Json cfg = read_json_file(test::fixture_path("whisper/tiny-v3/config.json"));
  cfg["d_model"] = s.d;
  cfg["encoder_attention_heads"] = s.heads;
  cfg["decoder_attention_heads"] = s.heads;
  cfg["encoder_ffn_dim"] = s.ffn;
  cfg["decoder_ffn_dim"] = s.ffn;
  cfg["encoder_layers"] = s.enc_layers;
  cfg["decoder_layers"] = s.dec_layers;
  std::ofstream((dir / "config.json").string()) << cfg.dump(1);
  const WhisperConfig c = whisper_config_from_json(cfg, (dir / "config.json").string());
  models::write_random_checkpoint(whisper_weight_table(c), (dir / "model.safetensors").string(),
                                  {seed, DType::F16, 4});

  // Owns the folder; the returned pointer shares its lifetime (aliasing constructor).
  struct Holder {
    std::shared_ptr<const WhisperModel> model;
    fs::path dir;
    ~Holder() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  };
  auto holder = std::make_shared<Holder>();
  holder->dir = dir;
  holder->model = WhisperModel::load(dir.string());  // on a throw, the holder removes the folder
  return std::shared_ptr<const WhisperModel>(holder, holder->model.get());
}

}  // namespace flurry::whisper::test_gpu
