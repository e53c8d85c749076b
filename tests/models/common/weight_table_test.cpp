// The weight table (models/common/weight_table.h) and Whisper's (models/whisper/weights.h):
// a random checkpoint written from a table reads back with the table's shapes and ranges, binds with
// its fusions and scales, converts alike for the device (read_group) and the CPU (bind_f32), and a
// damaged checkpoint (missing tensor, wrong shape, wrong dtype) is refused naming the tensor.
// Whisper's table lists exactly the tensors of a real Hugging Face checkpoint.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "models/common/weight_table.h"
#include "models/whisper/model.h"
#include "models/whisper/weights.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace flurry::models {
namespace {

namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("flurry_weight_table_" + std::string(info->name()) + "_" +
                                         std::to_string(static_cast<long>(::getpid())));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file() const { return (path_ / "model.safetensors").string(); }
  std::string dir() const { return path_.string(); }

 private:
  fs::path path_;
};

// A small model-agnostic table: a conv-like weight, a fused q/k/v with a scaled q and a k without
// bias, and a plain bias.
WeightTable small_table(int64_t d = 8, int64_t in = 5) {
  WeightTable t;
  t.add("conv.weight", "m.conv.weight", {d, in, 3}, WeightInit::fan_in());
  t.add("conv.bias", "m.conv.bias", {d}, WeightInit::uniform(-0.1f, 0.1f));
  const auto part = [&](const std::string& n, float s, bool bias, bool opt) {
    return FusedPart{"m." + n + (bias ? ".bias" : ".weight"),
                     bias ? std::vector<int64_t>{d} : std::vector<int64_t>{d, d},
                     bias ? WeightInit::uniform(-0.1f, 0.1f) : WeightInit::fan_in(), s, opt};
  };
  t.add_fused("qkv.weight",
              {part("q", 0.125f, false, false), part("k", 1.0f, false, false), part("v", 1.0f, false, false)});
  t.add_fused("qkv.bias", {part("q", 0.125f, true, false), part("k", 1.0f, true, true), part("v", 1.0f, true, false)});
  t.add("norm.weight", "m.norm.weight", {d}, WeightInit::uniform(0.8f, 1.2f));
  return t;
}

void expect_refused(const WeightTable& t, const Checkpoint& ck, const std::vector<std::string>& needles) {
  try {
    validate_checkpoint(t, ck);
    ADD_FAILURE() << "damaged checkpoint accepted";
  } catch (const Error& e) {
    for (const std::string& n : needles) {
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "message lacks '" << n << "': " << e.what();
    }
  }
}

TEST(WeightTable, RefusesPartsThatCannotStack) {
  WeightTable t;
  EXPECT_THROW(t.add_fused("x", {FusedPart{"a", {4, 3}, {}, 1.0f, false}, FusedPart{"b", {4, 2}, {}, 1.0f, false}}),
               Error);
  t.add("y", "y", {2}, WeightInit{});
  EXPECT_THROW(t.add("y", "y2", {2}, WeightInit{}), Error);  // a key twice
  EXPECT_THROW(t.group("nope"), Error);
}

