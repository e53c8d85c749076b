// Unit tests of the runtime core: dtype conversions, tensor views, the arena, checks and logging.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/arena.h"
#include "runtime/check.h"
#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/log.h"
#include "runtime/tensor.h"
#include "tests/common/test_util.h"

namespace flurry {
namespace {

TEST(DType, HalfKnownBitPatterns) {
  // Reference bit patterns from IEEE-754 binary16.
  EXPECT_EQ(float_to_half_bits(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half_bits(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half_bits(65504.0f), 0x7bff);           // largest finite
  EXPECT_EQ(float_to_half_bits(65520.0f), 0x7c00);           // rounds up to inf
  EXPECT_EQ(float_to_half_bits(5.9604645e-8f), 0x0001);      // smallest subnormal
  EXPECT_EQ(float_to_half_bits(6.1035156e-5f), 0x0400);      // smallest normal
  EXPECT_EQ(float_to_half_bits(1.0f + 1.0f / 2048.0f), 0x3c00);  // tie rounds to even (down)
  EXPECT_EQ(float_to_half_bits(1.0f + 3.0f / 2048.0f), 0x3c02);  // tie rounds to even (up)
  EXPECT_TRUE(std::isnan(half_bits_to_float(float_to_half_bits(std::nanf("")))));
  EXPECT_EQ(half_bits_to_float(0x3555), 0.333251953125f);
}

TEST(DType, HalfRoundTripAllBitPatterns) {
  // Every finite half converts to float and back to the same bits.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t b = static_cast<uint16_t>(h);
    if ((b & 0x7c00) == 0x7c00 && (b & 0x3ff)) continue;  // NaN payloads need not survive
    EXPECT_EQ(float_to_half_bits(half_bits_to_float(b)), b) << "bits " << h;
  }
}

TEST(DType, HalfRoundingIsNearest) {
  auto rng = test::test_rng("half-nearest");
  std::uniform_real_distribution<float> d(-70000.0f, 70000.0f);
  for (int i = 0; i < 100000; ++i) {
    const float x = d(rng) * (i % 3 == 0 ? 1e-4f : 1.0f);
    const uint16_t h = float_to_half_bits(x);
    const float r = half_bits_to_float(h);
    if (std::isinf(r)) {
      EXPECT_GE(std::fabs(x), 65504.0f);
      continue;
    }
    // Neighbours one ulp away are never strictly closer.
    const float up = half_bits_to_float(static_cast<uint16_t>(h + 1));
    const float dn = half_bits_to_float(static_cast<uint16_t>(h - 1));
    if (!std::isnan(up) && !std::isinf(up)) {
      EXPECT_LE(std::fabs(r - x), std::fabs(up - x)) << x;
    }
    if ((h & 0x7fff) != 0 && !std::isnan(dn)) {
      EXPECT_LE(std::fabs(r - x), std::fabs(dn - x)) << x;
    }
  }
}

TEST(DType, Bf16) {
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(-1.5f), 0xbfc0);
  EXPECT_EQ(bf16_bits_to_float(0x4049), 3.140625f);
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1+2^-7: ties to even gives 1.
  EXPECT_EQ(float_to_bf16_bits(1.0f + 1.0f / 256.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(1.0f + 3.0f / 256.0f), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(std::nanf("")))));
  EXPECT_EQ(parse_dtype("bfloat16"), DType::BF16);
  EXPECT_THROW(parse_dtype("f8"), Error);
}

TEST(DType, BulkConversion) {
  auto rng = test::test_rng("bulk");
  std::vector<float> src = test::random_vector(1001, rng, -100.0f, 100.0f), back(src.size());
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    std::vector<uint8_t> buf(src.size() * dtype_size(t));
    convert_from_f32(src.data(), buf.data(), src.size(), t);
    convert_to_f32(buf.data(), back.data(), src.size(), t);
    for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(back[i], round_to(t, src[i]));
    EXPECT_TRUE(test::close_in_norm(std::string("bulk-") + dtype_name(t), back, src,
                                    t == DType::F32 ? 0.0 : 5e-3));
  }
}

