// The vectorised row kernels (kernels/core/cpu_rows_avx2.cc) against the
// portable loops (kernels/core/cpu_rows.cc), byte for byte: every function,
// every dtype, on every fp16 and bf16 bit pattern, every E4M3 and int8 code,
// values at the rounding boundaries, special scales and centres, short rows
// and unaligned pointers. Skips where the CPU lacks AVX2 or F16C.
#include "kernels/core/cpu_rows.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/core/internal/cpu_rows_impl.h"
#include "kernels/internal/codec_math.h"

namespace kvf::kcore::rows_internal {
namespace {

using ::kvf::internal::BitsFloat;
using ::kvf::internal::FloatBits;
using ::kvf::internal::FloatToBf16;
using ::kvf::internal::FloatToHalf;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr ElemType kTypes[] = {ElemType::kFp16, ElemType::kBf16, ElemType::kFp32};

const char* Name(ElemType t) {
  return t == ElemType::kFp16 ? "fp16" : t == ElemType::kBf16 ? "bf16" : "fp32";
}

// Scales and inverse scales: zero, subnormal, tiny, ordinary, huge, inf, NaN
// (negative ones too: the row kernels do not assume Reciprocal's output).
std::vector<float> SpecialScalars() {
  std::vector<float> v = {0.0f,          -0.0f,         1e-45f, 1.1754942e-38f, 1e-30f,
                          1.0f / 448.0f, 1.0f / 127.0f, 0.3f,   1.0f,           1.5f,
                          3.7f,          127.0f,        448.0f, 1e20f,          3.4e38f,
                          kInf,          -1.0f,         -kInf,  std::nanf("")};
  v.push_back(BitsFloat(0x7f800001u));  // signalling
  v.push_back(BitsFloat(0xffc12345u));  // negative, with a payload
  return v;
}

// Floats over many magnitudes with the special values mixed in.
std::vector<float> RandomFloats(size_t n, std::mt19937& rng, bool specials = true) {
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> exp(-40, 40), pick(0, 15);
  std::uniform_int_distribution<uint32_t> bits;
  const float kSpecial[] = {0.0f,    -0.0f,         kInf,   -kInf,   std::nanf(""), -std::nanf(""),
                            1e-45f,  -1e-45f,       448.0f, -448.0f, 464.0f,        127.5f,
                            -127.5f, 3.4028235e38f, 6e-8f,  65504.0f};
  std::vector<float> v(n);
  for (float& f : v) {
    const int p = pick(rng);
    if (specials && p == 0) {
      f = kSpecial[bits(rng) % std::size(kSpecial)];
    } else if (specials && p == 1) {
      f = BitsFloat(bits(rng));  // any pattern: NaN payloads, subnormals
    } else {
      f = std::ldexp(mant(rng), exp(rng)) * (bits(rng) & 1 ? -1.0f : 1.0f);
    }
  }
  return v;
}

// `f` stored as dtype `t` (fp16 and bf16 rounded as the codecs round).
std::vector<uint8_t> ToElems(ElemType t, const std::vector<float>& f) {
  std::vector<uint8_t> b(f.size() * ElemSize(t));
  for (size_t i = 0; i < f.size(); ++i) {
    if (t == ElemType::kFp32) {
      std::memcpy(&b[4 * i], &f[i], 4);
    } else {
      const uint16_t h = t == ElemType::kFp16 ? FloatToHalf(f[i]) : FloatToBf16(f[i]);
      std::memcpy(&b[2 * i], &h, 2);
    }
  }
  return b;
}

// Every 16-bit pattern once, or for fp32 each as the high half of a float
// with a few low halves (rounding ties, NaN payloads).
std::vector<uint8_t> AllPatterns(ElemType t) {
  std::vector<uint8_t> b;
  if (t != ElemType::kFp32) {
    b.resize(2 * 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
      const uint16_t h = static_cast<uint16_t>(i);
      std::memcpy(&b[2 * i], &h, 2);
    }
    return b;
  }
  const uint32_t kLow[] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff, 0xc000};
  b.resize(4 * 65536 * std::size(kLow));
  size_t k = 0;
  for (uint32_t low : kLow) {
    for (uint32_t i = 0; i < 65536; ++i, ++k) {
      const uint32_t u = (i << 16) | low;
      std::memcpy(&b[4 * k], &u, 4);
    }
  }
  return b;
}

// fp32 values at and next to every rounding boundary of E4M3 (midpoints
// between codes) and int8 (k + 0.5), and the saturation points.
std::vector<float> BoundaryFloats() {
  std::vector<float> v;
  auto add = [&](float f) {
    for (int d = -2; d <= 2; ++d) {
      const float g = BitsFloat(FloatBits(f) + static_cast<uint32_t>(d));
      v.push_back(g);
      v.push_back(-g);
    }
  };
  for (int c = 0; c < 0x7e; ++c) {
    const float a = ::kvf::internal::E4m3ToFloat(static_cast<uint8_t>(c));
    const float b = ::kvf::internal::E4m3ToFloat(static_cast<uint8_t>(c + 1));
    add(a);
    add(0.5f * (a + b));
  }
  for (float f : {448.0f, 464.0f, 480.0f, 0x1.0p-6f, 0x1.0p-9f, 0x1.0p-10f}) add(f);
  for (int k = 0; k <= 128; ++k) {
    add(static_cast<float>(k));
    add(static_cast<float>(k) + 0.5f);
  }
  for (float f : {65504.0f, 65520.0f, 0x1.0p-14f, 0x1.0p-24f, 0x1.0p-25f, 3.3895314e38f}) add(f);
  return v;
}

// n floats for centre/inv/scale arrays: mostly ordinary, some special.
std::vector<float> ParamArray(size_t n, std::mt19937& rng, bool specials, float typical) {
  std::vector<float> v = RandomFloats(n, rng, specials);
  std::uniform_int_distribution<int> pick(0, 3);
  for (float& f : v) {
    if (pick(rng) != 0) f = typical * (1.0f + std::fmod(std::fabs(f), 1.0f));
  }
  return v;
}

std::string Hex(const uint8_t* p, size_t bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = bytes; i-- > 0;) {
    s += kDigits[p[i] >> 4];
    s += kDigits[p[i] & 15];
  }
  return s;
}

