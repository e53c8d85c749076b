// .npy headers byte for byte against numpy's own (fixtures written by numpy through
// tests/fixtures/npy/make_fixtures.py), and numpy's files read back.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "io/npy.h"
#include "runtime/check.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(Npy, HeaderIsNumpys) {
  for (const auto& [name, dtype, rows, cols] :
       std::vector<std::tuple<std::string, NpyDtype, int64_t, int64_t>>{{"f32_3x5", NpyDtype::kFloat32, 3, 5},
                                                                        {"f16_2x4", NpyDtype::kFloat16, 2, 4},
                                                                        {"f32_0x384", NpyDtype::kFloat32, 0, 384},
                                                                        {"f32_123456x384_header", NpyDtype::kFloat32,
                                                                         123456, 384}}) {
    const std::string numpy = file_bytes(test::fixture_path("npy/" + name + ".npy"));
    const std::string ours = npy_header(dtype, rows, cols);
    ASSERT_LE(ours.size(), numpy.size()) << name;
    EXPECT_EQ(ours, numpy.substr(0, ours.size())) << name;
    EXPECT_EQ(ours.size() % 64, 0u) << name;
    if (name.find("_header") == std::string::npos) {
      EXPECT_EQ(numpy.size() - ours.size(), static_cast<size_t>(rows * cols) * (dtype == NpyDtype::kFloat32 ? 4 : 2))
          << name;
    }
  }
}

TEST(Npy, ReadsNumpysFiles) {
  const NpyMatrix a = read_npy(test::fixture_path("npy/f32_3x5.npy"));
  EXPECT_EQ(a.rows, 3);
  EXPECT_EQ(a.cols, 5);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(a.data[static_cast<size_t>(i)], (static_cast<float>(i) - 7.5f) / 4.0f);
  const NpyMatrix h = read_npy(test::fixture_path("npy/f16_2x4.npy"));
  EXPECT_EQ(h.dtype, NpyDtype::kFloat16);
  EXPECT_EQ(h.data, (std::vector<float>{0.5f, -1.0f, 65504.0f, h.data[3], 3.0f, 0.0f, -2.5f, 7.0f}));
  EXPECT_NEAR(h.data[3], 1e-4f, 1e-7f);
  EXPECT_EQ(read_npy(test::fixture_path("npy/f32_0x384.npy")).rows, 0);
  // The header alone promises data that is not there.
  EXPECT_THROW(read_npy(test::fixture_path("npy/f32_123456x384_header.npy")), Error);
  EXPECT_THROW(read_npy(test::fixture_path("npy/make_fixtures.py")), Error);
}

}  // namespace
}  // namespace flurry
