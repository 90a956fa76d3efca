// A real kvf-coordinator process (fork/exec, port 0) and fake agents speaking
// real gRPC on loopback: join, heartbeats, a lease expiring, drain with tasks
// handed to an agent and reported, the watch stream, auth, HTTP, SIGTERM.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <httplib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "proto/agent_control.grpc.pb.h"
#include "proto/coordinator.grpc.pb.h"
#include "tools/launch/spawn.h"

namespace kvf {
namespace {

constexpr char kToken[] = "integration-token";
constexpr absl::Duration kWait = absl::Seconds(20);

// Polls `cond` until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (cond()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return cond();
}

// The coordinator child process; killed in the destructor whatever happened.
class CoordinatorProcess {
 public:
  // Starts it and parses "kvf-coordinator listening grpc=H:P http=H:P".
  ::testing::AssertionResult Start(const std::vector<std::string>& flags) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return ::testing::AssertionFailure() << "pipe";
    launch::SpawnOptions options;
    options.argv = {KVF_COORDINATOR_BIN};
    options.argv.insert(options.argv.end(), flags.begin(), flags.end());
    options.set_env = {{"KVF_LOG_LEVEL", "WARNING"}};
    options.out = launch::Stdio::Fd(fds[1]);
    absl::StatusOr<launch::ChildProcess> child = launch::ChildProcess::Spawn(options);
    ::close(fds[1]);
    if (!child.ok()) {
      ::close(fds[0]);
      return ::testing::AssertionFailure() << child.status();
    }
    child_ = *std::move(child);
    std::string out;
    const absl::Time deadline = absl::Now() + kWait;
    while (out.find('\n') == std::string::npos && absl::Now() < deadline) {
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[256];
      ssize_t n = ::read(fds[0], buf, sizeof(buf));
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    for (absl::string_view part : absl::StrSplit(out.substr(0, out.find('\n')), ' ')) {
      if (absl::ConsumePrefix(&part, "grpc=")) grpc_ = std::string(part);
      if (absl::ConsumePrefix(&part, "http=")) http_ = std::string(part);
    }
    if (out.rfind("kvf-coordinator listening ", 0) != 0 || grpc_.empty() || http_.empty()) {
      return ::testing::AssertionFailure() << "no startup line; got '" << out << "'";
    }
    return ::testing::AssertionSuccess();
  }

  // Sends SIGTERM and waits for the exit status (-1 on timeout).
  int Terminate() {
    child_.Signal(SIGTERM);
    const std::optional<launch::ExitStatus> exit = child_.Wait(kWait);
    return exit.has_value() ? exit->ShellCode() : -1;
  }

  const std::string& grpc() const { return grpc_; }
  const std::string& http() const { return http_; }

 private:
  launch::ChildProcess child_;
  std::string grpc_;
  std::string http_;
};

void Authorize(grpc::ClientContext* ctx) {
  ctx->AddMetadata("authorization", std::string("Bearer ") + kToken);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
}

// An agent as the coordinator sees it: AgentControl on loopback, heartbeats
// from a thread, and every assigned task reported done on the next beat.
class FakeAgent final : public proto::AgentControl::Service {
 public:
  FakeAgent(const std::string& coordinator, std::string domain) : domain_(std::move(domain)) {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(this);
    server_ = b.BuildAndStart();
    address_ = absl::StrCat("127.0.0.1:", port);
    stub_ = proto::Coordinator::NewStub(
        grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials()));
  }
  ~FakeAgent() override {
    StopHeartbeats();
    server_->Shutdown();
  }

