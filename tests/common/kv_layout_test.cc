#include "common/kv_layout.h"

#include "gtest/gtest.h"

namespace kvf {
namespace {

TEST(KvLayout, Llama3_8bIs128KiBPerTokenInFp16) {
  // 32 layers, 8 KV heads (GQA), head_dim 128.
  const KvLayout l{.num_layers = 32, .num_kv_heads = 8, .head_dim = 128, .block_tokens = 16,
                   .dtype = DType::kFp16};
  ASSERT_TRUE(l.Validate().ok());
  EXPECT_EQ(l.BytesPerToken(), 128u * 1024);
  EXPECT_EQ(l.BytesPerBlock(), 16u * 128 * 1024);
  EXPECT_EQ(l.ElementsPerBlock(), 2u * 32 * 16 * 8 * 128);
}

TEST(KvLayout, Qwen25_05bIs12KiBPerTokenInFp16) {
  // 24 layers, 2 KV heads, head_dim 64.
  const KvLayout l{.num_layers = 24, .num_kv_heads = 2, .head_dim = 64, .block_tokens = 512,
                   .dtype = DType::kFp16};
  EXPECT_EQ(l.BytesPerToken(), 12u * 1024);
  EXPECT_EQ(l.BytesPerBlock(), 512u * 12 * 1024);
}

TEST(KvLayout, DtypeSizes) {
  KvLayout l{.num_layers = 1, .num_kv_heads = 1, .head_dim = 1, .block_tokens = 1};
  l.dtype = DType::kBf16;
  EXPECT_EQ(l.BytesPerBlock(), 4u);
  l.dtype = DType::kFp32;
  EXPECT_EQ(l.BytesPerBlock(), 8u);
}

TEST(KvLayout, ValidateNamesTheBadField) {
  KvLayout l{.num_layers = 32, .num_kv_heads = 8, .head_dim = 128, .block_tokens = 16};
  l.head_dim = 0;
  absl::Status s = l.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("head_dim"), std::string::npos) << s;
  l.head_dim = 128;
  l.num_layers = KvLayout::kMaxLayers + 1;
  EXPECT_NE(l.Validate().message().find("num_layers"), std::string::npos);
  l.num_layers = 32;
  l.dtype = static_cast<DType>(9);
  EXPECT_FALSE(l.Validate().ok());
}

TEST(KvLayout, FingerprintChangesWithEveryField) {
  const KvLayout base{.num_layers = 32, .num_kv_heads = 8, .head_dim = 128, .block_tokens = 16};
  // Golden: stable across builds and machines.
  EXPECT_EQ(base.Fingerprint(), 0x009228615e41121bULL) << std::hex << base.Fingerprint();
  KvLayout l = base;
  l.num_layers = 33;
  EXPECT_NE(l.Fingerprint(), base.Fingerprint());
  l = base;
  l.num_kv_heads = 4;
  EXPECT_NE(l.Fingerprint(), base.Fingerprint());
  l = base;
  l.head_dim = 64;
  EXPECT_NE(l.Fingerprint(), base.Fingerprint());
  l = base;
  l.block_tokens = 32;
  EXPECT_NE(l.Fingerprint(), base.Fingerprint());
  l = base;
  l.dtype = DType::kBf16;
  EXPECT_NE(l.Fingerprint(), base.Fingerprint());
}

TEST(DType, ParseAndName) {
  EXPECT_EQ(*ParseDType("bf16"), DType::kBf16);
  EXPECT_EQ(DTypeName(DType::kFp32), "fp32");
  EXPECT_FALSE(ParseDType("int3").ok());
}

}  // namespace
}  // namespace kvf
