// CoordinatorService with an injected clock and fake agents: the membership
// state machine, epochs, migration completion, hostile requests.
#include "coordinator/coordinator_service.h"

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/cluster_map_convert.h"
#include "tests/coordinator/coordinator_test_util.h"

namespace kvf {
namespace {

using ::testing::HasSubstr;

class CoordinatorServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Restart(); }

  void Restart() {
    svc_.reset();
    CoordinatorOptions o;
    o.ring.replication = 2;
    o.lease = absl::Seconds(1);
    o.clock = &clock_;
    o.agents = &agents_;
    o.state_dir = state_dir_;
    auto s = CoordinatorService::Create(o);
    ASSERT_TRUE(s.ok()) << s.status();
    svc_ = std::move(*s);
  }

  static std::string Addr(int i) { return absl::StrCat("127.0.0.1:", 20000 + i); }

  proto::JoinRequest JoinReq(int i, uint64_t capacity = 1 << 30) {
    proto::JoinRequest r;
    r.set_address(Addr(i));
    r.set_failure_domain(absl::StrCat("rack", i));
    r.set_capacity_bytes(capacity);
    r.add_tiers("host");
    return r;
  }

  NodeId MustJoin(int i) {
    auto r = svc_->Join(JoinReq(i));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->node_id() : kNoNode;
  }

  NodeState StateOf(NodeId id) {
    ClusterMap m = svc_->CurrentMap();
    for (const NodeInfo& n : m.nodes) {
      if (n.id == id) return n.state;
    }
    ADD_FAILURE() << "node " << id << " not in the map";
    return NodeState::kLeft;
  }

  // Reports every task the agent at `addr` received as done.
  void CompleteTasksOf(NodeId id, int i) {
    proto::ReportMigrationRequest r;
    r.set_node_id(id);
    for (const auto& t : agents_.Take(Addr(i))) {
      EXPECT_EQ(t.from_node(), id);
      auto* p = r.add_tasks();
      p->set_task_id(t.task_id());
      p->set_done(true);
    }
    auto s = svc_->ReportMigration(r);
    ASSERT_TRUE(s.ok()) << s.status();
  }

  // A heartbeat that keeps node `id` alive.
  absl::Status Beat(NodeId id) {
    proto::HeartbeatRequest r;
    r.set_node_id(id);
    return svc_->Heartbeat(r).status();
  }

  std::string MapBytes() { return svc_->GetClusterMap()->SerializeAsString(); }

  // Three active nodes with R=2.
  void ThreeActive(NodeId ids[3]) {
    ids[0] = MustJoin(1);
    ASSERT_EQ(StateOf(ids[0]), NodeState::kActive);  // nothing to copy to the first node
    for (int i = 1; i < 3; ++i) {
      ids[i] = MustJoin(i + 1);
      for (int j = 0; j < i; ++j) CompleteTasksOf(ids[j], j + 1);
      ASSERT_EQ(StateOf(ids[i]), NodeState::kActive);
    }
  }

  FakeClock clock_;
  FakeAgents agents_;
  std::string state_dir_;
  std::unique_ptr<CoordinatorService> svc_;
};

TEST_F(CoordinatorServiceTest, FirstNodeIsActiveAtOnceSecondWaitsForItsTasks) {
  const uint64_t e0 = svc_->epoch();
  NodeId a = MustJoin(1);
  EXPECT_EQ(StateOf(a), NodeState::kActive);
  EXPECT_EQ(svc_->epoch(), e0 + 2);  // joined, then flipped

  NodeId b = MustJoin(2);
  EXPECT_EQ(StateOf(b), NodeState::kJoining);
  auto tasks = svc_->OutstandingTasks();
  ASSERT_FALSE(tasks.empty());
  for (const TaskStatus& t : tasks) {
    EXPECT_EQ(t.task.from, a);
    EXPECT_EQ(t.task.to, b);
    EXPECT_TRUE(t.delivered);
  }
  auto sent = agents_.Take(Addr(1));
  ASSERT_EQ(sent.size(), tasks.size());
  EXPECT_EQ(sent[0].to_address(), Addr(2));

  // Half done: still joining.
  proto::HeartbeatRequest hb;
  hb.set_node_id(a);
  auto* p = hb.add_tasks();
  p->set_task_id(sent[0].task_id());
  p->set_done(true);
  ASSERT_TRUE(svc_->Heartbeat(hb).ok());
  if (sent.size() > 1) {
    EXPECT_EQ(StateOf(b), NodeState::kJoining);
  }
  hb.clear_tasks();
  for (const auto& t : sent) {
    auto* q = hb.add_tasks();
    q->set_task_id(t.task_id());
    q->set_done(true);
  }
  auto r = svc_->Heartbeat(hb);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(StateOf(b), NodeState::kActive);
  EXPECT_TRUE(svc_->OutstandingTasks().empty());
}