TEST(WeightTable, RandomCheckpointRoundTripsAndBinds) {
  for (DType dt : {DType::F16, DType::BF16, DType::F32}) {
    SCOPED_TRACE(dtype_name(dt));
    const WeightTable t = small_table();
    TempDir tmp;
    RandomCheckpointOptions o;
    o.seed = test::test_seed();
    o.dtype = dt;
    write_random_checkpoint(t, tmp.file(), o);
    const Checkpoint ck = Checkpoint::open(tmp.dir());
    ASSERT_NO_THROW(validate_checkpoint(t, ck));
    EXPECT_FALSE(ck.has("m.k.bias"));  // optional entries are left out, as real checkpoints do
    EXPECT_EQ(ck.names().size(), t.entries().size() - 1);
    for (const WeightEntry& e : t.entries()) {
      if (e.optional) continue;
      EXPECT_EQ(ck.get(e.name).shape, e.shape) << e.name;
      EXPECT_EQ(ck.get(e.name).dtype, dt) << e.name;
      const std::vector<float> v = ck.to_f32(e.name);
      const float fan_in = static_cast<float>(e.numel() / e.shape[0]);
      const float hi = e.init.kind == WeightInit::FanIn ? e.init.hi / std::sqrt(fan_in) : e.init.hi;
      const float lo = e.init.kind == WeightInit::FanIn ? -hi : e.init.lo;
      const float tol = 0.01f * std::max(std::fabs(lo), std::fabs(hi));  // rounding to 16 bits
      for (float x : v) ASSERT_TRUE(x >= lo - tol && x <= hi + tol) << e.name << " " << x;
      EXPECT_NE(*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())) << e.name;
    }

    // The fused group is q*scale, k, v stacked; the missing k bias reads as zeros.
    const std::vector<float> q = ck.to_f32("m.q.weight"), k = ck.to_f32("m.k.weight"), v = ck.to_f32("m.v.weight");
    const LinearW qkv = bind_linear(t, ck, "qkv");
    ASSERT_EQ(qkv.in, 8);
    ASSERT_EQ(qkv.out, 24);
    ASSERT_EQ(qkv.w.size(), 24u * 8u);
    for (size_t i = 0; i < q.size(); ++i) {
      ASSERT_EQ(qkv.w[i], q[i] * 0.125f);
      ASSERT_EQ(qkv.w[q.size() + i], k[i]);
      ASSERT_EQ(qkv.w[2 * q.size() + i], v[i]);
    }
    const std::vector<float> qb = ck.to_f32("m.q.bias"), vb = ck.to_f32("m.v.bias");
    for (size_t i = 0; i < 8; ++i) {
      EXPECT_EQ(qkv.b[i], qb[i] * 0.125f);
      EXPECT_EQ(qkv.b[8 + i], 0.0f);
      EXPECT_EQ(qkv.b[16 + i], vb[i]);
    }
    const LinearW conv = bind_linear(t, ck, "conv");  // [d, c_in, 3] flattened to [d, c_in * 3]
    EXPECT_EQ(conv.in, 15);
    EXPECT_EQ(conv.out, 8);
    EXPECT_EQ(conv.w, ck.to_f32("m.conv.weight"));
    EXPECT_EQ(table_bytes(t, DType::F16, 256), 6u * 256u);  // six groups, each under 256 bytes
  }
}

TEST(WeightTable, SameSeedSameValuesWhateverTheThreads) {
  WeightTable t;
  t.add("big", "big", {1100, 1000}, WeightInit::fan_in());  // two pieces of 1 Mi elements
  t.add("small", "small", {7}, WeightInit::uniform(-1.0f, 1.0f));
  TempDir a;
  const std::string other = a.dir() + "/other.safetensors";
  write_random_checkpoint(t, a.file(), {42, DType::F16, 1});
  write_random_checkpoint(t, other, {42, DType::F16, 3});
  std::ifstream fa(a.file(), std::ios::binary), fb(other, std::ios::binary);
  const std::string ba((std::istreambuf_iterator<char>(fa)), {}), bb((std::istreambuf_iterator<char>(fb)), {});
  EXPECT_GT(ba.size(), 2u * 1100u * 1000u);
  EXPECT_TRUE(ba == bb) << "thread count changed the values";
  write_random_checkpoint(t, other, {43, DType::F16, 1});
  std::ifstream fc(other, std::ios::binary);
  const std::string bc((std::istreambuf_iterator<char>(fc)), {});
  EXPECT_FALSE(ba == bc) << "the seed did not change the values";
}

