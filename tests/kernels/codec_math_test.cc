// Per-element conversions of kernels/internal/codec_math.h, checked against
// independent references.
#include "kernels/internal/codec_math.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace kvf::internal {
namespace {

// E4M3FN value of `code` straight from the OCP spec.
double E4m3Reference(int code) {
  const int sign = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return sign ? -mag : mag;
}

TEST(E4m3, DecodeMatchesReferenceTableForAll256Codes) {
  for (int c = 0; c < 256; ++c) {
    const double want = E4m3Reference(c);
    const float got = E4m3ToFloat(static_cast<uint8_t>(c));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << "code " << c;
      EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << "code " << c;
    }
  }
  EXPECT_EQ(E4m3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(E4m3ToFloat(0x38), 1.0f);
  EXPECT_EQ(E4m3ToFloat(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(E4m3ToFloat(0x08), std::ldexp(1.0f, -6));
}

TEST(E4m3, EveryCodeReencodesToItself) {
  for (int c = 0; c < 256; ++c) {
    const uint8_t code = static_cast<uint8_t>(c);
    const uint8_t again = FloatToE4m3(E4m3ToFloat(code));
    if ((c & 0x7f) == 0x7f) {
      EXPECT_EQ(again & 0x7f, 0x7f) << "NaN code " << c << " must stay NaN";
    } else {
      EXPECT_EQ(again, code) << "code " << c;
    }
  }
}

TEST(E4m3, SaturatesAt448) {
  for (float f : {448.0f, 449.0f, 463.9f, 464.0f, 480.0f, 1e6f, 3e38f,
                  std::numeric_limits<float>::infinity()}) {
    EXPECT_EQ(FloatToE4m3(f), 0x7e) << f;
    EXPECT_EQ(FloatToE4m3(-f), 0xfe) << -f;
  }
  EXPECT_EQ(FloatToE4m3(std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
}

TEST(E4m3, RoundsHalfToEven) {
  EXPECT_EQ(FloatToE4m3(1.0625f), 0x38);  // between 1.0 (even) and 1.125
  EXPECT_EQ(FloatToE4m3(1.1875f), 0x3a);  // between 1.125 and 1.25 (even)
  EXPECT_EQ(FloatToE4m3(std::nextafter(1.0625f, 2.0f)), 0x39);
  EXPECT_EQ(FloatToE4m3(std::ldexp(0.5f, -9)), 0x00);  // half the smallest subnormal
  EXPECT_EQ(FloatToE4m3(std::ldexp(1.5f, -9)), 0x02);
  EXPECT_EQ(FloatToE4m3(std::ldexp(7.5f, -9)), 0x08);  // subnormal rounds up to 2^-6
  EXPECT_EQ(FloatToE4m3(-0.0f), 0x80);
  EXPECT_EQ(FloatToE4m3(1e-30f), 0x00);
}

// Nearest finite E4M3 value by brute force, ties to the even code.
uint8_t E4m3BruteForce(float f) {
  const double a = std::fabs(static_cast<double>(f));
  int best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (int c = 0; c <= 0x7e; ++c) {
    const double err = std::fabs(E4m3Reference(c) - a);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = c;
      best_err = err;
    }
  }
  if (a >= 448.0) best = 0x7e;
  return static_cast<uint8_t>(best | (std::signbit(f) ? 0x80 : 0));
}

TEST(E4m3, MatchesBruteForceNearestOnRandomValues) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-12.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) {
    const float f = (rng() & 1 ? -1.0f : 1.0f) * std::exp2(exponent(rng));
    ASSERT_EQ(FloatToE4m3(f), E4m3BruteForce(f)) << f;
  }
}

TEST(E4m3, CeilNeverBelow) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.0f, 448.0f);
  for (int i = 0; i < 10000; ++i) {
    const float x = u(rng) * (i % 2 ? 1.0f : 1e-3f);
    const uint8_t c = E4m3CeilPositive(x);
    EXPECT_GE(E4m3ToFloat(c), x);
    if (c > 0) {
      EXPECT_LT(E4m3ToFloat(static_cast<uint8_t>(c - 1)), x);
    }
  }
}