TEST_F(CoordinatorServiceTest, DrainLeavesOnlyWhenTasksAreDone) {
  NodeId ids[3];
  ThreeActive(ids);
  auto d = svc_->Drain(ids[2]);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->node().state(), proto::NODE_STATE_DRAINING);
  ASSERT_FALSE(svc_->OutstandingTasks().empty());
  EXPECT_EQ(StateOf(ids[2]), NodeState::kDraining);
  // Sources may be any old owner; complete them source by source.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(StateOf(ids[2]), NodeState::kDraining);
    CompleteTasksOf(ids[i], i + 1);
  }
  EXPECT_EQ(StateOf(ids[2]), NodeState::kLeft);
  EXPECT_TRUE(svc_->OutstandingTasks().empty());
}

TEST_F(CoordinatorServiceTest, UndrainCancelsTheDrainsTasks) {
  NodeId ids[3];
  ThreeActive(ids);
  ASSERT_TRUE(svc_->Drain(ids[0]).ok());
  ASSERT_FALSE(svc_->OutstandingTasks().empty());
  auto u = svc_->Undrain(ids[0]);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(StateOf(ids[0]), NodeState::kActive);
  EXPECT_TRUE(svc_->OutstandingTasks().empty());
}

TEST_F(CoordinatorServiceTest, MissedLeaseMarksDownAndReReplicatesFromSurvivors) {
  NodeId ids[3];
  ThreeActive(ids);
  clock_.Advance(absl::Milliseconds(600));
  ASSERT_TRUE(Beat(ids[0]).ok());
  ASSERT_TRUE(Beat(ids[1]).ok());
  clock_.Advance(absl::Milliseconds(600));  // node 3's lease (1 s) has passed
  svc_->Tick();
  EXPECT_EQ(StateOf(ids[0]), NodeState::kActive);
  EXPECT_EQ(StateOf(ids[2]), NodeState::kDown);
  for (const TaskStatus& t : svc_->OutstandingTasks()) {
    EXPECT_NE(t.task.from, ids[2]);
    EXPECT_NE(t.task.to, ids[2]);
  }
  absl::Status hb = Beat(ids[2]);
  EXPECT_EQ(hb.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(hb.message()), HasSubstr("down"));

  // It comes back with its id.
  proto::JoinRequest rejoin = JoinReq(3);
  rejoin.set_node_id(ids[2]);
  auto r = svc_->Join(rejoin);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->node_id(), ids[2]);
  EXPECT_EQ(StateOf(ids[2]), NodeState::kActive);
}

