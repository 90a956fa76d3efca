// Inputs kvf_coordinator_fuzz (tests/fuzz/, docs/fuzzing.md) found, replayed
// as plain calls on CoordinatorService so they run in every build.
#include <memory>
#include <string>

#include "coordinator/coordinator_service.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace kvf {
namespace {

class CoordinatorFuzzRegression : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorOptions o;
    o.ring.replication = 2;
    o.lease = absl::Seconds(1);
    o.clock = &clock_;
    o.agents = &agents_;
    auto s = CoordinatorService::Create(o);
    ASSERT_TRUE(s.ok()) << s.status();
    svc_ = std::move(*s);
  }

  static proto::JoinRequest Join(const std::string& address, uint64_t known_epoch) {
    proto::JoinRequest r;
    r.set_address(address);
    r.set_capacity_bytes(68);
    r.set_known_epoch(known_epoch);
    return r;
  }

  FakeClock clock_;
  FakeAgents agents_;
  std::unique_ptr<CoordinatorService> svc_;
};

// crash-0a843acd (minimised to 16 bytes): a re-join with an unknown id that
// names a later epoch was refused, but had already moved the epoch past the
// one it named, without a map at that epoch: epoch() and heartbeats said 4,
// GetClusterMap() said 1.
TEST_F(CoordinatorFuzzRegression, ARefusedJoinNamingALaterEpochChangesNothing) {
  const uint64_t before = svc_->epoch();
  proto::JoinRequest r = Join("1:70", 4);
  r.set_node_id(48);
  EXPECT_EQ(svc_->Join(r).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(svc_->epoch(), before);
  EXPECT_EQ(svc_->GetClusterMap()->epoch(), before);

  // Refused for another reason (the address is taken): the same.
  ASSERT_TRUE(svc_->Join(Join("10.0.0.1:7000", 0)).ok());
  const uint64_t now = svc_->epoch();
  EXPECT_EQ(svc_->Join(Join("10.0.0.1:7000", 40)).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(svc_->epoch(), now);
  EXPECT_EQ(svc_->GetClusterMap()->epoch(), now);
}

// Found while reducing the crash above: a join that moves past a known epoch
// leaves a gap in the map history, and WaitForMaps computed its position in
// the history from the epoch, so a watcher asking for maps after an epoch in
// the gap (the joining agent itself, after_epoch 40) got an iterator far past
// the end: std::length_error, the coordinator gone.
TEST_F(CoordinatorFuzzRegression, AWatcherInsideAnEpochGapGetsTheNewerMaps) {
  auto joined = svc_->Join(Join("10.0.0.1:7000", 40));
  ASSERT_TRUE(joined.ok()) << joined.status();
  const uint64_t first = 41;  // the join's map: one past the epoch the node knew
  const uint64_t current = svc_->epoch();  // one more: the lone node turned active
  ASSERT_GE(current, first);
  for (uint64_t after : {uint64_t{1}, uint64_t{20}, uint64_t{40}}) {
    auto maps = svc_->WaitForMaps(after, absl::InfinitePast());
    ASSERT_EQ(maps.size(), current - first + 1) << "after_epoch " << after;
    EXPECT_EQ(maps.front()->epoch(), first);
    EXPECT_EQ(maps.back()->epoch(), current);
  }
  EXPECT_TRUE(svc_->WaitForMaps(current, absl::InfinitePast()).empty());
  // Past the gap, maps come one by one again.
  ASSERT_TRUE(svc_->Join(Join("10.0.0.2:7000", 0)).ok());
  auto maps = svc_->WaitForMaps(current, absl::InfinitePast());
  ASSERT_FALSE(maps.empty());
  EXPECT_EQ(maps.front()->epoch(), current + 1);
  EXPECT_EQ(maps.back()->epoch(), svc_->epoch());
}

}  // namespace
}  // namespace kvf