// First difference between two buffers of `es`-byte elements, or "".
std::string Diff(const std::vector<uint8_t>& want, const std::vector<uint8_t>& got, size_t es,
                 const uint8_t* in = nullptr, size_t in_es = 0) {
  if (want == got) return "";
  for (size_t i = 0; i + es <= want.size(); i += es) {
    if (std::memcmp(&want[i], &got[i], es) != 0) {
      std::string s = "element " + std::to_string(i / es) + ": portable " + Hex(&want[i], es) +
                      ", avx2 " + Hex(&got[i], es);
      if (in != nullptr) s += ", input " + Hex(in + (i / es) * in_es, in_es);
      return s;
    }
  }
  return "sizes differ";
}

std::vector<uint8_t> AsBytes(const std::vector<float>& f) {
  std::vector<uint8_t> b(4 * f.size());
  if (!f.empty()) std::memcpy(b.data(), f.data(), b.size());
  return b;
}

class CpuRowsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    avx2_ = Avx2Rows();
    if (avx2_ == nullptr) GTEST_SKIP() << "this CPU (or build) has no AVX2 + F16C row kernels";
  }

  // Runs every function of both implementations on `in` (n elements of `t`,
  // which may start at any address) and expects the same bytes.
  void CheckAll(ElemType t, const uint8_t* in, size_t n, std::mt19937& rng,
                const std::string& what) {
    SCOPED_TRACE(what + " " + Name(t) + " n=" + std::to_string(n));
    const size_t es = ElemSize(t);
    // AbsMax over the whole input and over windows (so one inf or NaN does
    // not decide every result).
    for (size_t w : {n, size_t{7}, size_t{33}, size_t{200}}) {
      for (size_t i = 0; w > 0 && i < n; i += w) {
        const size_t m = std::min(w, n - i);
        const float a = portable_.abs_max(t, in + es * i, m);
        const float b = avx2_->abs_max(t, in + es * i, m);
        ASSERT_EQ(FloatBits(a), FloatBits(b)) << "AbsMax at " << i << " of " << m;
      }
    }
    {  // MinMax from special and ordinary starting ranges.
      std::vector<float> lo = ParamArray(n, rng, true, -1.0f), hi = ParamArray(n, rng, true, 1.0f);
      for (size_t i = 0; i < n; i += 5) {
        lo[i] = ::kvf::internal::kRangeEmptyLo;
        hi[i] = ::kvf::internal::kRangeEmptyHi;
      }
      std::vector<float> lo2 = lo, hi2 = hi;
      portable_.min_max(t, in, n, lo.data(), hi.data());
      avx2_->min_max(t, in, n, lo2.data(), hi2.data());
      ASSERT_EQ("", Diff(AsBytes(lo), AsBytes(lo2), 4, in, es)) << "MinMax lo";
      ASSERT_EQ("", Diff(AsBytes(hi), AsBytes(hi2), 4, in, es)) << "MinMax hi";
    }
    std::vector<uint8_t> want(n), got(n);
    const std::vector<float> centre = ParamArray(n, rng, false, 0.25f);
    const std::vector<float> inv = ParamArray(n, rng, false, 40.0f);
    for (float s : SpecialScalars()) {
      SCOPED_TRACE("inv " + std::to_string(s));
      portable_.encode_fp8(t, in, n, nullptr, s, want.data());
      avx2_->encode_fp8(t, in, n, nullptr, s, got.data());
      ASSERT_EQ("", Diff(want, got, 1, in, es)) << "EncodeFp8";
      portable_.encode_fp8(t, in, n, centre.data(), s, want.data());
      avx2_->encode_fp8(t, in, n, centre.data(), s, got.data());
      ASSERT_EQ("", Diff(want, got, 1, in, es)) << "EncodeFp8 centred";
      portable_.encode_int8(t, in, n, s, want.data());
      avx2_->encode_int8(t, in, n, s, got.data());
      ASSERT_EQ("", Diff(want, got, 1, in, es)) << "EncodeInt8";
    }
    portable_.encode_int8_channels(t, in, n, centre.data(), inv.data(), want.data());
    avx2_->encode_int8_channels(t, in, n, centre.data(), inv.data(), got.data());
    ASSERT_EQ("", Diff(want, got, 1, in, es)) << "EncodeInt8Channels";
  }

  // Decodes `codes` with both implementations into every dtype, with every
  // special scale, with and without centres, and expects the same bytes.
  void CheckDecode(const std::vector<uint8_t>& codes, size_t offset, std::mt19937& rng,
                   bool special_params) {
    const size_t n = codes.size();
    SCOPED_TRACE("n=" + std::to_string(n) + " offset=" + std::to_string(offset));
    std::vector<uint8_t> shifted(offset + n);  // the codes at `offset` too
    if (n > 0) std::memcpy(shifted.data() + offset, codes.data(), n);
    const uint8_t* in = shifted.data() + offset;
    const std::vector<float> centre = ParamArray(n, rng, special_params, 0.3f);
    const std::vector<float> scale = ParamArray(n, rng, special_params, 0.01f);
    for (ElemType t : kTypes) {
      SCOPED_TRACE(Name(t));
      const size_t es = ElemSize(t);
      std::vector<uint8_t> want(es * n + offset), got(es * n + offset);
      auto check = [&](const char* fn) {
        ASSERT_EQ("", Diff(want, got, 1)) << fn;  // bytewise: offsets shift elements
      };
      for (float s : SpecialScalars()) {
        SCOPED_TRACE("scale " + std::to_string(s));
        portable_.decode_fp8(in, n, nullptr, s, t, want.data() + offset);
        avx2_->decode_fp8(in, n, nullptr, s, t, got.data() + offset);
        check("DecodeFp8");
        portable_.decode_fp8(in, n, centre.data(), s, t, want.data() + offset);
        avx2_->decode_fp8(in, n, centre.data(), s, t, got.data() + offset);
        check("DecodeFp8 centred");
        portable_.decode_int8(in, n, s, t, want.data() + offset);
        avx2_->decode_int8(in, n, s, t, got.data() + offset);
        check("DecodeInt8");
      }
      portable_.decode_int8_channels(in, n, centre.data(), scale.data(), t, want.data() + offset);
      avx2_->decode_int8_channels(in, n, centre.data(), scale.data(), t, got.data() + offset);
      check("DecodeInt8Channels");
    }
  }

  const RowKernels& portable_ = PortableRows();
  const RowKernels* avx2_ = nullptr;
};