TEST_F(CoordinatorServiceTest, EveryIllegalTransitionIsRefusedWithoutChange) {
  NodeId ids[3];
  ThreeActive(ids);
  NodeId joining = MustJoin(4);
  ASSERT_EQ(StateOf(joining), NodeState::kJoining);
  ASSERT_TRUE(svc_->Drain(ids[1]).ok());  // draining (tasks outstanding)
  ASSERT_EQ(StateOf(ids[1]), NodeState::kDraining);
  NodeId left = ids[2];
  ASSERT_TRUE(svc_->Leave(left).ok());
  ASSERT_EQ(StateOf(left), NodeState::kLeft);
  NodeId down = MustJoin(5);
  // Let only `down` miss its lease.
  clock_.Advance(absl::Milliseconds(1500));
  for (NodeId id : {ids[0], ids[1], joining}) ASSERT_TRUE(Beat(id).ok());
  svc_->Tick();
  ASSERT_EQ(StateOf(down), NodeState::kDown);
  const NodeId active = ids[0];
  const NodeId draining = ids[1];

  struct Case {
    const char* what;
    std::function<absl::Status()> call;
    absl::StatusCode code;
  };
  auto rejoin = [&](NodeId id, int i) {
    proto::JoinRequest r = JoinReq(i);
    r.set_node_id(id);
    return svc_->Join(r).status();
  };
  const std::vector<Case> cases = {
      {"drain joining", [&] { return svc_->Drain(joining).status(); },
       absl::StatusCode::kFailedPrecondition},
      {"undrain joining", [&] { return svc_->Undrain(joining).status(); },
       absl::StatusCode::kFailedPrecondition},
      {"undrain active", [&] { return svc_->Undrain(active).status(); },
       absl::StatusCode::kFailedPrecondition},
      {"drain draining", [&] { return svc_->Drain(draining).status(); },
       absl::StatusCode::kFailedPrecondition},
      {"drain down", [&] { return svc_->Drain(down).status(); },
       absl::StatusCode::kFailedPrecondition},
      {"undrain down", [&] { return svc_->Undrain(down).status(); },
       absl::StatusCode::kFailedPrecondition},
      {"drain left", [&] { return svc_->Drain(left).status(); },
       absl::StatusCode::kFailedPrecondition},
      {"undrain left", [&] { return svc_->Undrain(left).status(); },
       absl::StatusCode::kFailedPrecondition},
      {"leave left", [&] { return svc_->Leave(left).status(); },
       absl::StatusCode::kFailedPrecondition},
      {"rejoin left", [&] { return rejoin(left, 3); }, absl::StatusCode::kFailedPrecondition},
      {"rejoin active", [&] { return rejoin(active, 1); }, absl::StatusCode::kAlreadyExists},
      {"rejoin joining", [&] { return rejoin(joining, 4); }, absl::StatusCode::kAlreadyExists},
      {"rejoin draining", [&] { return rejoin(draining, 2); }, absl::StatusCode::kAlreadyExists},
      {"heartbeat down", [&] { return Beat(down); }, absl::StatusCode::kFailedPrecondition},
      {"heartbeat left", [&] { return Beat(left); }, absl::StatusCode::kFailedPrecondition},
  };
  for (const Case& c : cases) {
    const uint64_t epoch = svc_->epoch();
    const std::string map = MapBytes();
    const size_t tasks = svc_->OutstandingTasks().size();
    absl::Status s = c.call();
    EXPECT_EQ(s.code(), c.code) << c.what << ": " << s;
    EXPECT_FALSE(s.message().empty()) << c.what;
    EXPECT_EQ(svc_->epoch(), epoch) << c.what;
    EXPECT_EQ(MapBytes(), map) << c.what;
    EXPECT_EQ(svc_->OutstandingTasks().size(), tasks) << c.what;
  }
  // The legal ones from the same states still work.
  EXPECT_TRUE(svc_->Leave(down).ok());
  EXPECT_TRUE(svc_->Undrain(draining).ok());
  EXPECT_TRUE(svc_->Leave(joining).ok());
}

