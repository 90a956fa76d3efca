// Mixed precision's pure parts (client/internal/recent_blocks.h): the codec
// of a position by age, and the writer's bounded ring of raw copies.
#include "client/internal/recent_blocks.h"

#include <cstddef>
#include <vector>

#include "gtest/gtest.h"

namespace kvf::client_internal {
namespace {

PrecisionPolicy Policy(uint32_t recent_blocks, CodecId recent = CodecId::kInt8,
                       CodecId old = CodecId::kInt4) {
  return PrecisionPolicy{.recent_blocks = recent_blocks,
                         .recent = static_cast<uint8_t>(recent),
                         .old = static_cast<uint8_t>(old)};
}

TEST(CodecForPosition, LastRecentBlocksAreRecentTheRestOld) {
  const PrecisionPolicy p = Policy(8);
  for (size_t i = 0; i < 64; ++i) {
    EXPECT_EQ(CodecForPosition(p, i, 64), i >= 56 ? CodecId::kInt8 : CodecId::kInt4) << i;
  }
  // Shorter than the window: everything is recent.
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(CodecForPosition(p, i, 5), CodecId::kInt8) << i;
  EXPECT_EQ(CodecForPosition(p, 0, 8), CodecId::kInt8);
  EXPECT_EQ(CodecForPosition(p, 0, 9), CodecId::kInt4);
  // Off: unencoded, whatever the codecs say.
  EXPECT_EQ(CodecForPosition(Policy(0), 0, 100), CodecId::kNone);
  EXPECT_EQ(CodecForPosition(Policy(2, CodecId::kNone, CodecId::kInt4), 9, 10), CodecId::kNone);
  EXPECT_EQ(CodecForPosition(Policy(2, CodecId::kNone, CodecId::kInt4), 7, 10), CodecId::kInt4);
}

std::vector<std::byte> Block(size_t bytes, int fill) {
  return std::vector<std::byte>(bytes, static_cast<std::byte>(fill));
}

TEST(RecentBlocks, KeepsOwnedCopiesOfAWindowAndAgesInOrder) {
  RecentBlocks ring(4, 16);
  EXPECT_EQ(ring.size(), 0u);
  EXPECT_TRUE(ring.Find(0).empty());
  for (size_t i = 0; i < 4; ++i) {
    std::vector<std::byte> b = Block(16, static_cast<int>(i));
    ring.Keep(i, b);
    b.assign(16, std::byte{0xff});  // the ring owns its copy
  }
  EXPECT_EQ(ring.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_EQ(ring.Find(i).size(), 16u);
    EXPECT_EQ(ring.Find(i)[3], static_cast<std::byte>(i));
  }
  EXPECT_EQ(ring.KeptBelow(2), (std::vector<size_t>{0, 1}));
  EXPECT_EQ(ring.KeptBelow(100), (std::vector<size_t>{0, 1, 2, 3}));

  // The window moves by two: age 0 and 1, then keep 4 and 5 in their slots.
  for (size_t i : ring.KeptBelow(2)) ring.Drop(i);
  ring.Keep(4, Block(16, 4));
  ring.Keep(5, Block(16, 5));
  EXPECT_EQ(ring.KeptBelow(100), (std::vector<size_t>{2, 3, 4, 5}));
  EXPECT_TRUE(ring.Find(0).empty()) << "slot 0 holds position 4 now";
  EXPECT_EQ(ring.Find(4)[0], std::byte{4});

  ring.Drop(7);  // not kept: no-op
  ring.Drop(3);
  EXPECT_EQ(ring.KeptBelow(100), (std::vector<size_t>{2, 4, 5}));
  ring.DropFrom(5);
  EXPECT_EQ(ring.KeptBelow(100), (std::vector<size_t>{2, 4}));
}

TEST(RecentBlocks, APositionInAnotherPositionsSlotReplacesIt) {
  RecentBlocks ring(2, 8);
  ring.Keep(1, Block(8, 1));
  ring.Keep(3, Block(8, 3));  // slot 1: position 1 is no longer kept
  EXPECT_TRUE(ring.Find(1).empty());
  EXPECT_EQ(ring.Find(3)[0], std::byte{3});
  EXPECT_EQ(ring.size(), 1u);
  ring.Keep(0, Block(7, 0));  // wrong size: refused
  EXPECT_TRUE(ring.Find(0).empty());
}

TEST(RecentBlocks, ZeroCapacityKeepsNothing) {
  RecentBlocks ring(0, 8);
  ring.Keep(0, Block(8, 1));
  ring.Drop(0);
  EXPECT_EQ(ring.size(), 0u);
  EXPECT_TRUE(ring.Find(0).empty());
  EXPECT_TRUE(ring.KeptBelow(10).empty());
}

}  // namespace
}  // namespace kvf::client_internal