TEST_F(CpuRowsTest, ImplementationNamesTheChoice) {
  const char* env = std::getenv("KVF_CPU_ROWS");
  const bool forced = env != nullptr && std::string(env) == "portable";
  EXPECT_STREQ(rows::Implementation(), forced ? "portable" : "avx2");
  EXPECT_STREQ(portable_.name, "portable");
  EXPECT_STREQ(avx2_->name, "avx2");
}

TEST_F(CpuRowsTest, EncodersMatchOnEveryBitPattern) {
  std::mt19937 rng(1);
  for (ElemType t : kTypes) {
    const std::vector<uint8_t> in = AllPatterns(t);
    CheckAll(t, in.data(), in.size() / ElemSize(t), rng, "all patterns");
  }
}

TEST_F(CpuRowsTest, EncodersMatchOnRandomValues) {
  std::mt19937 rng(2);
  for (ElemType t : kTypes) {
    const std::vector<uint8_t> in = ToElems(t, RandomFloats(100000, rng));
    CheckAll(t, in.data(), in.size() / ElemSize(t), rng, "random");
  }
}

TEST_F(CpuRowsTest, EncodersMatchAtRoundingBoundaries) {
  std::mt19937 rng(3);
  const std::vector<float> f = BoundaryFloats();
  for (ElemType t : kTypes) {
    const std::vector<uint8_t> in = ToElems(t, f);
    CheckAll(t, in.data(), f.size(), rng, "boundaries");
  }
  // The same with inv = 1 and no centre checked element by element, so a
  // failure names the value.
  const std::vector<uint8_t> in = ToElems(ElemType::kFp32, f);
  std::vector<uint8_t> want(f.size()), got(f.size());
  portable_.encode_fp8(ElemType::kFp32, in.data(), f.size(), nullptr, 1.0f, want.data());
  avx2_->encode_fp8(ElemType::kFp32, in.data(), f.size(), nullptr, 1.0f, got.data());
  EXPECT_EQ("", Diff(want, got, 1, in.data(), 4));
  portable_.encode_int8(ElemType::kFp32, in.data(), f.size(), 1.0f, want.data());
  avx2_->encode_int8(ElemType::kFp32, in.data(), f.size(), 1.0f, got.data());
  EXPECT_EQ("", Diff(want, got, 1, in.data(), 4));
}