TEST_F(CoordinatorServiceTest, HostileRequestsChangeNothing) {
  NodeId ids[3];
  ThreeActive(ids);
  proto::JoinRequest empty_addr = JoinReq(9);
  empty_addr.set_address("");
  proto::JoinRequest no_port = JoinReq(9);
  no_port.set_address("host-without-port");
  proto::JoinRequest bad_port = JoinReq(9);
  bad_port.set_address("127.0.0.1:99999");
  proto::JoinRequest spaces = JoinReq(9);
  spaces.set_address("evil host:1");
  proto::JoinRequest huge = JoinReq(9, ~uint64_t{0});
  proto::JoinRequest zero = JoinReq(9, 0);
  proto::JoinRequest negative = JoinReq(9, static_cast<uint64_t>(int64_t{-1}));
  proto::JoinRequest dup = JoinReq(1);  // same address as a live node
  proto::JoinRequest unknown_id = JoinReq(9);
  unknown_id.set_node_id(777);
  proto::JoinRequest long_domain = JoinReq(9);
  long_domain.set_failure_domain(std::string(1000, 'x'));
  proto::JoinRequest many_tiers = JoinReq(9);
  for (int i = 0; i < 20; ++i) many_tiers.add_tiers("t");

  proto::HeartbeatRequest hb_unknown;
  hb_unknown.set_node_id(999);
  proto::HeartbeatRequest hb_zero;
  proto::HeartbeatRequest hb_histogram;
  hb_histogram.set_node_id(ids[0]);
  hb_histogram.mutable_ages()->add_bytes(1);
  proto::HeartbeatRequest hb_used;
  hb_used.set_node_id(ids[0]);
  hb_used.set_used_bytes(static_cast<uint64_t>(int64_t{-5}));
  proto::HeartbeatRequest hb_task;
  hb_task.set_node_id(ids[0]);
  hb_task.add_tasks()->set_task_id(123456789);
  proto::ReportMigrationRequest rep_unknown;
  rep_unknown.set_node_id(4242);

  struct Case {
    const char* what;
    std::function<absl::Status()> call;
    absl::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"empty address", [&] { return svc_->Join(empty_addr).status(); },
       absl::StatusCode::kInvalidArgument},
      {"no port", [&] { return svc_->Join(no_port).status(); }, absl::StatusCode::kInvalidArgument},
      {"bad port", [&] { return svc_->Join(bad_port).status(); },
       absl::StatusCode::kInvalidArgument},
      {"spaces", [&] { return svc_->Join(spaces).status(); }, absl::StatusCode::kInvalidArgument},
      {"huge capacity", [&] { return svc_->Join(huge).status(); },
       absl::StatusCode::kInvalidArgument},
      {"zero capacity", [&] { return svc_->Join(zero).status(); },
       absl::StatusCode::kInvalidArgument},
      {"negative capacity", [&] { return svc_->Join(negative).status(); },
       absl::StatusCode::kInvalidArgument},
      {"duplicate join", [&] { return svc_->Join(dup).status(); },
       absl::StatusCode::kAlreadyExists},
      {"unknown id join", [&] { return svc_->Join(unknown_id).status(); },
       absl::StatusCode::kNotFound},
      {"long domain", [&] { return svc_->Join(long_domain).status(); },
       absl::StatusCode::kInvalidArgument},
      {"many tiers", [&] { return svc_->Join(many_tiers).status(); },
       absl::StatusCode::kInvalidArgument},
      {"heartbeat unknown", [&] { return svc_->Heartbeat(hb_unknown).status(); },
       absl::StatusCode::kNotFound},
      {"heartbeat id 0", [&] { return svc_->Heartbeat(hb_zero).status(); },
       absl::StatusCode::kInvalidArgument},
      {"histogram size", [&] { return svc_->Heartbeat(hb_histogram).status(); },
       absl::StatusCode::kInvalidArgument},
      {"negative usage", [&] { return svc_->Heartbeat(hb_used).status(); },
       absl::StatusCode::kInvalidArgument},
      {"unknown task", [&] { return svc_->Heartbeat(hb_task).status(); },
       absl::StatusCode::kNotFound},
      {"report unknown node", [&] { return svc_->ReportMigration(rep_unknown).status(); },
       absl::StatusCode::kNotFound},
      {"drain unknown", [&] { return svc_->Drain(31337).status(); }, absl::StatusCode::kNotFound},
      {"undrain unknown", [&] { return svc_->Undrain(31337).status(); },
       absl::StatusCode::kNotFound},
      {"leave unknown", [&] { return svc_->Leave(31337).status(); }, absl::StatusCode::kNotFound},
      {"leave id 0", [&] { return svc_->Leave(0).status(); }, absl::StatusCode::kInvalidArgument},
  };
  for (const Case& c : cases) {
    const uint64_t epoch = svc_->epoch();
    const std::string map = MapBytes();
    absl::Status s = c.call();
    EXPECT_EQ(s.code(), c.code) << c.what << ": " << s;
    EXPECT_FALSE(s.message().empty()) << c.what;
    EXPECT_EQ(svc_->epoch(), epoch) << c.what;
    EXPECT_EQ(MapBytes(), map) << c.what;
  }
}