  grpc::Status AssignMigration(grpc::ServerContext* ctx, const proto::AssignMigrationRequest* req,
                               proto::AssignMigrationResponse* resp) override {
    auto it = ctx->client_metadata().find("authorization");
    if (it == ctx->client_metadata().end() ||
        std::string(it->second.data(), it->second.size()) != std::string("Bearer ") + kToken) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no token");
    }
    absl::MutexLock lock(&mu_);
    for (const auto& t : req->tasks()) {
      if (t.from_node() != id_) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "task for another source");
      }
      pending_.push_back(t.task_id());
      ++received_;
    }
    resp->set_accepted(static_cast<uint32_t>(req->tasks_size()));
    return grpc::Status::OK;
  }
  grpc::Status ApplyEvictionCutoff(grpc::ServerContext*, const proto::EvictionCutoffRequest*,
                                   proto::EvictionCutoffResponse*) override {
    return grpc::Status::OK;
  }

  grpc::Status Join() {
    grpc::ClientContext ctx;
    Authorize(&ctx);
    proto::JoinRequest r;
    r.set_address(address_);
    r.set_failure_domain(domain_);
    r.set_capacity_bytes(uint64_t{1} << 30);
    r.add_tiers("host");
    proto::JoinResponse resp;
    grpc::Status s = stub_->Join(&ctx, r, &resp);
    absl::MutexLock lock(&mu_);
    if (s.ok()) id_ = resp.node_id();
    return s;
  }

  void StartHeartbeats() {
    stop_ = false;
    thread_ = std::thread([this] {
      while (!stop_) {
        Beat();
        absl::SleepFor(absl::Milliseconds(50));  // the heartbeat period, not synchronisation
      }
    });
  }
  void StopHeartbeats() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  uint32_t id() const {
    absl::MutexLock lock(&mu_);
    return id_;
  }
  int received() const {
    absl::MutexLock lock(&mu_);
    return received_;
  }

 private:
  void Beat() {
    std::vector<uint64_t> done;
    uint32_t id;
    {
      absl::MutexLock lock(&mu_);
      done.swap(pending_);
      id = id_;
    }
    if (!done.empty()) {
      grpc::ClientContext ctx;
      Authorize(&ctx);
      proto::ReportMigrationRequest r;
      r.set_node_id(id);
      for (uint64_t t : done) {
        auto* p = r.add_tasks();
        p->set_task_id(t);
        p->set_done(true);
      }
      proto::ReportMigrationResponse resp;
      stub_->ReportMigration(&ctx, r, &resp).ok();
    }
    grpc::ClientContext ctx;
    Authorize(&ctx);
    proto::HeartbeatRequest hb;
    hb.set_node_id(id);
    hb.set_used_bytes(1000);
    proto::HeartbeatResponse resp;
    stub_->Heartbeat(&ctx, hb, &resp).ok();
  }

  const std::string domain_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::unique_ptr<proto::Coordinator::Stub> stub_;
  std::atomic<bool> stop_{true};
  std::thread thread_;
  mutable absl::Mutex mu_;
  uint32_t id_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> pending_ ABSL_GUARDED_BY(mu_);
  int received_ ABSL_GUARDED_BY(mu_) = 0;
};

class CoordinatorProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kvf_coord_proc_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    state_dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(state_dir_); }

  proto::ClusterMap Map(proto::Coordinator::Stub* stub) {
    grpc::ClientContext ctx;
    Authorize(&ctx);
    proto::ClusterMap m;
    grpc::Status s = stub->GetClusterMap(&ctx, proto::GetClusterMapRequest(), &m);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return m;
  }
  proto::NodeState StateOf(proto::Coordinator::Stub* stub, uint32_t id) {
    const proto::ClusterMap map = Map(stub);
    for (const auto& n : map.nodes()) {
      if (n.id() == id) return n.state();
    }
    return proto::NODE_STATE_UNSPECIFIED;
  }

  std::string state_dir_;
};

