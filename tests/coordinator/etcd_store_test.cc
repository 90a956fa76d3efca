// The coordinator's state in a real etcd (coordinator/etcd_state_store.h,
// leader_election.h, coordinator_group.h): epochs taken only by
// compare-and-swap, a stale leader's writes fenced, an election handing over
// within its bound, and a group whose followers serve the leader's maps and
// whose next leader keeps every node. Each test starts its own etcd on free
// ports (tests/coordinator/etcd_server.h) and skips where etcd is missing.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/coordinator_group.h"
#include "coordinator/etcd_client.h"
#include "coordinator/etcd_state_store.h"
#include "coordinator/leader_election.h"
#include "coordinator/map_feed.h"
#include "proto/coordinator_state.pb.h"
#include "gtest/gtest.h"
#include "tests/coordinator/etcd_server.h"

namespace kvf::testing {
namespace {

class EtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!launch::FindEtcd().ok()) GTEST_SKIP() << kNoEtcd;
    auto server = EtcdServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto client = EtcdClient::Create(server_->endpoint(), absl::Seconds(2));
    ASSERT_TRUE(client.ok()) << client.status();
    etcd_ = *std::move(client);
  }

  std::unique_ptr<EtcdServer> server_;
  std::unique_ptr<EtcdClient> etcd_;
};