TEST_F(CoordinatorServiceTest, TaskReportsOnlyFromTheirSource) {
  NodeId a = MustJoin(1);
  NodeId b = MustJoin(2);
  auto tasks = svc_->OutstandingTasks();
  ASSERT_FALSE(tasks.empty());
  proto::ReportMigrationRequest r;
  r.set_node_id(b);  // b is the destination, not the source
  auto* p = r.add_tasks();
  p->set_task_id(tasks[0].id);
  p->set_done(true);
  EXPECT_EQ(svc_->ReportMigration(r).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(svc_->OutstandingTasks().size(), tasks.size());
  r.set_node_id(a);
  EXPECT_TRUE(svc_->ReportMigration(r).ok());
  EXPECT_TRUE(svc_->ReportMigration(r).ok());  // idempotent
}

TEST_F(CoordinatorServiceTest, FailedDeliveryIsRetriedOnTheNextHeartbeat) {
  NodeId a = MustJoin(1);
  agents_.SetUnreachable(Addr(1), true);
  NodeId b = MustJoin(2);
  ASSERT_FALSE(svc_->OutstandingTasks().empty());
  for (const TaskStatus& t : svc_->OutstandingTasks()) {
    EXPECT_FALSE(t.delivered);
    EXPECT_THAT(t.last_error, HasSubstr("refused"));
  }
  EXPECT_TRUE(agents_.Take(Addr(1)).empty());
  agents_.SetUnreachable(Addr(1), false);
  ASSERT_TRUE(Beat(a).ok());
  EXPECT_EQ(agents_.Take(Addr(1)).size(), svc_->OutstandingTasks().size());
  for (const TaskStatus& t : svc_->OutstandingTasks()) EXPECT_TRUE(t.delivered);
  EXPECT_EQ(StateOf(b), NodeState::kJoining);
}

// An agent runs a task as it arrives, and may report it failed before its
// AssignMigration call has returned: the call's success must not mark the
// task delivered, or it is never sent again and its destination stays
// joining for good.
TEST_F(CoordinatorServiceTest, AFailureReportedWhileTheAssignIsInFlightIsSentAgain) {
  NodeId a = MustJoin(1);
  agents_.OnAssign([&](const proto::AssignMigrationRequest& req) {
    proto::ReportMigrationRequest r;
    r.set_node_id(a);
    for (const auto& t : req.tasks()) {
      auto* p = r.add_tasks();
      p->set_task_id(t.task_id());
      p->set_error("destination not ready");
    }
    EXPECT_TRUE(svc_->ReportMigration(r).ok());
  });
  NodeId b = MustJoin(2);  // delivers; the agent reports failure in flight
  agents_.OnAssign(nullptr);
  ASSERT_FALSE(svc_->OutstandingTasks().empty());
  for (const TaskStatus& t : svc_->OutstandingTasks()) {
    EXPECT_FALSE(t.delivered) << "task " << t.id;
    EXPECT_THAT(t.last_error, HasSubstr("not ready"));
  }
  const size_t sent = agents_.Take(Addr(1)).size();
  ASSERT_TRUE(Beat(a).ok());  // sends them again
  EXPECT_EQ(agents_.Take(Addr(1)).size(), sent);
  for (const TaskStatus& t : svc_->OutstandingTasks()) EXPECT_TRUE(t.delivered);
  ASSERT_TRUE(Beat(a).ok());
  EXPECT_TRUE(agents_.Take(Addr(1)).empty()) << "a delivered task was sent twice";
  EXPECT_EQ(StateOf(b), NodeState::kJoining);
}

TEST_F(CoordinatorServiceTest, TasksGoToEverySourceAtOnce) {
  NodeId ids[3];
  ThreeActive(ids);
  // Two sources must be inside AssignMigration together: sent one after the
  // other, the first call would wait for the second and fail.
  agents_.RequireTogether(2);
  NodeId d = MustJoin(4);
  std::set<NodeId> sources;
  for (const TaskStatus& t : svc_->OutstandingTasks()) {
    EXPECT_TRUE(t.delivered) << t.last_error;
    sources.insert(t.task.from);
  }
  EXPECT_GE(sources.size(), 2u);
  EXPECT_EQ(StateOf(d), NodeState::kJoining);
}

TEST_F(CoordinatorServiceTest, WatchersSeeEveryEpochInOrder) {
  const uint64_t start = svc_->epoch();
  NodeId ids[3];
  ThreeActive(ids);
  ASSERT_TRUE(svc_->Drain(ids[2]).ok());
  auto maps = svc_->WaitForMaps(start, absl::Now());
  ASSERT_EQ(maps.size(), svc_->epoch() - start);
  for (size_t i = 0; i < maps.size(); ++i) EXPECT_EQ(maps[i]->epoch(), start + 1 + i);
  // A late watcher gets the current map first.
  auto late = svc_->WaitForMaps(0, absl::Now());
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0]->epoch(), svc_->epoch());
  // Nothing newer: times out empty.
  EXPECT_TRUE(svc_->WaitForMaps(svc_->epoch(), absl::Now() + absl::Milliseconds(10)).empty());
}