TEST_F(CpuRowsTest, CentresAndInversesWithSpecialValues) {
  std::mt19937 rng(4);
  const size_t n = 4099;
  for (ElemType t : kTypes) {
    SCOPED_TRACE(Name(t));
    const std::vector<uint8_t> in = ToElems(t, RandomFloats(n, rng));
    std::vector<uint8_t> want(n), got(n);
    for (int round = 0; round < 8; ++round) {
      // Special values everywhere, or only in some rows' worth of elements
      // (so the rows without them take the vector path).
      std::vector<float> centre = ParamArray(n, rng, round % 2 == 0, 0.5f);
      const std::vector<float> inv = ParamArray(n, rng, true, 30.0f);
      if (round % 2 == 1) centre[round * 300] = std::nanf("");
      for (size_t row = 0; row < n; row += 128) {
        const size_t m = std::min<size_t>(128, n - row);
        portable_.encode_fp8(t, in.data() + ElemSize(t) * row, m, centre.data() + row, 17.0f,
                             want.data() + row);
        avx2_->encode_fp8(t, in.data() + ElemSize(t) * row, m, centre.data() + row, 17.0f,
                          got.data() + row);
      }
      ASSERT_EQ("", Diff(want, got, 1, in.data(), ElemSize(t))) << "EncodeFp8 centred";
      portable_.encode_int8_channels(t, in.data(), n, centre.data(), inv.data(), want.data());
      avx2_->encode_int8_channels(t, in.data(), n, centre.data(), inv.data(), got.data());
      ASSERT_EQ("", Diff(want, got, 1, in.data(), ElemSize(t))) << "EncodeInt8Channels";
    }
  }
}

// Which NaN x + (-centre) gives when both are NaN is the compiler's choice in
// the portable loops; the vector code must make the same one.
TEST_F(CpuRowsTest, NanElementMeetsNanCentre) {
  const uint32_t kNans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff812345u, 0x7fffffffu};
  const size_t n = 64;
  std::vector<float> x(n), centre(n);
  for (size_t i = 0; i < n; ++i) {
    x[i] = BitsFloat(kNans[i % 5]);
    centre[i] = BitsFloat(kNans[(i / 5) % 5]);
  }
  for (ElemType t : kTypes) {
    const std::vector<uint8_t> in = ToElems(t, x);
    std::vector<uint8_t> want(n), got(n);
    portable_.encode_fp8(t, in.data(), n, centre.data(), 2.0f, want.data());
    avx2_->encode_fp8(t, in.data(), n, centre.data(), 2.0f, got.data());
    EXPECT_EQ("", Diff(want, got, 1, in.data(), ElemSize(t))) << Name(t);
  }
  std::vector<uint8_t> codes(n, 0x7f);
  for (size_t i = 0; i < n; i += 2) codes[i] = 0xff;
  for (ElemType t : kTypes) {
    std::vector<uint8_t> want(ElemSize(t) * n), got(ElemSize(t) * n);
    portable_.decode_fp8(codes.data(), n, centre.data(), 2.0f, t, want.data());
    avx2_->decode_fp8(codes.data(), n, centre.data(), 2.0f, t, got.data());
    EXPECT_EQ("", Diff(want, got, ElemSize(t))) << Name(t);
  }
}