TEST_F(CoordinatorProcessTest, JoinHeartbeatLeaseDrainAndWatch) {
  CoordinatorProcess proc;
  ASSERT_TRUE(proc.Start({"--listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
                          absl::StrCat("--token=", kToken), "--lease_ms=1000",
                          "--replication=2", absl::StrCat("--state_dir=", state_dir_)}));
  auto stub = proto::Coordinator::NewStub(
      grpc::CreateChannel(proc.grpc(), grpc::InsecureChannelCredentials()));

  // A watcher from the start collects every map it is sent.
  absl::Mutex watch_mu;
  std::vector<uint64_t> epochs;
  grpc::ClientContext watch_ctx;
  Authorize(&watch_ctx);
  watch_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = stub->WatchClusterMap(&watch_ctx, proto::WatchClusterMapRequest());
  std::thread watcher([&] {
    proto::ClusterMap m;
    while (reader->Read(&m)) {
      absl::MutexLock lock(&watch_mu);
      epochs.push_back(m.epoch());
    }
  });

  // Wrong token: refused, nothing changes.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer nope");
    proto::JoinRequest r;
    r.set_address("127.0.0.1:1");
    r.set_capacity_bytes(1);
    proto::JoinResponse resp;
    EXPECT_EQ(stub->Join(&ctx, r, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }

  std::vector<std::unique_ptr<FakeAgent>> agents;
  for (int i = 0; i < 4; ++i) {
    agents.push_back(std::make_unique<FakeAgent>(proc.grpc(), absl::StrCat("rack", i)));
    grpc::Status s = agents.back()->Join();
    ASSERT_TRUE(s.ok()) << s.error_message();
    agents.back()->StartHeartbeats();
    const uint32_t id = agents.back()->id();
    ASSERT_TRUE(WaitFor([&] { return StateOf(stub.get(), id) == proto::NODE_STATE_ACTIVE; }))
        << "node " << id << " never became active";
  }
  // Joins after the first copied data: the earlier agents got and reported tasks.
  EXPECT_GT(agents[0]->received(), 0);

  // Node C stops heartbeating: down after its lease.
  const uint32_t c = agents[2]->id();
  agents[2]->StopHeartbeats();
  ASSERT_TRUE(WaitFor([&] { return StateOf(stub.get(), c) == proto::NODE_STATE_DOWN; }));
  EXPECT_EQ(StateOf(stub.get(), agents[0]->id()), proto::NODE_STATE_ACTIVE);

  // Drain B: its ranges move to A and D (tasks handed to agents, reported),
  // then it is left.
  const uint32_t b = agents[1]->id();
  const int before = agents[0]->received() + agents[1]->received();
  {
    grpc::ClientContext ctx;
    Authorize(&ctx);
    proto::NodeRequest r;
    r.set_node_id(b);
    proto::MembershipResponse resp;
    grpc::Status s = stub->Drain(&ctx, r, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(resp.node().state() == proto::NODE_STATE_DRAINING ||
                resp.node().state() == proto::NODE_STATE_LEFT);
  }
  ASSERT_TRUE(WaitFor([&] { return StateOf(stub.get(), b) == proto::NODE_STATE_LEFT; }));
  EXPECT_GT(agents[0]->received() + agents[1]->received(), before);

  // Illegal now: draining a left node.
  {
    grpc::ClientContext ctx;
    Authorize(&ctx);
    proto::NodeRequest r;
    r.set_node_id(b);
    proto::MembershipResponse resp;
    EXPECT_EQ(stub->Drain(&ctx, r, &resp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }

  // The watcher saw every epoch, in order, up to the current one.
  const uint64_t current = Map(stub.get()).epoch();
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&watch_mu);
    return !epochs.empty() && epochs.back() == current;
  }));
  {
    absl::MutexLock lock(&watch_mu);
    for (size_t i = 1; i < epochs.size(); ++i) EXPECT_EQ(epochs[i], epochs[i - 1] + 1) << i;
  }

  // HTTP side.
  {
    auto colon = proc.http().rfind(':');
    httplib::Client http(proc.http().substr(0, colon), std::stoi(proc.http().substr(colon + 1)));
    auto health = http.Get("/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    auto metrics = http.Get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_NE(metrics->body.find(absl::StrCat("kvf_coordinator_epoch ", current)),
              std::string::npos);
    EXPECT_NE(metrics->body.find("kvf_coordinator_nodes{state=\"left\"} 1"), std::string::npos);
    EXPECT_NE(metrics->body.find("kvf_coordinator_rpc_unauthenticated_total 1"),
              std::string::npos);
  }

  for (auto& a : agents) a->StopHeartbeats();
  EXPECT_EQ(proc.Terminate(), 0);
  watcher.join();  // the stream ends with the process
  reader->Finish();

  // Restarted on the same state dir: the epoch went on from where it was.
  CoordinatorProcess again;
  ASSERT_TRUE(again.Start({"--listen=127.0.0.1:0", "--http_listen=", absl::StrCat("--token=", kToken),
                           absl::StrCat("--state_dir=", state_dir_)}));
  auto stub2 = proto::Coordinator::NewStub(
      grpc::CreateChannel(again.grpc(), grpc::InsecureChannelCredentials()));
  EXPECT_GT(Map(stub2.get()).epoch(), current);
  EXPECT_EQ(again.Terminate(), 0);
}

// The config file's values stand unless a flag is given, even a flag given its
// default value; a comment naming a field sets nothing; a field set to "" in
// the file (http_listen: off) is not taken for an unset one.
TEST_F(CoordinatorProcessTest, FlagsGivenOverrideTheConfigFile) {
  const std::string config = state_dir_ + "/coordinator.textproto";
  std::ofstream(config) << "# replication: 3 (and no http_listen: \"127.0.0.1:0\")\n"
                           "replication: 3\n"
                           "default_segment_blocks: 32\n"
                           "http_listen: \"\"\n";
  CoordinatorProcess proc;
  ASSERT_TRUE(proc.Start({absl::StrCat("--config=", config), "--listen=127.0.0.1:0",
                          absl::StrCat("--token=", kToken), "--replication=2"}));
  EXPECT_EQ(proc.http(), "off");
  auto stub = proto::Coordinator::NewStub(
      grpc::CreateChannel(proc.grpc(), grpc::InsecureChannelCredentials()));
  const proto::ClusterMap map = Map(stub.get());
  EXPECT_EQ(map.ring().replication(), 2u) << "--replication=2, the flag's default, was given";
  EXPECT_EQ(map.default_segment_blocks(), 32u) << "no flag: the file's value";
  EXPECT_EQ(proc.Terminate(), 0);
}

}  // namespace
}  // namespace kvf