TEST_F(CoordinatorServiceTest, EvictionCutoffWhenTheClusterIsFull) {
  NodeId a = MustJoin(1);
  proto::HeartbeatRequest hb;
  hb.set_node_id(a);
  hb.set_used_bytes(100);
  hb.set_capacity_bytes(1000);
  for (int b = 0; b < AgeHistogram::kBuckets; ++b) hb.mutable_ages()->add_bytes(b == 0 ? 100 : 0);
  auto r = svc_->Heartbeat(hb);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_eviction_cutoff_ms());

  hb.set_used_bytes(950);
  hb.mutable_ages()->set_bytes(0, 450);
  hb.mutable_ages()->set_bytes(30, 500);  // old bytes
  r = svc_->Heartbeat(hb);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_eviction_cutoff_ms());
  EXPECT_GT(r->eviction_cutoff_ms(), 1000u);  // spares the young bucket
  EXPECT_TRUE(svc_->Stats().eviction_cutoff.has_value());
  // The node evicts down to the low watermark (80%) of its capacity, no further.
  ASSERT_TRUE(r->has_eviction_keep_bytes());
  EXPECT_EQ(r->eviction_keep_bytes(), 800u);
}

class CoordinatorRestartTest : public CoordinatorServiceTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kvf_coord_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    state_dir_ = tmpl;
    Restart();
  }
  void TearDown() override {
    svc_.reset();
    std::filesystem::remove_all(state_dir_);
  }
  // Stops the coordinator, writes `text` into `<state_dir>/<file>`, and
  // tries to start one on that state dir.
  absl::Status StartOn(const std::string& file, const char* text) {
    svc_.reset();
    FILE* f = fopen((state_dir_ + "/" + file).c_str(), "w");
    if (f == nullptr) return absl::InternalError("cannot write " + file);
    fputs(text, f);
    fclose(f);
    CoordinatorOptions o;
    o.state_dir = state_dir_;
    o.clock = &clock_;
    return CoordinatorService::Create(o).status();
  }
};

TEST_F(CoordinatorRestartTest, AnOutageOfAnyLengthKeepsEveryNodeAndItsId) {
  NodeId ids[3];
  ThreeActive(ids);
  const uint64_t before = svc_->epoch();
  // Down for ten leases: longer than any node's lease.
  svc_.reset();
  clock_.Advance(absl::Seconds(10));
  Restart();
  EXPECT_GT(svc_->epoch(), before);
  // The first map after the restart is whole: every node, still active.
  const ClusterMap map = svc_->CurrentMap();
  ASSERT_EQ(map.nodes.size(), 3u);
  for (NodeId id : ids) EXPECT_EQ(StateOf(id), NodeState::kActive);
  EXPECT_TRUE(svc_->OutstandingTasks().empty());
  // The agents' heartbeats are accepted as they were: nobody re-joins.
  for (NodeId id : ids) ASSERT_TRUE(Beat(id).ok());
  // A new node can join at once and never takes a known node's id.
  auto fresh = svc_->Join(JoinReq(7));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_GT(fresh->node_id(), ids[2]);

  const uint64_t e2 = svc_->epoch();
  Restart();
  EXPECT_GT(svc_->epoch(), e2);
  EXPECT_EQ(svc_->CurrentMap().nodes.size(), 4u);
}