TEST_F(CpuRowsTest, DecodersMatchOnEveryCode) {
  std::mt19937 rng(5);
  std::vector<uint8_t> codes(256 * 9);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i * 7 + i / 256);
  CheckDecode(codes, 0, rng, false);
  CheckDecode(codes, 0, rng, true);
  // Rows of 128 where only some carry a special centre or scale.
  for (int round = 0; round < 4; ++round) {
    const size_t n = 128;
    std::vector<float> centre = ParamArray(n, rng, false, 0.3f);
    std::vector<float> scale = ParamArray(n, rng, false, 0.01f);
    // A NaN centre, or a NaN scale with a payload, in some rows only.
    const float kOdd[] = {std::nanf(""), BitsFloat(0xff80dead), kInf, -kInf};
    const float kOddScale[] = {BitsFloat(0x7fc12345), kInf, BitsFloat(0xff812345), 1e-42f};
    centre[(round * 37) % n] = kOdd[round];
    scale[(round * 53) % n] = kOddScale[round];
    for (ElemType t : kTypes) {
      std::vector<uint8_t> want(ElemSize(t) * n), got(ElemSize(t) * n);
      for (size_t start = 0; start + n <= codes.size(); start += n) {
        portable_.decode_fp8(&codes[start], n, centre.data(), 0.02f, t, want.data());
        avx2_->decode_fp8(&codes[start], n, centre.data(), 0.02f, t, got.data());
        ASSERT_EQ("", Diff(want, got, ElemSize(t))) << "DecodeFp8 centred " << Name(t);
        portable_.decode_int8_channels(&codes[start], n, centre.data(), scale.data(), t,
                                       want.data());
        avx2_->decode_int8_channels(&codes[start], n, centre.data(), scale.data(), t, got.data());
        ASSERT_EQ("", Diff(want, got, ElemSize(t))) << "DecodeInt8Channels " << Name(t);
      }
    }
  }
}

// The stores to fp16 and bf16 see every value a decode can produce: with
// code 0 and scale 1, DecodeInt8Channels gives centre + 0 = the centre.
TEST_F(CpuRowsTest, StoresMatchOnManyFloats) {
  std::mt19937 rng(6);
  std::uniform_int_distribution<uint32_t> bits;
  const size_t n = 1 << 16;
  std::vector<float> centre(n);
  const std::vector<float> scale(n, 1.0f);
  const std::vector<uint8_t> zeros(n, 0);
  for (int round = 0; round < 24; ++round) {
    for (size_t i = 0; i < n; ++i) {
      // Round 0..7: every high half with a few low halves; then random.
      uint32_t u = round < 8 ? (static_cast<uint32_t>(i) << 16) |
                                   (round < 4 ? 0x7fffu + round - 1 : bits(rng) & 0xffff)
                             : bits(rng);
      if ((u & 0x7fffffffu) > 0x7f800000u) u &= 0xff800000u;  // NaN centres: another test
      centre[i] = BitsFloat(u);
    }
    for (ElemType t : {ElemType::kFp16, ElemType::kBf16}) {
      std::vector<uint8_t> want(2 * n), got(2 * n);
      portable_.decode_int8_channels(zeros.data(), n, centre.data(), scale.data(), t, want.data());
      avx2_->decode_int8_channels(zeros.data(), n, centre.data(), scale.data(), t, got.data());
      ASSERT_EQ("", Diff(want, got, 2, reinterpret_cast<const uint8_t*>(centre.data()), 4))
          << Name(t) << " round " << round;
    }
  }
}

TEST_F(CpuRowsTest, ShortRowsAndUnalignedPointers) {
  std::mt19937 rng(7);
  for (size_t n = 0; n <= 70; ++n) {
    for (size_t offset = 0; offset < 4; ++offset) {
      for (ElemType t : kTypes) {
        std::vector<uint8_t> buf(offset + 4 * n + 1);
        const std::vector<uint8_t> elems = ToElems(t, RandomFloats(n, rng));
        if (n > 0) std::memcpy(buf.data() + offset, elems.data(), elems.size());
        CheckAll(t, buf.data() + offset, n, rng, "offset " + std::to_string(offset));
      }
      std::vector<uint8_t> codes(n);
      for (uint8_t& c : codes) c = static_cast<uint8_t>(rng());
      CheckDecode(codes, offset, rng, n % 3 == 0);
    }
  }
}

}  // namespace
}  // namespace kvf::kcore::rows_internal
