// Safetensors reader: goldens written by the Python safetensors library (tests/fixtures/safetensors/
// make_fixtures.py), and one test per kind of damage, built byte by byte in a temporary folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>

#include "io/json_file.h"
#include "io/safetensors.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("flurry_st_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A whole file: length prefix, header text, then `data_bytes` bytes of data area.
std::string st_image(const std::string& header, size_t data_bytes) {
  return le64(header.size()) + header + std::string(data_bytes, '\x11');
}

// Runs `fn`, expects flurry::Error whose message holds every one of `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    return;
  }
  ADD_FAILURE() << "no flurry::Error thrown (wanted a message with '" << parts.front() << "')";
}

void expect_open_error(const std::string& image, const std::vector<std::string>& parts) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  write_bytes(path, image);
  std::vector<std::string> with_path = parts;
  with_path.push_back(path);  // every message names the file
  expect_error([&] { SafetensorsFile::open(path); }, with_path);
}

// --- goldens ----------------------------------------------------------------------------------

void check_against_expected(const Checkpoint& ck, const Json& expected) {
  std::set<std::string> want_names;
  for (auto it = expected.begin(); it != expected.end(); ++it) want_names.insert(it.key());
  const auto names = ck.names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want_names);

  for (auto it = expected.begin(); it != expected.end(); ++it) {
    SCOPED_TRACE(it.key());
    const Json& ex = it.value();
    const TensorEntry& e = ck.get(it.key(), ex["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(e.dtype, parse_dtype(ex["dtype"].get<std::string>()));
    const Tensor t = ck.view(it.key());
    EXPECT_EQ(t.numel(), static_cast<int64_t>(ex["values"].size()));
    EXPECT_EQ(t.nbytes(), e.nbytes());
    const size_t n = ex["values"].size();
    if (is_float(e.dtype)) {
      const std::vector<float> got = ck.to_f32(it.key());
      ASSERT_EQ(got.size(), n);
      double sum = 0.0;
      for (size_t i = 0; i < n; ++i) {
        // Widening 16-bit floats is exact, so the values match bit for bit.
        EXPECT_EQ(got[i], ex["values"][i].get<float>()) << "element " << i;
        sum += got[i];
      }
      EXPECT_NEAR(sum, ex["sum"].get<double>(), 1e-6 * (1.0 + std::fabs(sum)));
    } else {
      int64_t sum = 0;
      for (size_t i = 0; i < n; ++i) {
        int64_t v = 0;
        if (e.dtype == DType::I64) {
          std::memcpy(&v, static_cast<const char*>(e.data) + 8 * i, 8);
        } else if (e.dtype == DType::I32) {
          int32_t x = 0;
          std::memcpy(&x, static_cast<const char*>(e.data) + 4 * i, 4);
          v = x;
        } else {
          v = static_cast<const uint8_t*>(e.data)[i];
        }
        EXPECT_EQ(v, ex["values"][i].get<int64_t>()) << "element " << i;
        sum += v;
      }
      EXPECT_EQ(sum, ex["sum"].get<int64_t>());
    }
  }
}

TEST(SafetensorsGolden, SingleFile) {
  const Json expected = read_json_file(test::fixture_path("safetensors/expected.json"));
  const Checkpoint ck = Checkpoint::open(test::fixture_path("safetensors/single"));
  check_against_expected(ck, expected["single"]["tensors"]);

  const auto f = SafetensorsFile::open(test::fixture_path("safetensors/single/model.safetensors"));
  std::map<std::string, std::string> want_meta = expected["single"]["metadata"];
  EXPECT_EQ(f->metadata(), want_meta);
}

TEST(SafetensorsGolden, ShardedCheckpoint) {
  const Json expected = read_json_file(test::fixture_path("safetensors/expected.json"));
  const Checkpoint ck = Checkpoint::open(test::fixture_path("safetensors/sharded"));
  check_against_expected(ck, expected["sharded"]["tensors"]);
  // The same tensors, whichever layout they come from.
  EXPECT_EQ(expected["sharded"]["tensors"], expected["single"]["tensors"]);
}

TEST(SafetensorsGolden, DirectFilePathAndMoves) {
  Checkpoint ck = Checkpoint::open(test::fixture_path("safetensors/single/model.safetensors"));
  const Checkpoint moved = std::move(ck);  // entries live in the shared files, not the object
  EXPECT_TRUE(moved.has("decoder.scale"));
  EXPECT_EQ(moved.to_f32("decoder.scale"), std::vector<float>{0.125f});
  EXPECT_EQ(moved.view("decoder.scale").ndim, 0);
}

// --- lookups ----------------------------------------------------------------------------------

TEST(SafetensorsCheckpoint, MissingTensorAndWrongShape) {
  const Checkpoint ck = Checkpoint::open(test::fixture_path("safetensors/single"));
  EXPECT_FALSE(ck.has("nope"));
  expect_error([&] { ck.get("nope"); }, {"no tensor 'nope'", "single"});
  // A prefix mismatch names the stored candidate.
  expect_error([&] { ck.get("model.encoder.embed.weight"); }, {"'encoder.embed.weight'"});
  expect_error([&] { ck.get("encoder.embed.weight", {3, 4}); }, {"shape [4, 3]", "expected [3, 4]"});
  expect_error([&] { ck.to_f32("decoder.positions"); }, {"decoder.positions", "i64"});
}

TEST(SafetensorsCheckpoint, FolderWithoutWeights) {
  TempDir dir;
  expect_error([&] { Checkpoint::open(dir.str()); }, {"no model.safetensors", dir.str()});
  expect_error([&] { Checkpoint::open(dir.file("absent")); }, {"does not exist"});
}

// Copies the golden shards into a temp folder with the given index text.
std::string sharded_copy(const TempDir& dir, const std::string& index_text) {
  for (const char* s : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
    fs::copy_file(test::fixture_path(std::string("safetensors/sharded/") + s), dir.file(s));
  }
  write_bytes(dir.file("model.safetensors.index.json"), index_text);
  return dir.str();
}

TEST(SafetensorsCheckpoint, BadIndex) {
  const Json good = read_json_file(test::fixture_path("safetensors/sharded/model.safetensors.index.json"));
  {
    TempDir d;
    expect_error([&] { Checkpoint::open(sharded_copy(d, "{\"weight_map\": {")); }, {"not valid JSON"});
  }
  {
    TempDir d;
    expect_error([&] { Checkpoint::open(sharded_copy(d, "{\"metadata\": {}}")); }, {"weight_map"});
  }
  {
    TempDir d;
    Json j = good;
    j["weight_map"]["decoder.ghost"] = "model-00001-of-00002.safetensors";
    expect_error([&] { Checkpoint::open(sharded_copy(d, j.dump())); },
                 {"decoder.ghost", "model-00001-of-00002.safetensors", "does not hold"});
  }
  {
    TempDir d;
    Json j = good;
    j["weight_map"]["decoder.mask"] = "model-00003-of-00002.safetensors";
    expect_error([&] { Checkpoint::open(sharded_copy(d, j.dump())); },
                 {"model-00003-of-00002.safetensors", "cannot open"});
  }
  {
    TempDir d;
    Json j = good;
    j["weight_map"]["decoder.mask"] = "../model-00001-of-00002.safetensors";
    expect_error([&] { Checkpoint::open(sharded_copy(d, j.dump())); }, {"not a file inside"});
  }
  {
    TempDir d;
    Json j = good;
    j["weight_map"]["decoder.mask"] = 3;
    expect_error([&] { Checkpoint::open(sharded_copy(d, j.dump())); }, {"decoder.mask", "file name"});
  }
  {
    TempDir d;  // the good index in a fresh folder opens
    const Checkpoint ck = Checkpoint::open(sharded_copy(d, good.dump()));
    EXPECT_EQ(ck.names().size(), good["weight_map"].size());
  }
}

// --- damage -----------------------------------------------------------------------------------

const char* kOneTensor = R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";

TEST(SafetensorsDamage, GoodHandBuiltFileOpens) {
  // The baseline the damage tests mutate: it must open, or they would pass for the wrong reason.
  TempDir dir;
  write_bytes(dir.file("m.safetensors"), st_image(kOneTensor, 16));
  const auto f = SafetensorsFile::open(dir.file("m.safetensors"));
  ASSERT_EQ(f->tensors().size(), 1u);
  EXPECT_EQ(f->tensors()[0].nbytes(), 16u);
}

TEST(SafetensorsDamage, TruncatedFile) {
  expect_open_error(std::string("\x10\x00\x00", 3), {"too short"});
  expect_open_error("", {"too short"});
  // The golden with its data area cut short.
  const std::string good = read_bytes(test::fixture_path("safetensors/single/model.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, good.data(), 8);
  expect_open_error(good.substr(0, 8 + n + 10), {"run past the data area"});
}

TEST(SafetensorsDamage, HeaderLengthPastEnd) {
  expect_open_error(le64(1000) + "{}", {"runs past the end"});
  expect_open_error(le64(uint64_t{1} << 62) + "{}", {"exceeds"});
  expect_open_error(le64(~uint64_t{0}) + "{}", {"exceeds"});
}

TEST(SafetensorsDamage, OverlappingTensors) {
  expect_open_error(st_image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                             R"("b":{"dtype":"F16","shape":[4],"data_offsets":[8,16]}})",
                             16),
                    {"'a'", "'b'", "overlap"});
  // Empty tensors occupy no bytes: one sitting inside another is fine.
  TempDir dir;
  write_bytes(dir.file("m.safetensors"), st_image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                                  R"("e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})",
                                                  16));
  EXPECT_EQ(SafetensorsFile::open(dir.file("m.safetensors"))->tensors().size(), 2u);
}