TEST_F(CoordinatorRestartTest, ANodesGpuTierBytesAreInTheMapAndSurviveARestart) {
  proto::JoinRequest r = JoinReq(1, uint64_t{3} << 30);
  r.clear_tiers();
  r.add_tiers("device");
  r.add_tiers("host");
  r.set_device_bytes(uint64_t{2} << 30);
  auto joined = svc_->Join(r);
  ASSERT_TRUE(joined.ok()) << joined.status();
  auto device_bytes = [&] {
    for (const proto::Node& n : svc_->GetClusterMap()->nodes()) {
      if (n.id() == joined->node_id()) return n.device_bytes();
    }
    ADD_FAILURE() << "node not in the map";
    return uint64_t{0};
  };
  EXPECT_EQ(device_bytes(), uint64_t{2} << 30);
  Restart();
  EXPECT_EQ(device_bytes(), uint64_t{2} << 30);
  // An agent that does not send it (older, or no GPU tier) has none.
  auto plain = svc_->Join(JoinReq(2));
  ASSERT_TRUE(plain.ok());
  for (const proto::Node& n : svc_->GetClusterMap()->nodes()) {
    if (n.id() == plain->node_id()) EXPECT_EQ(n.device_bytes(), 0u);
  }
}

TEST_F(CoordinatorRestartTest, ANodeThatDoesNotComeBackWithinALeaseGoesDown) {
  NodeId ids[3];
  ThreeActive(ids);
  Restart();
  clock_.Advance(absl::Milliseconds(600));
  ASSERT_TRUE(Beat(ids[0]).ok());
  ASSERT_TRUE(Beat(ids[1]).ok());
  clock_.Advance(absl::Milliseconds(600));  // past the restored lease of ids[2]
  svc_->Tick();
  EXPECT_EQ(StateOf(ids[0]), NodeState::kActive);
  EXPECT_EQ(StateOf(ids[1]), NodeState::kActive);
  EXPECT_EQ(StateOf(ids[2]), NodeState::kDown);
  // Its ranges are re-replicated from the survivors.
  EXPECT_FALSE(svc_->OutstandingTasks().empty());
  // Coming back later, it re-joins with its id.
  proto::JoinRequest r = JoinReq(3);
  r.set_node_id(ids[2]);
  auto j = svc_->Join(r);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(StateOf(ids[2]), NodeState::kActive);
}

TEST_F(CoordinatorRestartTest, AJoinInProgressIsPlannedAgain) {
  const NodeId a = MustJoin(1);
  const NodeId b = MustJoin(2);
  ASSERT_EQ(StateOf(b), NodeState::kJoining);
  const uint64_t task_ids_before = svc_->OutstandingTasks().back().id;
  agents_.Take(Addr(1));
  Restart();
  EXPECT_EQ(StateOf(b), NodeState::kJoining);
  const std::vector<TaskStatus> tasks = svc_->OutstandingTasks();
  ASSERT_FALSE(tasks.empty());
  // Task ids are never reused across a restart: agents deduplicate by id.
  EXPECT_GT(tasks.front().id, task_ids_before);
  svc_->Tick();  // delivers them
  CompleteTasksOf(a, 1);
  EXPECT_EQ(StateOf(b), NodeState::kActive);
}

