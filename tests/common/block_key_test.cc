#include "common/block_key.h"

#include "gtest/gtest.h"

namespace kvf {
namespace {

TEST(BlockKey, HexRoundTrip) {
  const BlockKey k{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(k.ToHex(), "0123456789abcdeffedcba9876543210");
  auto parsed = BlockKey::FromHex(k.ToHex());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, k);
  EXPECT_EQ(*BlockKey::FromHex("0123456789ABCDEFFEDCBA9876543210"), k);
}

TEST(BlockKey, FromHexRejectsGarbage) {
  EXPECT_FALSE(BlockKey::FromHex("").ok());
  EXPECT_FALSE(BlockKey::FromHex("0123").ok());
  EXPECT_FALSE(BlockKey::FromHex("0123456789abcdeffedcba987654321g").ok());
  EXPECT_FALSE(BlockKey::FromHex("0123456789abcdeffedcba98765432100").ok());
}

TEST(BlockKey, RootIsZero) {
  EXPECT_TRUE(BlockKey::Root().IsRoot());
  EXPECT_FALSE((BlockKey{0, 1}).IsRoot());
}

}  // namespace
}  // namespace kvf