TEST(SafetensorsDamage, UnknownDtype) {
  expect_open_error(st_image(R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", 16),
                    {"tensor 'w'", "unsupported dtype 'F64'"});
  expect_open_error(st_image(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2),
                    {"tensor 'w'", "unsupported dtype 'F8_E4M3'"});
  expect_open_error(st_image(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}})", 2),
                    {"tensor 'w'", "unknown dtype 'Q4'"});
  expect_open_error(st_image(R"({"w":{"dtype":7,"shape":[2],"data_offsets":[0,2]}})", 2), {"'dtype'"});
}

TEST(SafetensorsDamage, OffsetsPastEnd) {
  expect_open_error(st_image(kOneTensor, 12), {"tensor 'a'", "run past the data area of 12 bytes"});
  expect_open_error(st_image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}})", 16),
                    {"begin 16 > end 0"});
  expect_open_error(st_image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0]}})", 16),
                    {"data_offsets"});
  expect_open_error(st_image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[-16,0]}})", 16),
                    {"not non-negative integers"});
}

TEST(SafetensorsDamage, ShapeSizeMismatch) {
  expect_open_error(st_image(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 16),
                    {"tensor 'a'", "needs 24 bytes", "hold 16"});
  expect_open_error(st_image(R"({"a":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]}})", 16),
                    {"not a non-negative integer"});
  expect_open_error(st_image(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})", 16),
                    {"not a non-negative integer"});
  // 2^62 * 2^62 * 4 bytes wraps a 64-bit product; must not be mistaken for a small size.
  expect_open_error(st_image(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],)"
                             R"("data_offsets":[0,0]}})",
                             16),
                    {"overflows"});
  // Empty, but its other dimensions would still overflow a stride computed from the shape.
  expect_open_error(st_image(R"({"a":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],)"
                             R"("data_offsets":[0,0]}})",
                             16),
                    {"overflows"});
}