// The device upload converts slices of a group (read_group into the staging buffer); any slice must
// equal the same elements of the fp32 binding rounded to the dtype.
TEST(WeightTable, ReadGroupSlicesMatchTheBinding) {
  const WeightTable t = small_table(64, 5);
  TempDir tmp;
  write_random_checkpoint(t, tmp.file(), {test::test_seed(), DType::BF16, 1});
  const Checkpoint ck = Checkpoint::open(tmp.dir());
  for (const char* key : {"qkv.weight", "qkv.bias"}) {
    const WeightGroup& g = t.group(key);
    const std::vector<float> all = bind_f32(t, ck, key);
    ASSERT_EQ(static_cast<int64_t>(all.size()), g.numel());
    // Slices that start and end inside parts and straddle the part boundaries.
    for (int64_t first : {int64_t{0}, int64_t{1}, g.numel() / 3 - 5, g.numel() / 2 + 3}) {
      for (DType out : {DType::F16, DType::BF16, DType::F32}) {
        const int64_t n = std::min<int64_t>(g.numel() - first, g.numel() / 3 + 11);
        std::vector<uint8_t> got(static_cast<size_t>(n) * dtype_size(out), 0xFF), want(got.size());
        read_group(t, ck, g, first, n, out, got.data());
        convert_from_f32(all.data() + first, want.data(), static_cast<size_t>(n), out);
        EXPECT_TRUE(got == want) << key << " first " << first << " " << dtype_name(out);
      }
    }
    std::vector<float> dummy(4);
    EXPECT_THROW(read_group(t, ck, g, g.numel() - 1, 2, DType::F32, dummy.data()), Error);
  }
}

TEST(WeightTable, DamagedCheckpointsAreRefusedNamingTheTensor) {
  const WeightTable t = small_table();
  {  // missing: written from a table without the fused v
    WeightTable w;
    for (const WeightEntry& e : t.entries()) {
      if (e.name != "m.v.weight") w.add(e.name, e.name, e.shape, e.init, e.optional);
    }
    TempDir tmp;
    write_random_checkpoint(w, tmp.file(), {1, DType::F16, 1});
    expect_refused(t, Checkpoint::open(tmp.dir()), {"m.v.weight", "missing"});
  }
  {  // wrong shape
    WeightTable w;
    for (const WeightEntry& e : t.entries()) {
      std::vector<int64_t> shape = e.shape;
      if (e.name == "m.conv.weight") shape[1] = 4;
      w.add(e.name, e.name, shape, e.init, e.optional);
    }
    TempDir tmp;
    write_random_checkpoint(w, tmp.file(), {1, DType::F16, 1});
    expect_refused(t, Checkpoint::open(tmp.dir()), {"m.conv.weight", "[8, 4, 3]", "expected [8, 5, 3]"});
  }
  {  // wrong dtype: an integer tensor where a float one belongs
    TempDir tmp;
    write_random_checkpoint(t, tmp.file(), {1, DType::F16, 1});
    const Checkpoint ok = Checkpoint::open(tmp.dir());
    Json h = Json::object();
    std::string data;
    for (const std::string& name : ok.names()) {
      const TensorEntry& e = ok.get(name);
      const bool bad = name == "m.norm.weight";
      std::string bytes(static_cast<const char*>(e.data), e.nbytes());
      if (bad) bytes.resize(static_cast<size_t>(e.numel()) * 4);
      h[name] = {{"dtype", bad ? "I32" : "F16"},
                 {"shape", e.shape},
                 {"data_offsets", {data.size(), data.size() + bytes.size()}}};
      data += bytes;
    }
    std::string hs = h.dump();
    while (hs.size() % 8 != 0) hs.push_back(' ');
    const uint64_t len = hs.size();
    std::ofstream(tmp.file(), std::ios::binary).write(reinterpret_cast<const char*>(&len), 8) << hs << data;
    expect_refused(t, Checkpoint::open(tmp.dir()), {"m.norm.weight", "dtype"});
  }
}

// ---- Whisper's table ----------------------------------------------------------------------------

whisper::WhisperConfig tiny_config() {
  return whisper::load_whisper_config(test::fixture_path("whisper/tiny-v3/config.json"));
}

