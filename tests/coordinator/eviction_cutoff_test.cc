#include "coordinator/eviction_cutoff.h"

#include <vector>

#include "gtest/gtest.h"

namespace kvf {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

NodeUsage Node(uint64_t capacity, std::vector<std::pair<absl::Duration, uint64_t>> blocks) {
  NodeUsage n;
  n.capacity_bytes = capacity;
  for (const auto& [age, bytes] : blocks) {
    n.ages.Add(age, bytes);
    n.used_bytes += bytes;
  }
  return n;
}

// Bytes left after every node drops what is at least `cutoff` old.
uint64_t UsedAfter(const std::vector<NodeUsage>& nodes, absl::Duration cutoff) {
  uint64_t left = 0;
  for (const NodeUsage& n : nodes) {
    for (int b = 0; b < AgeHistogram::kBuckets; ++b) {
      if (AgeHistogram::BucketLowerBound(b) < cutoff) left += n.ages.bytes[b];
    }
  }
  return left;
}

TEST(EvictionCutoff, NothingUnderTheHighWatermark) {
  std::vector<NodeUsage> nodes = {Node(100 * kGiB, {{absl::Hours(5), 90 * kGiB}})};
  EXPECT_FALSE(ComputeEvictionCutoff(nodes).has_value());  // exactly 90%: not past it
  nodes[0].used_bytes = 50 * kGiB;
  EXPECT_FALSE(ComputeEvictionCutoff(nodes).has_value());
  EXPECT_FALSE(ComputeEvictionCutoff({}).has_value());
}

TEST(EvictionCutoff, OldNodeIsEvictedYoungNodeUntouched) {
  // A holds only old blocks, B only young ones; together they are at 95%.
  std::vector<NodeUsage> nodes = {
      Node(100 * kGiB, {{absl::Hours(2), 45 * kGiB}, {absl::Hours(4), 50 * kGiB}}),
      Node(100 * kGiB, {{absl::Seconds(5), 40 * kGiB}, {absl::Seconds(30), 55 * kGiB}})};
  const auto cutoff = ComputeEvictionCutoff(nodes);
  ASSERT_TRUE(cutoff.has_value());
  EXPECT_GT(*cutoff, absl::Seconds(30));  // B keeps everything
  EXPECT_LE(UsedAfter(nodes, *cutoff), 160 * kGiB);
  EXPECT_EQ(UsedAfter({nodes[1]}, *cutoff), 95 * kGiB);
  // Need 30 GiB: the 50 GiB in A's 4 h bucket suffice, so its 2 h blocks stay.
  EXPECT_GT(*cutoff, absl::Hours(2));
  EXPECT_LE(*cutoff, absl::Hours(4));
}

TEST(EvictionCutoff, GloballyOldestGoFirstAcrossMixedNodes) {
  // Ages spread over both nodes; the cutoff must free the globally oldest
  // bytes, whichever node holds them, and only as much as needed.
  std::vector<NodeUsage> nodes = {
      Node(100 * kGiB, {{absl::Minutes(1), 30 * kGiB}, {absl::Minutes(30), 30 * kGiB}, {absl::Hours(10), 36 * kGiB}}),
      Node(100 * kGiB, {{absl::Minutes(2), 40 * kGiB}, {absl::Hours(3), 50 * kGiB}, {absl::Hours(4), 6 * kGiB}})};
  // 192 of 200 GiB used (96%); low = 160 GiB, so 32 GiB must go: A's 10 h
  // bucket (36 GiB) alone does it.
  auto cutoff = ComputeEvictionCutoff(nodes);
  ASSERT_TRUE(cutoff.has_value());
  EXPECT_GT(*cutoff, absl::Hours(4));
  EXPECT_LE(*cutoff, absl::Hours(10));
  EXPECT_LE(UsedAfter(nodes, *cutoff), 160 * kGiB);
  // With a lower low watermark it reaches into B's 3-4 h blocks before A's
  // 30 min ones.
  cutoff = ComputeEvictionCutoff(nodes, {0.90, 0.60});
  ASSERT_TRUE(cutoff.has_value());
  EXPECT_GT(*cutoff, absl::Minutes(30));
  EXPECT_LE(*cutoff, absl::Hours(3));
  EXPECT_LE(UsedAfter(nodes, *cutoff), 120 * kGiB);
  // And the result is the largest such cutoff: one bucket higher is not enough.
  const int b = AgeHistogram::BucketOf(*cutoff);
  EXPECT_GT(UsedAfter(nodes, AgeHistogram::BucketLowerBound(b + 1)), 120 * kGiB);
}

TEST(EvictionCutoff, EverythingInOneBucket) {
  std::vector<NodeUsage> nodes = {Node(10 * kGiB, {{absl::Minutes(10), 10 * kGiB}})};
  const auto cutoff = ComputeEvictionCutoff(nodes);
  ASSERT_TRUE(cutoff.has_value());
  EXPECT_EQ(*cutoff, AgeHistogram::BucketLowerBound(AgeHistogram::BucketOf(absl::Minutes(10))));
  EXPECT_EQ(UsedAfter(nodes, *cutoff), 0u);  // conservative: the whole bucket goes
}

TEST(EvictionCutoff, EdgeCases) {
  // Zero capacity: no watermark to compare with.
  EXPECT_FALSE(ComputeEvictionCutoff({Node(0, {{absl::Hours(1), kGiB}})}).has_value());
  // Over the watermark but no ages reported: nothing to cut by.
  NodeUsage blind;
  blind.capacity_bytes = 10 * kGiB;
  blind.used_bytes = 10 * kGiB;
  EXPECT_FALSE(ComputeEvictionCutoff({blind}).has_value());
  // Histograms that account for fewer bytes than must go: evict all of them.
  NodeUsage partial = Node(100 * kGiB, {{absl::Hours(1), 5 * kGiB}});
  partial.used_bytes = 99 * kGiB;
  EXPECT_EQ(ComputeEvictionCutoff({partial}), absl::ZeroDuration());
  // Young bytes (under 1 s) count too: cutoff zero when they must go.
  EXPECT_EQ(ComputeEvictionCutoff({Node(kGiB, {{absl::Milliseconds(1), kGiB}})}), absl::ZeroDuration());
  // A node with zero capacity next to a normal one still counts its bytes.
  std::vector<NodeUsage> mixed = {Node(0, {{absl::Hours(3), 5 * kGiB}}),
                                  Node(10 * kGiB, {{absl::Seconds(2), 5 * kGiB}})};
  const auto cutoff = ComputeEvictionCutoff(mixed);
  ASSERT_TRUE(cutoff.has_value());
  EXPECT_LE(UsedAfter(mixed, *cutoff), 8 * kGiB);
  EXPECT_GT(*cutoff, absl::Seconds(2));  // the young node's bytes survive
}

}  // namespace
}  // namespace kvf
