// libFuzzer target: the coordinator's request handling. Each input is one
// coordinator's life: a CoordinatorService (coordinator/coordinator_service.h)
// on a fake clock, no network, driven by a sequence of calls whose requests
// are protobufs parsed from the input (tests/fuzz/input_formats.h describes
// the framing). Every call must return OK or one of the documented errors,
// never crash (ASan/UBSan), and after every call the service must still hold
// its invariants:
//   - the epoch never goes backwards, and the published map is the current
//     epoch's, valid on the wire (ClusterMapFromProto), nodes sorted by id;
//   - WaitForMaps returns consecutive epochs ending at the current one;
//   - every outstanding migration task runs between two live nodes, and a
//     node is `joining` only while a task still copies data to it;
//   - Stats() agrees with the map and the task list.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "coordinator/agent_client.h"
#include "coordinator/coordinator_service.h"
#include "google/protobuf/stubs/logging.h"
#include "proto/cluster_map_convert.h"
#include "proto/coordinator.pb.h"
#include "tests/common/fake_clock.h"
#include "tests/fuzz/input_formats.h"

namespace kvf {
namespace {

using fuzz::CoordinatorOp;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "coordinator fuzz: %s\n", what.c_str());
  std::abort();
}

// Agents that accept every task, except at an address containing
// "unreachable". Thread-safe: the service calls sources concurrently.
class FuzzAgents final : public AgentClient {
 public:
  absl::Status AssignMigration(const std::string& address,
                               const proto::AssignMigrationRequest& request) override {
    if (absl::StrContains(address, "unreachable")) return absl::UnavailableError("refused");
    absl::MutexLock lock(&mu_);
    received_ += request.tasks_size();
    return absl::OkStatus();
  }
  absl::Status ApplyEvictionCutoff(const std::string&,
                                   const proto::EvictionCutoffRequest&) override {
    return absl::OkStatus();
  }

 private:
  absl::Mutex mu_;
  int received_ ABSL_GUARDED_BY(mu_) = 0;
};

// The state dir of persisted inputs, emptied for each: tmpfs when there is
// one, so the service's fsyncs cost nothing.
std::string FreshStateDir() {
  static const std::string* dir = [] {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/kvf_coordinator_fuzz.XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) Fail("mkdtemp failed");
    return new std::string(tmpl);
  }();
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(*dir, ec)) {
    std::filesystem::remove_all(entry.path(), ec);
  }
  return *dir;
}