// Polls `pred` every 5 ms until it holds or `timeout` passes.
template <typename Pred>
bool WaitFor(Pred pred, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

absl::Duration Percentile(std::vector<absl::Duration> v, double p) {
  if (v.empty()) return absl::ZeroDuration();
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

TEST_F(EtcdTest, EpochsAdvanceOnlyByCompareAndSwap) {
  const std::string prefix = "/test/cas";
  // One leader term; two stores that both believe they hold it (a leader
  // and a stale copy of itself): the epoch key's mod revision decides.
  absl::StatusOr<int64_t> term = etcd_->Put(EtcdLeaderKey(prefix), "a:1");
  ASSERT_TRUE(term.ok()) << term.status();
  EtcdStateStore first(etcd_.get(), prefix, *term);
  EtcdStateStore second(etcd_.get(), prefix, *term);
  ASSERT_EQ(first.Load().value_or(99), 0u);
  ASSERT_EQ(second.Load().value_or(99), 0u);

  ASSERT_TRUE(first.Save(1).ok());
  absl::Status lost = second.Save(1);
  EXPECT_TRUE(absl::IsUnavailable(lost)) << lost;
  EXPECT_NE(lost.message().find("changed under this leader"), std::string::npos) << lost;
  ASSERT_TRUE(first.Save(2).ok());
  ASSERT_TRUE(first.Save(3).ok());

  EtcdStateStore reader(etcd_.get(), prefix, *term);
  EXPECT_EQ(reader.Load().value_or(0), 3u);

  // A corrupt epoch is DATA_LOSS, not a silent restart at 1.
  ASSERT_TRUE(etcd_->Put(EtcdEpochKey(prefix), "seven").ok());
  EXPECT_TRUE(absl::IsDataLoss(reader.Load().status()));
}

TEST_F(EtcdTest, StaleLeadersWritesAreFenced) {
  const std::string prefix = "/test/fence";
  absl::StatusOr<int64_t> lease = etcd_->GrantLease(absl::Seconds(2));
  ASSERT_TRUE(lease.ok()) << lease.status();
  absl::StatusOr<int64_t> term_a = etcd_->Put(EtcdLeaderKey(prefix), "a:1", *lease);
  ASSERT_TRUE(term_a.ok());
  int fenced = 0;
  EtcdStateStore a(etcd_.get(), prefix, *term_a, [&](const absl::Status&) { ++fenced; });
  ASSERT_TRUE(a.Load().ok());
  ASSERT_TRUE(a.Save(1).ok());
  ASSERT_TRUE(a.SaveRoster("roster-of-a").ok());

  // A's lease ends (revoked here: what expiry does, without the wait), B is
  // elected. A does not know yet and writes on.
  ASSERT_TRUE(etcd_->RevokeLease(*lease).ok());
  absl::StatusOr<int64_t> term_b = etcd_->Put(EtcdLeaderKey(prefix), "b:2");
  ASSERT_TRUE(term_b.ok());
  absl::Status s = a.Save(2);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_NE(s.message().find("not the leader any more"), std::string::npos) << s;
  EXPECT_NE(s.message().find("b:2"), std::string::npos) << s;
  EXPECT_TRUE(absl::IsUnavailable(a.SaveRoster("stale")));
  EXPECT_EQ(fenced, 1);  // once, however many writes fail

  EtcdStateStore b(etcd_.get(), prefix, *term_b);
  EXPECT_EQ(b.Load().value_or(0), 1u);  // A's refused epoch 2 never landed
  auto roster = b.LoadRoster();
  ASSERT_TRUE(roster.ok() && roster->has_value());
  EXPECT_EQ(**roster, "roster-of-a");
  EXPECT_TRUE(b.Save(2).ok());
}

TEST_F(EtcdTest, ElectionHandsOverWithinTheBound) {
  const std::string key = "/test/election/leader";
  std::vector<std::unique_ptr<LeaderElection>> candidates;
  std::atomic<int> elected{0}, lost{0};
  for (int i = 0; i < 3; ++i) {
    ElectionOptions o;
    o.key = key;
    o.candidate = absl::StrCat("c", i, ":1");
    o.ttl = absl::Seconds(2);
    o.on_elected = [&](int64_t) { ++elected; };
    o.on_lost = [&] { ++lost; };
    candidates.push_back(std::make_unique<LeaderElection>(etcd_.get(), o));
    candidates.back()->Start();
  }
  auto leaders = [&] {
    int n = 0;
    for (auto& c : candidates) n += c->is_leader();
    return n;
  };
  auto leader_index = [&] {
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (candidates[i]->is_leader()) return static_cast<int>(i);
    }
    return -1;
  };
  ASSERT_TRUE(WaitFor([&] { return leaders() == 1; }, absl::Seconds(5)));
  const int first = leader_index();
  const int64_t first_term = candidates[first]->term();
  // The others learn who leads from their watch, a moment after the winner
  // knows: wait for it rather than assume it (a loaded machine showed "").
  const std::string first_name = absl::StrCat("c", first, ":1");
  EXPECT_TRUE(WaitFor(
      [&] {
        for (auto& c : candidates) {
          if (c->leader() != first_name) return false;
        }
        return true;
      },
      absl::Seconds(5)));
  for (auto& c : candidates) EXPECT_EQ(c->leader(), first_name);

  // A crash: no resignation, the key lives until the lease runs out.
  const absl::Time crash = absl::Now();
  candidates[first]->Stop(/*resign=*/false);
  ASSERT_TRUE(WaitFor([&] { return leader_index() >= 0; }, absl::Seconds(8)));
  const absl::Duration crash_handover = absl::Now() - crash;
  const int second = leader_index();
  EXPECT_NE(second, first);
  EXPECT_GT(candidates[second]->term(), first_term);  // terms only grow
  EXPECT_EQ(leaders(), 1);
  // TTL 2 s, etcd's expiry check every 0.5 s, one 0.1 s retry: about 2.6 s
  // (printed below; kvf_failover_test measures it end to end). Not asserted:
  // a loaded machine stretches it, and the hand-over itself is the point.

  // A clean stop resigns: the next leader follows at once.
  const absl::Time stop = absl::Now();
  candidates[second]->Stop(/*resign=*/true);
  ASSERT_TRUE(WaitFor([&] { return leader_index() >= 0; }, absl::Seconds(5)));
  const absl::Duration resign_handover = absl::Now() - stop;
  // Sooner than the lease could expire: the resignation handed over, not
  // the TTL.
  EXPECT_LT(resign_handover, absl::Seconds(2));
  std::printf("election hand-over: crash %.0f ms (TTL 2 s), resignation %.0f ms\n",
              absl::ToDoubleMilliseconds(crash_handover),
              absl::ToDoubleMilliseconds(resign_handover));
  EXPECT_EQ(elected.load(), 3);
  EXPECT_EQ(lost.load(), 2);
}

proto::JoinRequest JoinOf(int i) {
  proto::JoinRequest j;
  j.set_address(absl::StrCat("10.0.", i / 250, ".", i % 250 + 1, ":7000"));
  j.set_failure_domain(absl::StrCat("d", i));
  j.set_capacity_bytes(uint64_t{1} << 30);
  return j;
}

// What one map publication costs through etcd: the epoch's compare-and-swap
// transaction, the fenced roster write, and a follower's watch delivering it.
TEST_F(EtcdTest, MapPublicationLatency) {
  const std::string prefix = "/test/publish";
  absl::StatusOr<int64_t> term = etcd_->Put(EtcdLeaderKey(prefix), "a:1");
  ASSERT_TRUE(term.ok());
  EtcdStateStore store(etcd_.get(), prefix, *term);
  ASSERT_TRUE(store.Load().ok());
  MapFeed feed;
  // The watch starts at the store's current revision, so it sees every write
  // below however long its stream takes to open (no waiting for it).
  int64_t revision = 0;
  ASSERT_TRUE(etcd_->Get(EtcdStateKey(prefix), &revision).ok());
  std::unique_ptr<EtcdWatch> watch =
      etcd_->Watch(EtcdStateKey(prefix), revision + 1, [&](const mvccpb::Event& e) {
        proto::CoordinatorState st;
        if (st.ParseFromString(e.kv().value())) {
          feed.Install(std::make_shared<proto::ClusterMap>(st.map()));
        }
      });
  proto::CoordinatorState state;
  for (int n = 1; n <= 16; ++n) {  // a 16-node map, ~1.5 KB
    proto::Node* node = state.mutable_map()->add_nodes();
    node->set_id(n);
    node->set_address(absl::StrCat("10.0.0.", n, ":7000"));
    node->set_data_address(std::string(64, 'u'));
    node->set_failure_domain(absl::StrCat("rack", n));
    node->set_capacity_bytes(uint64_t{64} << 30);
  }
  constexpr int kMaps = 300;
  std::vector<absl::Duration> written, seen;
  for (int epoch = 1; epoch <= kMaps; ++epoch) {
    const absl::Time start = absl::Now();
    ASSERT_TRUE(store.Save(epoch).ok());
    state.mutable_map()->set_epoch(epoch);
    ASSERT_TRUE(store.SaveRoster(state.SerializeAsString()).ok());
    written.push_back(absl::Now() - start);
    ASSERT_FALSE(feed.WaitForMaps(epoch - 1, absl::Now() + absl::Seconds(5)).empty());
    seen.push_back(absl::Now() - start);
  }
  std::printf(
      "map publication through etcd (%d maps of 16 nodes): written (epoch CAS + fenced roster) "
      "p50 %.2f ms p99 %.2f ms; seen by a follower's watch p50 %.2f ms p99 %.2f ms\n",
      kMaps, absl::ToDoubleMilliseconds(Percentile(written, 0.5)),
      absl::ToDoubleMilliseconds(Percentile(written, 0.99)),
      absl::ToDoubleMilliseconds(Percentile(seen, 0.5)),
      absl::ToDoubleMilliseconds(Percentile(seen, 0.99)));
  EXPECT_EQ(feed.epoch(), static_cast<uint64_t>(kMaps));
}

TEST_F(EtcdTest, GroupFollowersServeTheLeadersMapsAndTheNextLeaderKeepsThem) {
  CoordinatorGroupOptions o;
  o.prefix = "/test/group";
  o.core.lease = absl::Seconds(30);
  std::vector<std::unique_ptr<CoordinatorGroup>> group;
  for (int i = 0; i < 2; ++i) {
    auto g = CoordinatorGroup::Create(etcd_.get(), o);
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_TRUE((*g)->Start(absl::StrCat("127.0.0.1:", 7700 + i)).ok());
    group.push_back(*std::move(g));
  }
  auto leader_index = [&] {
    for (size_t i = 0; i < group.size(); ++i) {
      if (group[i] && group[i]->is_leader()) return static_cast<int>(i);
    }
    return -1;
  };
  ASSERT_TRUE(WaitFor([&] { return leader_index() >= 0; }, absl::Seconds(5)));
  const int l = leader_index();
  CoordinatorGroup& leader = *group[l];
  CoordinatorGroup& follower = *group[1 - l];

  // A follower refuses writes and names the leader.
  std::string named;
  EXPECT_EQ(follower.Leader(&named), nullptr);
  EXPECT_EQ(named, leader.self());

  // Map publication through etcd: each join is one epoch (two transactions);
  // the follower serves it once its watch of the state key delivers it.
  constexpr int kJoins = 40;
  std::vector<absl::Duration> rpc, seen;
  for (int i = 0; i < kJoins; ++i) {
    const absl::Time start = absl::Now();
    auto r = leader.Leader()->Join(JoinOf(i));
    ASSERT_TRUE(r.ok()) << r.status();
    rpc.push_back(absl::Now() - start);
    const uint64_t epoch = r->map().epoch();
    auto maps = follower.feed().WaitForMaps(epoch - 1, absl::Now() + absl::Seconds(5));
    ASSERT_FALSE(maps.empty());
    ASSERT_EQ(maps.back()->epoch(), epoch);
    seen.push_back(absl::Now() - start);
  }
  std::printf(
      "Join through the leader (%d joins, planning included): RPC p50 %.2f ms p99 %.2f ms; "
      "map seen by the follower p50 %.2f ms p99 %.2f ms\n",
      kJoins, absl::ToDoubleMilliseconds(Percentile(rpc, 0.5)),
      absl::ToDoubleMilliseconds(Percentile(rpc, 0.99)),
      absl::ToDoubleMilliseconds(Percentile(seen, 0.5)),
      absl::ToDoubleMilliseconds(Percentile(seen, 0.99)));
  const uint64_t last = leader.feed().epoch();
  ASSERT_EQ(follower.feed().epoch(), last);

  // The leader dies (no resignation): the follower takes over after the
  // lease, at a newer epoch, with every node.
  const absl::Time crash = absl::Now();
  group[l]->Shutdown(/*resign=*/false);
  ASSERT_TRUE(WaitFor([&] { return follower.is_leader(); }, absl::Seconds(8)));
  std::printf("group fail-over after a crash: %.0f ms\n",
              absl::ToDoubleMilliseconds(absl::Now() - crash));
  std::shared_ptr<CoordinatorService> core = follower.Leader();
  ASSERT_NE(core, nullptr);
  EXPECT_GT(core->epoch(), last);
  EXPECT_EQ(core->CurrentMap().nodes.size(), static_cast<size_t>(kJoins));
  EXPECT_GT(follower.feed().epoch(), last);
  proto::CoordinatorStatusResponse st = follower.Status();
  EXPECT_EQ(st.role(), proto::CoordinatorStatusResponse::ROLE_LEADER);
  EXPECT_TRUE(st.etcd_healthy()) << st.etcd_error();
  // And it takes writes.
  EXPECT_TRUE(core->Join(JoinOf(kJoins)).ok());
}

}  // namespace
}  // namespace kvf::testing