TEST(Tensor, ShapesStridesAndViews) {
  std::vector<float> buf(2 * 3 * 4);
  Tensor t(buf.data(), DType::F32, {2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_EQ(t.stride[0], 12);
  EXPECT_EQ(t.stride[2], 1);
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_TRUE(t.is_contiguous());
  Tensor s = t.slice0(1, 2);
  EXPECT_EQ(s.ptr<float>(), buf.data() + 12);
  EXPECT_EQ(s.dim(0), 1);
  Tensor r = t.reshape({6, 4});
  EXPECT_EQ(r.dim(0), 6);
  EXPECT_THROW(t.reshape({5, 5}), Error);
  EXPECT_THROW(t.slice0(1, 3), Error);
  EXPECT_THROW(t.dim(3), Error);
  EXPECT_EQ(t.shape_str(), "[2, 3, 4] f32 host");
}

TEST(Arena, AlignmentHighWaterAndRelease) {
  Arena a(4096, Where::Host, "test arena");
  void* p1 = a.alloc(10, "p1");
  void* p2 = a.alloc(10, "p2");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p1) % Arena::kDefaultAlign, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p2) % Arena::kDefaultAlign, 0u);
  EXPECT_EQ(static_cast<char*>(p2) - static_cast<char*>(p1), 256);
  const size_t m = a.mark();
  a.alloc(1000, "scratch");
  EXPECT_EQ(a.high_water(), 256u + 256u + 1000u);
  a.release(m);
  EXPECT_EQ(a.used(), m);
  EXPECT_EQ(a.high_water(), 1512u);  // the high-water mark survives release
  void* p3 = a.alloc(16, "after release");
  EXPECT_EQ(static_cast<char*>(p3) - static_cast<char*>(p1), 512);
  Tensor t = a.alloc_tensor(DType::F16, {4, 8}, "t");
  EXPECT_EQ(t.nbytes(), 64u);
  EXPECT_THROW(a.release(a.used() + 1), Error);
}

TEST(Arena, OutOfMemoryNamesRequestAndHint) {
  Arena a(1024, Where::Host, "host arena");
  a.set_oom_hint("lower --batch-size");
  a.alloc(600, "first");
  try {
    a.alloc(600, "encoder activations");
    FAIL() << "expected out of memory";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("encoder activations"), std::string::npos) << msg;
    EXPECT_NE(msg.find("600 B"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--batch-size"), std::string::npos) << msg;
    EXPECT_NE(msg.find("host arena"), std::string::npos) << msg;
  }
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
}

TEST(Check, MessageNamesExpressionLocationAndRank) {
  set_process_rank(3);
  try {
    const int n = -1;
    FLURRY_CHECK(n > 0, "n was " << n);
    FAIL() << "expected throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("n > 0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("core_test.cpp"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[rank 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("n was -1"), std::string::npos) << msg;
  }
  set_process_rank(-1);
}

TEST(Log, LevelsParse) {
  EXPECT_EQ(parse_log_level("WARNING"), LogLevel::Warn);
  EXPECT_EQ(parse_log_level("debug"), LogLevel::Debug);
  EXPECT_THROW(parse_log_level("loud"), Error);
  const LogLevel old = log_level();
  set_log_level(LogLevel::Error);
  testing::internal::CaptureStderr();
  LOG_INFO("hidden");
  LOG_ERROR("shown " << 42);
  const std::string err = testing::internal::GetCapturedStderr();
  set_log_level(old);
  EXPECT_EQ(err.find("hidden"), std::string::npos);
  EXPECT_NE(err.find("shown 42"), std::string::npos);
}

TEST(Device, NoGpuIsAnAnswerNotACrash) {
  std::string why;
  const int n = cuda_device_count(&why);
  if (n == 0) {
    EXPECT_FALSE(why.empty());
  }
  EXPECT_GE(n, 0);
}

TEST(TestUtil, ComparisonsCatchPoisonAndZeroReference) {
  std::vector<float> out(8), ref(8, 1.0f), zero(8, 0.0f);
  test::poison(out.data(), out.size() * sizeof(float));
  EXPECT_FALSE(test::close_in_norm("poisoned", out, ref, 1e-3));
  std::fill(out.begin(), out.end(), 0.0f);
  EXPECT_FALSE(test::close_in_norm("zero-ref", out, zero, 1e-3));
  out = ref;
  out[3] = 1.1f;
  EXPECT_FALSE(test::close_in_norm("off", out, ref, 1e-3));
  EXPECT_TRUE(test::close_in_norm("near", out, ref, 5e-2));
  EXPECT_FALSE(test::close_elementwise("elem", out.data(), ref.data(), 8, 1e-3, 1e-3));
}

}  // namespace
}  // namespace flurry