// Damages the saved roster (coordinator/epoch_store.h), if there is one, as
// a state dir damaged while the coordinator was down: when mask[0] has its
// top bit set the file is cut to (mask[0] & 0x7f) / 128 of its length; the
// rest of `mask` is XORed into its front. True when the bytes changed.
bool CorruptRoster(const std::string& dir, std::string_view mask) {
  if (mask.empty()) return false;
  const std::string path = dir + "/roster.pb";
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  const std::string original((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  in.close();
  std::string bytes = original;
  const uint8_t cut = static_cast<uint8_t>(mask[0]);
  if (cut & 0x80) bytes.resize(bytes.size() * (cut & 0x7f) / 128);
  for (size_t i = 1; i < mask.size() && i - 1 < bytes.size(); ++i) bytes[i - 1] ^= mask[i];
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  return bytes != original;
}

void CheckStatus(const char* call, const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kPermissionDenied:
      return;
    default:
      Fail(absl::StrCat(call, " returned an undocumented error: ", s.ToString()));
  }
}

void CheckInvariants(const CoordinatorService& svc, uint64_t* last_epoch) {
  const uint64_t epoch = svc.epoch();
  if (epoch < *last_epoch) Fail(absl::StrCat("epoch went back from ", *last_epoch, " to ", epoch));
  *last_epoch = epoch;

  const std::shared_ptr<const proto::ClusterMap> wire = svc.GetClusterMap();
  if (wire->epoch() != epoch) {
    Fail(absl::StrCat("published map is epoch ", wire->epoch(), ", service is at ", epoch));
  }
  auto decoded = ClusterMapFromProto(*wire);
  if (!decoded.ok()) Fail(absl::StrCat("published map is invalid: ", decoded.status().ToString()));
  const ClusterMap map = svc.CurrentMap();
  if (map.nodes.size() != decoded->nodes.size()) Fail("published map and CurrentMap differ");
  std::map<NodeId, NodeState> states;
  for (size_t i = 0; i < map.nodes.size(); ++i) {
    if (i > 0 && map.nodes[i - 1].id >= map.nodes[i].id) Fail("map nodes not sorted by id");
    if (map.nodes[i].id != decoded->nodes[i].id || map.nodes[i].state != decoded->nodes[i].state) {
      Fail("published map and CurrentMap differ");
    }
    states[map.nodes[i].id] = map.nodes[i].state;
  }

  const std::vector<TaskStatus> tasks = svc.OutstandingTasks();
  std::map<NodeId, int> incoming;
  for (const TaskStatus& t : tasks) {
    auto from = states.find(t.task.from);
    auto to = states.find(t.task.to);
    if (from == states.end() || to == states.end() || !IsLive(from->second) ||
        !IsLive(to->second)) {
      Fail(absl::StrCat("task ", t.id, " (", t.task.from, " -> ", t.task.to,
                        ") outstanding between nodes that are not both live"));
    }
    ++incoming[t.task.to];
  }
  for (const auto& [id, state] : states) {
    if (state == NodeState::kJoining && incoming[id] == 0) {
      Fail(absl::StrCat("node ", id, " is joining with no task copying data to it"));
    }
  }

  const CoordinatorStats stats = svc.Stats();
  if (stats.epoch != epoch || stats.tasks_outstanding != tasks.size()) {
    Fail("Stats() disagrees with epoch() or OutstandingTasks()");
  }
  uint64_t counted = 0;
  for (uint64_t n : stats.nodes_by_state) counted += n;
  if (counted != map.nodes.size()) Fail("Stats() counts another number of nodes");
}

void CheckWaitForMaps(const CoordinatorService& svc, uint64_t after) {
  const uint64_t epoch = svc.epoch();
  auto maps = svc.WaitForMaps(after, absl::InfinitePast());
  if (after >= epoch) {
    if (!maps.empty()) Fail("WaitForMaps returned maps no newer than asked for");
    return;
  }
  if (maps.empty()) Fail("WaitForMaps returned nothing though a newer map exists");
  for (size_t i = 0; i < maps.size(); ++i) {
    if (maps[i]->epoch() <= after) Fail("WaitForMaps returned an old map");
    if (i > 0 && maps[i]->epoch() != maps[i - 1]->epoch() + 1) {
      Fail("WaitForMaps returned epochs that are not consecutive");
    }
  }
  if (maps.back()->epoch() != epoch) Fail("WaitForMaps did not end at the current epoch");
}

template <typename Message>
bool Parse(std::string_view payload, Message* m) {
  return m->ParseFromArray(payload.data(), static_cast<int>(payload.size()));
}

void Run(CoordinatorService& svc, FakeClock& clock, const fuzz::CoordinatorRecord& r) {
  switch (r.op) {
    case CoordinatorOp::kJoin: {
      proto::JoinRequest req;
      if (Parse(r.payload, &req)) CheckStatus("Join", svc.Join(req).status());
      break;
    }
    case CoordinatorOp::kHeartbeat: {
      proto::HeartbeatRequest req;
      if (Parse(r.payload, &req)) CheckStatus("Heartbeat", svc.Heartbeat(req).status());
      break;
    }
    case CoordinatorOp::kDrain:
    case CoordinatorOp::kUndrain:
    case CoordinatorOp::kLeave: {
      proto::NodeRequest req;
      if (!Parse(r.payload, &req)) break;
      const NodeId id = req.node_id();
      if (r.op == CoordinatorOp::kDrain) CheckStatus("Drain", svc.Drain(id).status());
      if (r.op == CoordinatorOp::kUndrain) CheckStatus("Undrain", svc.Undrain(id).status());
      if (r.op == CoordinatorOp::kLeave) CheckStatus("Leave", svc.Leave(id).status());
      break;
    }
    case CoordinatorOp::kReportMigration: {
      proto::ReportMigrationRequest req;
      if (Parse(r.payload, &req)) {
        CheckStatus("ReportMigration", svc.ReportMigration(req).status());
      }
      break;
    }
    case CoordinatorOp::kAdvanceAndTick:
      clock.Advance(absl::Milliseconds(fuzz::LittleEndian<uint32_t>(r.payload)));
      svc.Tick();
      break;
    case CoordinatorOp::kCompleteTasks: {
      // Each source reports its outstanding tasks, as agents do.
      const int how = r.payload.empty() ? 0 : static_cast<uint8_t>(r.payload[0]) % 3;
      std::map<NodeId, proto::ReportMigrationRequest> reports;
      for (const TaskStatus& t : svc.OutstandingTasks()) {
        proto::ReportMigrationRequest& req = reports[t.task.from];
        req.set_node_id(t.task.from);
        proto::TaskProgress* p = req.add_tasks();
        p->set_task_id(t.id);
        p->set_done(how == 0);
        p->set_bytes_copied(4096);
        if (how == 1) p->set_error("copy failed");
      }
      for (const auto& [id, req] : reports) {
        CheckStatus("ReportMigration", svc.ReportMigration(req).status());
      }
      break;
    }
    case CoordinatorOp::kWaitForMaps:
      CheckWaitForMaps(svc, fuzz::LittleEndian<uint64_t>(r.payload));
      break;
    case CoordinatorOp::kDeliver:
      svc.DeliverPendingTasks(fuzz::LittleEndian<uint32_t>(r.payload));
      break;
    case CoordinatorOp::kHeartbeatAll:
      for (const NodeInfo& n : svc.CurrentMap().nodes) {
        if (!IsLive(n.state)) continue;
        proto::HeartbeatRequest req;
        req.set_node_id(n.id);
        req.set_used_bytes(n.capacity_bytes / 2);
        CheckStatus("Heartbeat", svc.Heartbeat(req).status());
      }
      break;
    case CoordinatorOp::kInspect:
      CheckWaitForMaps(svc, 0);
      break;
    case CoordinatorOp::kRestart:  // handled by the caller
      break;
  }
}

}  // namespace
}  // namespace kvf

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Every change logs a line; at fuzzing speed that is all the time spent.
  // Above kERROR: nothing is written.
  kvf::SetMinLogSeverity(static_cast<kvf::LogSeverity>(3));
  // Protobuf logs every string field with invalid UTF-8 it parses.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint8_t config = 0;
  std::vector<kvf::fuzz::CoordinatorRecord> records;
  if (!kvf::fuzz::ParseCoordinatorInput(data, size, &config, &records)) return -1;

  kvf::FakeClock clock;
  kvf::FuzzAgents agents;
  kvf::CoordinatorOptions o;
  o.ring.replication = 1 + (config & 3) % 3;
  o.ring.load_epsilon = (config & 0x08) ? 0.25 : 0.0;
  o.lease = absl::Seconds(1 + (config >> 6));
  o.map_history = 8;  // small, so watchers fall behind it
  o.max_nodes = 64;
  o.clock = &clock;
  o.agents = (config & kvf::fuzz::kWithAgents) ? &agents : nullptr;
  if (config & kvf::fuzz::kPersisted) {
    o.state_dir = kvf::FreshStateDir();
    if (config & kvf::fuzz::kRestarted) {
      std::ofstream(o.state_dir + "/epoch", std::ios::trunc) << 41 << "\n";
    }
  }
  auto created = kvf::CoordinatorService::Create(o);
  if (!created.ok()) kvf::Fail(absl::StrCat("Create: ", created.status().ToString()));
  std::unique_ptr<kvf::CoordinatorService> svc = *std::move(created);
  uint64_t last_epoch = 0;
  kvf::CheckInvariants(*svc, &last_epoch);
  for (const auto& r : records) {
    if (r.op == kvf::fuzz::CoordinatorOp::kRestart) {
      if (o.state_dir.empty()) continue;
      svc.reset();
      const bool corrupted = kvf::CorruptRoster(o.state_dir, r.payload);
      auto again = kvf::CoordinatorService::Create(o);
      if (!again.ok()) {
        // A corrupted roster may be refused, with a clear error.
        const absl::StatusCode c = again.status().code();
        if (!corrupted ||
            (c != absl::StatusCode::kDataLoss && c != absl::StatusCode::kInvalidArgument)) {
          kvf::Fail(absl::StrCat("restart: ", again.status().ToString()));
        }
        return 0;
      }
      svc = *std::move(again);
      if (svc->epoch() <= last_epoch) {
        kvf::Fail(absl::StrCat("restarted at epoch ", svc->epoch(), ", was at ", last_epoch));
      }
    } else {
      kvf::Run(*svc, clock, r);
    }
    kvf::CheckInvariants(*svc, &last_epoch);
  }
  return 0;
}