TEST(WhisperWeightTable, ListsExactlyTheTensorsOfARealCheckpoint) {
  const Checkpoint ck = Checkpoint::open(test::fixture_path("whisper/tiny-v3"));
  const WeightTable t = whisper::checked_whisper_table(tiny_config(), ck);
  std::set<std::string> listed;
  for (const WeightEntry& e : t.entries()) {
    if (ck.has(e.name)) listed.insert(e.name);
    EXPECT_TRUE(ck.has(e.name) || e.optional) << e.name;
  }
  const std::vector<std::string> names = ck.names();
  EXPECT_EQ(listed, std::set<std::string>(names.begin(), names.end()));
}

TEST(WhisperWeightTable, RandomCheckpointLoadsWithFusedScaledAttention) {
  const whisper::WhisperConfig c = tiny_config();
  TempDir tmp;
  fs::copy_file(test::fixture_path("whisper/tiny-v3/config.json"), tmp.dir() + "/config.json");
  write_random_checkpoint(whisper::whisper_weight_table(c), tmp.file(), {test::test_seed(), DType::F16, 2});
  const auto m = whisper::WhisperModel::load(tmp.dir());
  const Checkpoint ck = Checkpoint::open(tmp.dir());
  EXPECT_FALSE(ck.has("model.encoder.layers.0.self_attn.k_proj.bias"));
  EXPECT_EQ(m->checkpoint_dir(), tmp.dir());

  const int64_t d = c.d_model;
  const float qs = 1.0f / std::sqrt(static_cast<float>(c.decoder_head_dim()));
  const std::string p = "model.decoder.layers." + std::to_string(c.decoder_layers - 1) + ".";
  const whisper::DecoderLayerW& l = m->dec_layers.back();
  const std::vector<float> q = ck.to_f32(p + "self_attn.q_proj.weight"), k = ck.to_f32(p + "self_attn.k_proj.weight");
  const std::vector<float> qb = ck.to_f32(p + "self_attn.q_proj.bias");
  ASSERT_EQ(l.self_qkv.out, 3 * d);
  for (size_t i = 0; i < q.size(); ++i) {
    ASSERT_EQ(l.self_qkv.w[i], q[i] * qs);
    ASSERT_EQ(l.self_qkv.w[q.size() + i], k[i]);
  }
  for (int64_t i = 0; i < d; ++i) {
    EXPECT_EQ(l.self_qkv.b[static_cast<size_t>(i)], qb[static_cast<size_t>(i)] * qs);
    EXPECT_EQ(l.self_qkv.b[static_cast<size_t>(d + i)], 0.0f);      // k_proj has no bias
    EXPECT_EQ(l.cross_kv.b[static_cast<size_t>(i)], 0.0f);
  }
  EXPECT_EQ(l.cross_kv.w, [&] {
    std::vector<float> kv = ck.to_f32(p + "encoder_attn.k_proj.weight");
    const std::vector<float> v = ck.to_f32(p + "encoder_attn.v_proj.weight");
    kv.insert(kv.end(), v.begin(), v.end());
    return kv;
  }());
  EXPECT_EQ(m->embed_tokens, ck.to_f32("model.decoder.embed_tokens.weight"));
  EXPECT_EQ(m->conv1.in, c.num_mel_bins * 3);
}

TEST(WhisperWeightTable, DamagedRandomCheckpointIsRefused) {
  whisper::WhisperConfig c = tiny_config();
  TempDir tmp;
  fs::copy_file(test::fixture_path("whisper/tiny-v3/config.json"), tmp.dir() + "/config.json");
  whisper::WhisperConfig fewer = c;
  fewer.decoder_layers = c.decoder_layers - 1;  // the last decoder layer's tensors are missing
  write_random_checkpoint(whisper::whisper_weight_table(fewer), tmp.file(), {3, DType::F16, 1});
  const std::string victim = "model.decoder.layers." + std::to_string(c.decoder_layers - 1);
  try {
    whisper::WhisperModel::load(tmp.dir());
    ADD_FAILURE() << "checkpoint with a layer missing accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(victim), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flurry::models