TEST(SafetensorsDamage, NonJsonHeader) {
  expect_open_error(st_image("not json at all", 0), {"not valid JSON"});
  expect_open_error(st_image("{\"a\":", 0), {"not valid JSON"});
  expect_open_error(st_image("[1,2,3]", 0), {"must be a JSON object"});
  expect_open_error(st_image(std::string(64, '[') + std::string(64, ']'), 0), {"header"});
  expect_open_error(st_image(R"({"a":{"b":{"c":{"d":[[1]]}}}})", 0), {"nests deeper"});
  expect_open_error(st_image(R"({"__metadata__":{"k":1}})", 0), {"__metadata__", "'k'"});
  expect_open_error(st_image(R"({"a":[1,2]})", 0), {"tensor 'a'", "expected an object"});
}

TEST(SafetensorsDamage, UnalignedSixteenBitData) {
  // A 3-byte header puts the data area at an odd address; to_f32 must still read it (UBSan watches).
  TempDir dir;
  const std::string header = R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})";
  const std::string padded = header + " ";  // odd length: 8 + len is odd
  ASSERT_EQ(padded.size() % 2, 1u);
  std::string image = le64(padded.size()) + padded;
  image += std::string("\x00\x3c\x00\xc0", 4);  // 1.0, -2.0 in binary16
  write_bytes(dir.file("m.safetensors"), image);
  const Checkpoint ck = Checkpoint::open(dir.file("m.safetensors"));
  EXPECT_EQ(ck.to_f32("h"), (std::vector<float>{1.0f, -2.0f}));
}

TEST(SafetensorsDamage, RandomCorruptionOnlyThrowsError) {
  // Flips bytes of the golden image; each result either parses or throws flurry::Error, never
  // anything else (ASan/UBSan builds turn memory errors into failures).
  const std::string good = read_bytes(test::fixture_path("safetensors/single/model.safetensors"));
  auto rng = test::test_rng("safetensors-corruption");
  std::uniform_int_distribution<size_t> pos(0, good.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  int refused = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string img = good;
    const int flips = 1 + trial % 4;
    for (int k = 0; k < flips; ++k) img[pos(rng)] = static_cast<char>(byte(rng));
    if (trial % 7 == 0) img.resize(pos(rng));
    try {
      const auto entries = parse_safetensors_buffer(img.data(), img.size(), "corrupt", nullptr);
      for (const auto& e : entries) {
        const char* b = static_cast<const char*>(e.data);
        ASSERT_TRUE(b >= img.data() && b + e.nbytes() <= img.data() + img.size()) << e.name;
        ASSERT_EQ(static_cast<uint64_t>(e.numel()) * dtype_size(e.dtype), e.nbytes());
      }
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace flurry