float BitsToFloatForTest(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(Half, AllCodesRoundTripAndMatchReference) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint16_t h = static_cast<uint16_t>(c);
    const float f = HalfToFloat(h);
    const int e = (c >> 10) & 31, m = c & 1023;
    if (e == 31 && m != 0) {
      EXPECT_TRUE(std::isnan(f));
      EXPECT_TRUE((FloatToHalf(f) & 0x7fff) > 0x7c00);
      continue;
    }
    double mag = e == 0 ? std::ldexp(m, -24) : (e == 31 ? INFINITY : std::ldexp(1024 + m, e - 25));
    EXPECT_EQ(static_cast<double>(f), (c & 0x8000) ? -mag : mag) << c;
    EXPECT_EQ(FloatToHalf(f), h) << c;
  }
}

#if defined(__FLT16_MAX__)
TEST(Half, FloatToHalfMatchesCompiler) {
  std::mt19937 rng(11);
  for (int i = 0; i < 200000; ++i) {
    const float f = BitsToFloatForTest(static_cast<uint32_t>(rng()));
    if (std::isnan(f)) continue;
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t want;
    std::memcpy(&want, &ref, 2);
    ASSERT_EQ(FloatToHalf(f), want) << f;
  }
}
#endif

TEST(Bf16, RoundsToNearestEvenAndKeepsNan) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie -> even
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie -> even
  EXPECT_EQ(FloatToBf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3f81);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(BitsToFloatForTest(0x7f800001u)))));
  for (uint32_t c = 0; c < 65536; ++c) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(c));
    if (!std::isnan(f)) {
      EXPECT_EQ(FloatToBf16(f), c);
    }
  }
}

TEST(Int8, QuantizeClampsAndRoundsHalfToEven) {
  EXPECT_EQ(QuantizeInt8(2.5f, 1.0f), 2);
  EXPECT_EQ(QuantizeInt8(3.5f, 1.0f), 4);
  EXPECT_EQ(QuantizeInt8(-2.5f, 1.0f), -2);
  EXPECT_EQ(QuantizeInt8(1000.0f, 1.0f), 127);
  EXPECT_EQ(QuantizeInt8(-1000.0f, 1.0f), -127);
  EXPECT_EQ(QuantizeInt8(std::numeric_limits<float>::quiet_NaN(), 1.0f), 127);
  EXPECT_EQ(QuantizeInt8(5.0f, 0.0f), 0);
  EXPECT_EQ(DequantizeInt8(-127, 0.5f), -63.5f);
  EXPECT_EQ(Reciprocal(0.0f), 0.0f);
  EXPECT_EQ(Reciprocal(1e-45f), 0.0f);  // 1/denormal overflows: treated as 0
}

TEST(Int4, ZeroIsExactAndRangeIsCovered) {
  const float lo = -3.0f, hi = 12.0f;
  const float scale = Int4NeededScale(lo, hi);  // 1.0
  const float inv = Reciprocal(scale);
  const uint8_t zero = Int4ZeroPoint(lo, inv);
  EXPECT_EQ(zero, 3);
  EXPECT_EQ(DequantizeInt4(QuantizeInt4(0.0f, inv, zero), zero, scale), 0.0f);
  EXPECT_EQ(QuantizeInt4(lo, inv, zero), 0);
  EXPECT_EQ(QuantizeInt4(hi, inv, zero), 15);
  EXPECT_EQ(QuantizeInt4(100.0f, inv, zero), 15);
  EXPECT_EQ(QuantizeInt4(-100.0f, inv, zero), 0);
  for (float x = lo; x <= hi; x += 0.37f) {
    EXPECT_LE(std::fabs(DequantizeInt4(QuantizeInt4(x, inv, zero), zero, scale) - x),
              0.5f * scale + 1e-6f);
  }
}

}  // namespace
}  // namespace kvf::internal
