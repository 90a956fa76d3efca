// Decoders face bytes from the network and from memory that may be corrupt:
// random bit flips, truncations, garbage and forged headers must give a
// status (or a successful decode), never a crash or an out-of-bounds read.
// Run under ASan/UBSan (-DKVF_SANITIZE="address;undefined") to check the latter.
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/codec.h"
#include "kernels/internal/codec_format.h"
#include "tests/kernels/codec_test_util.h"

namespace kvf {
namespace {

using ::kvf::testing::EncodeBlock;
using ::kvf::testing::MakeLayout;
using ::kvf::testing::SyntheticKv;
using ::kvf::testing::ToBlock;

bool IsExpectedError(const absl::Status& s) {
  return s.ok() || s.code() == absl::StatusCode::kDataLoss ||
         s.code() == absl::StatusCode::kInvalidArgument;
}

class CodecFuzz : public ::testing::TestWithParam<CodecId> {};

TEST_P(CodecFuzz, BitFlipsAndTruncationsNeverCrash) {
  const Codec& codec = CpuCodec(GetParam());
  std::mt19937 rng(1234 + static_cast<int>(GetParam()));
  for (DType dtype : testing::kAllDTypes) {
    const KvLayout l = MakeLayout(2, 3, 40, 7, dtype);
    auto enc = EncodeBlock(codec, l, ToBlock(SyntheticKv(l, 8), dtype));
    ASSERT_TRUE(enc.ok()) << enc.status();
    // Decode into an exactly-sized heap buffer, so ASan sees any overrun.
    std::vector<std::byte> out(l.BytesPerBlock());
    for (int iter = 0; iter < 1500; ++iter) {
      std::vector<std::byte> bad = *enc;
      const int flips = 1 + static_cast<int>(rng() % 8);
      for (int f = 0; f < flips; ++f) {
        // Bias half of the flips into the header and scales, where they matter most.
        const size_t limit = (rng() & 1) ? std::min<size_t>(bad.size(), 256) : bad.size();
        const size_t pos = rng() % limit;
        bad[pos] ^= static_cast<std::byte>(1u << (rng() % 8));
      }
      if (rng() % 3 == 0) bad.resize(rng() % (bad.size() + 1));
      bad.shrink_to_fit();
      const absl::Status s = codec.Decode(l, bad, absl::MakeSpan(out));
      ASSERT_TRUE(IsExpectedError(s)) << s;
    }
  }
}

TEST_P(CodecFuzz, RandomGarbageIsRejectedOrDecoded) {
  const Codec& codec = CpuCodec(GetParam());
  std::mt19937 rng(77);
  const KvLayout l = MakeLayout(1, 2, 40, 7, DType::kFp16);
  std::vector<std::byte> out(l.BytesPerBlock());
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<std::byte> garbage(rng() % (2 * codec.EncodedSize(l) + 1));
    for (std::byte& b : garbage) b = static_cast<std::byte>(rng());
    if (GetParam() != CodecId::kNone && garbage.size() >= 4 && iter % 2 == 0) {
      std::memcpy(garbage.data(), "KVFC", 4);  // get past the magic check
    }
    const absl::Status s = codec.Decode(l, garbage, absl::MakeSpan(out));
    if (GetParam() != CodecId::kNone) {
      ASSERT_FALSE(s.ok()) << "garbage decoded as a valid blob";
    }
    ASSERT_TRUE(IsExpectedError(s)) << s;
  }
}

TEST_P(CodecFuzz, ForgedSectionSizesAreDataLoss) {
  if (GetParam() == CodecId::kNone) GTEST_SKIP() << "none has no header";
  const Codec& codec = CpuCodec(GetParam());
  const KvLayout l = MakeLayout(2, 2, 32, 8, DType::kFp16);
  auto enc = EncodeBlock(codec, l, ToBlock(SyntheticKv(l, 3), DType::kFp16));
  ASSERT_TRUE(enc.ok());
  std::vector<std::byte> out(l.BytesPerBlock());
  for (size_t field : {offsetof(internal::BlobHeader, scales_bytes),
                       offsetof(internal::BlobHeader, meta_bytes),
                       offsetof(internal::BlobHeader, payload_bytes)}) {
    for (uint64_t forged : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}, uint64_t{1} << 62}) {
      std::vector<std::byte> bad = *enc;
      uint64_t original;
      std::memcpy(&original, bad.data() + field, sizeof(original));
      if (forged == original) continue;
      std::memcpy(bad.data() + field, &forged, sizeof(forged));
      const absl::Status s = codec.Decode(l, bad, absl::MakeSpan(out));
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    }
  }
  // A NaN or negative scale is corruption, not a value to decode.
  for (float scale : {NAN, -1.0f, INFINITY}) {
    std::vector<std::byte> bad = *enc;
    std::memcpy(bad.data() + internal::kBlobHeaderSize, &scale, sizeof(scale));
    EXPECT_EQ(codec.Decode(l, bad, absl::MakeSpan(out)).code(), absl::StatusCode::kDataLoss);
  }
  // A bad version or magic.
  std::vector<std::byte> bad = *enc;
  bad[4] = std::byte{9};
  EXPECT_EQ(codec.Decode(l, bad, absl::MakeSpan(out)).code(), absl::StatusCode::kDataLoss);
  bad = *enc;
  bad[0] = std::byte{'X'};
  EXPECT_EQ(codec.Decode(l, bad, absl::MakeSpan(out)).code(), absl::StatusCode::kDataLoss);
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CodecFuzz, ::testing::ValuesIn(testing::kAllCodecs),
                         [](const ::testing::TestParamInfo<CodecId>& info) {
                           return std::string(CodecName(info.param));
                         });

}  // namespace
}  // namespace kvf