TEST_F(CoordinatorRestartTest, WithoutARosterKnownIdsReJoinDuringTheFirstLease) {
  NodeId ids[3];
  ThreeActive(ids);
  const uint64_t before = svc_->epoch();
  svc_.reset();
  // A state dir written by a version that kept only the epoch.
  std::filesystem::remove(state_dir_ + "/roster.pb");
  Restart();
  EXPECT_GT(svc_->epoch(), before);
  EXPECT_TRUE(svc_->CurrentMap().nodes.empty());

  // Known nodes re-join with their ids and come back active, with no copying.
  for (int i = 0; i < 3; ++i) {
    proto::JoinRequest r = JoinReq(i + 1);
    r.set_node_id(ids[i]);
    auto j = svc_->Join(r);
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_EQ(StateOf(ids[i]), NodeState::kActive);
  }
  EXPECT_TRUE(svc_->OutstandingTasks().empty());
  // A new node waits until the re-join window (one lease) has passed...
  auto fresh = svc_->Join(JoinReq(7));
  EXPECT_EQ(fresh.status().code(), absl::StatusCode::kUnavailable);
  clock_.Advance(absl::Milliseconds(1100));
  for (NodeId id : ids) ASSERT_TRUE(Beat(id).ok());
  fresh = svc_->Join(JoinReq(7));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  // ...and never takes a re-joined node's id.
  EXPECT_GT(fresh->node_id(), ids[2]);
}

TEST_F(CoordinatorRestartTest, ALostStateDirMovesPastTheEpochAgentsKnow) {
  NodeId ids[3];
  ThreeActive(ids);
  svc_.reset();
  std::filesystem::remove_all(state_dir_);
  Restart();
  EXPECT_EQ(svc_->epoch(), 1u);
  // An agent of the old cluster knows epoch 40: the new map must be newer, or
  // the agent would ignore it.
  proto::JoinRequest r = JoinReq(1);
  r.set_known_epoch(40);
  auto j = svc_->Join(r);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_GT(j->map().epoch(), 40u);
  EXPECT_GT(svc_->epoch(), 40u);
  // An absurd one is refused and changes nothing.
  r = JoinReq(2);
  r.set_known_epoch(~uint64_t{0});
  const uint64_t e = svc_->epoch();
  EXPECT_EQ(svc_->Join(r).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->epoch(), e);
}

TEST_F(CoordinatorRestartTest, CorruptRosterIsAnError) {
  EXPECT_EQ(StartOn("roster.pb", "\xff\xff garbage").code(), absl::StatusCode::kDataLoss);
}

TEST_F(CoordinatorRestartTest, CorruptEpochFileIsAnError) {
  EXPECT_EQ(StartOn("epoch", "garbage").code(), absl::StatusCode::kDataLoss);
}

TEST(CoordinatorOptionsTest, BadOptionsAreRefused) {
  CoordinatorOptions o;
  o.ring.replication = 0;
  EXPECT_EQ(CoordinatorService::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.ring.replication = 2;
  o.lease = absl::ZeroDuration();
  EXPECT_EQ(CoordinatorService::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ClusterMapConvertTest, RoundTripsAndValidates) {
  ClusterMap m;
  m.epoch = 7;
  m.ring.replication = 3;
  m.nodes.push_back({1, "a:1", "", "r1", 10, NodeState::kActive, "a:8080"});
  m.nodes.push_back({4, "b:2", "ucx", "r2", 20, NodeState::kDraining, ""});
  proto::ClusterMap p;
  ClusterMapToProto(m, &p);
  auto back = ClusterMapFromProto(p);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->epoch, 7u);
  ASSERT_EQ(back->nodes.size(), 2u);
  EXPECT_EQ(back->nodes[1].state, NodeState::kDraining);
  EXPECT_EQ(back->nodes[1].data_address, "ucx");
  p.mutable_nodes(1)->set_id(1);
  EXPECT_EQ(ClusterMapFromProto(p).status().code(), absl::StatusCode::kInvalidArgument);
  p.mutable_nodes(1)->set_id(4);
  p.mutable_nodes(1)->set_state(proto::NODE_STATE_UNSPECIFIED);
  EXPECT_EQ(ClusterMapFromProto(p).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromGrpcStatus(ToGrpcStatus(absl::NotFoundError("x"))).code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvf
