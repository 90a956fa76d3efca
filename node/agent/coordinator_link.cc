#include "node/agent/coordinator_link.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "grpcpp/create_channel.h"
#include "proto/auth.h"
#include "proto/channel.h"
#include "proto/cluster_map_convert.h"

namespace kvf {
namespace {

// Where a follower names the leader (coordinator/grpc_service.h).
constexpr char kLeaderMetadata[] = "x-kvf-leader";

absl::Status Annotate(const char* call, const std::string& address, const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  absl::Status st = FromGrpcStatus(s);
  return absl::Status(st.code(),
                      absl::StrCat("coordinator ", address, " ", call, ": ", st.message()));
}

std::string LeaderFrom(const grpc::ClientContext& ctx) {
  const auto& trailers = ctx.GetServerTrailingMetadata();
  auto it = trailers.find(kLeaderMetadata);
  if (it == trailers.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

CoordinatorLink::CoordinatorLink(const std::string& address, std::string token,
                                 absl::Duration timeout,
                                 std::shared_ptr<grpc::ChannelCredentials> credentials)
    : token_(std::move(token)), timeout_(timeout), credentials_(std::move(credentials)) {
  absl::MutexLock lock(&mu_);
  for (absl::string_view a : absl::StrSplit(address, ',', absl::SkipWhitespace())) {
    IndexOfLocked(std::string(absl::StripAsciiWhitespace(a)));
  }
  if (targets_.empty()) IndexOfLocked(address);  // "" fails at the first call, as before
}

CoordinatorLink::~CoordinatorLink() { StopWatch(); }

size_t CoordinatorLink::IndexOfLocked(const std::string& address) {
  for (size_t i = 0; i < targets_.size(); ++i) {
    if (targets_[i]->address == address) return i;
  }
  auto t = std::make_unique<Target>();
  t->address = address;
  t->stub = proto::Coordinator::NewStub(OpenChannel(address, credentials_));
  targets_.push_back(std::move(t));
  return targets_.size() - 1;
}

std::string CoordinatorLink::current() const {
  absl::MutexLock lock(&mu_);
  return targets_[preferred_]->address;
}

absl::Status CoordinatorLink::Invoke(const char* name, const Call& call) {
  const absl::Time deadline = absl::Now() + timeout_;
  size_t unreachable_in_a_row = 0;
  for (;;) {
    Target* target;
    size_t index;
    size_t n;
    {
      absl::MutexLock lock(&mu_);
      index = preferred_;
      target = targets_[index].get();
      n = targets_.size();
    }
    grpc::ClientContext ctx;
    AddClusterToken(&ctx, token_);
    // With several coordinators one that hangs must not eat the whole budget.
    const absl::Time attempt_deadline =
        n > 1 ? std::min(deadline, absl::Now() + std::max(timeout_ / 2, absl::Seconds(1)))
              : deadline;
    ctx.set_deadline(absl::ToChronoTime(attempt_deadline));
    grpc::Status s = call(*target->stub, &ctx);
    if (s.ok()) return absl::OkStatus();
    const bool unavailable = s.error_code() == grpc::StatusCode::UNAVAILABLE;
    const bool timed_out = s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    const std::string leader = unavailable ? LeaderFrom(ctx) : "";
    {
      absl::MutexLock lock(&mu_);
      if (!leader.empty()) {
        preferred_ = IndexOfLocked(leader);
      } else if ((unavailable || timed_out) && preferred_ == index) {
        preferred_ = (index + 1) % targets_.size();
      }
    }
    // Only UNAVAILABLE says the request was not acted on; a timeout may have
    // been a change made without its answer.
    if (!unavailable || absl::Now() >= deadline) return Annotate(name, target->address, s);
    if (!leader.empty()) {
      unreachable_in_a_row = 0;
      continue;  // straight to the leader
    }
    // Every coordinator unreachable or without a leader: an election (or a
    // restart) is under way; wait a little before the next round.
    if (++unreachable_in_a_row >= n) {
      unreachable_in_a_row = 0;
      absl::SleepFor(std::min(absl::Milliseconds(100), deadline - absl::Now()));
    }
  }
}

absl::StatusOr<proto::JoinResponse> CoordinatorLink::Join(const proto::JoinRequest& request) {
  proto::JoinResponse response;
  if (absl::Status s = Invoke("Join", [&](proto::Coordinator::Stub& stub,
                                              grpc::ClientContext* ctx) {
    return stub.Join(ctx, request, &response);
  });
      !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<proto::HeartbeatResponse> CoordinatorLink::Heartbeat(
    const proto::HeartbeatRequest& request) {
  proto::HeartbeatResponse response;
  if (absl::Status s = Invoke("Heartbeat", [&](proto::Coordinator::Stub& stub,
                                                   grpc::ClientContext* ctx) {
    return stub.Heartbeat(ctx, request, &response);
  });
      !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<ClusterMap> CoordinatorLink::GetClusterMap() {
  proto::ClusterMap map;
  if (absl::Status s = Invoke("GetClusterMap", [&](proto::Coordinator::Stub& stub,
                                                       grpc::ClientContext* ctx) {
    return stub.GetClusterMap(ctx, proto::GetClusterMapRequest(), &map);
  });
      !s.ok()) {
    return s;
  }
  return ClusterMapFromProto(map);
}

absl::Status CoordinatorLink::ReportMigration(uint32_t node,
                                              const std::vector<proto::TaskProgress>& tasks) {
  proto::ReportMigrationRequest request;
  request.set_node_id(node);
  for (const auto& t : tasks) *request.add_tasks() = t;
  proto::ReportMigrationResponse response;
  return Invoke("ReportMigration", [&](proto::Coordinator::Stub& stub, grpc::ClientContext* ctx) {
    return stub.ReportMigration(ctx, request, &response);
  });
}

absl::Status CoordinatorLink::Leave(uint32_t node) {
  proto::NodeRequest request;
  request.set_node_id(node);
  proto::MembershipResponse response;
  return Invoke("Leave", [&](proto::Coordinator::Stub& stub, grpc::ClientContext* ctx) {
    return stub.Leave(ctx, request, &response);
  });
}

void CoordinatorLink::StartWatch(uint64_t after_epoch,
                                 std::function<void(const ClusterMap&)> on_map) {
  watch_ = std::thread([this, after_epoch, on_map = std::move(on_map)] {
    pthread_setname_np(pthread_self(), "kvf-watch");
    WatchLoop(after_epoch, on_map);
  });
}

void CoordinatorLink::StopWatch() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
  }
  if (watch_.joinable()) watch_.join();
}

void CoordinatorLink::WatchLoop(uint64_t after_epoch,
                                std::function<void(const ClusterMap&)> on_map) {
  size_t index;
  {
    absl::MutexLock lock(&mu_);
    index = preferred_;
  }
  size_t failures_in_a_row = 0;
  for (;;) {
    grpc::ClientContext ctx;
    AddClusterToken(&ctx, token_);
    Target* target;
    size_t n;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      watch_ctx_ = &ctx;
      index %= targets_.size();
      target = targets_[index].get();
      n = targets_.size();
    }
    proto::WatchClusterMapRequest request;
    request.set_after_epoch(after_epoch);
    std::unique_ptr<grpc::ClientReader<proto::ClusterMap>> reader =
        target->stub->WatchClusterMap(&ctx, request);
    proto::ClusterMap wire;
    bool got = false;
    while (reader->Read(&wire)) {
      got = true;
      absl::StatusOr<ClusterMap> map = ClusterMapFromProto(wire);
      if (!map.ok()) {
        KVF_LOG(WARNING) << "agent: bad cluster map from the watch: " << map.status();
        continue;
      }
      after_epoch = std::max(after_epoch, map->epoch);
      on_map(*map);
    }
    grpc::Status s = reader->Finish();
    bool stop;
    {
      absl::MutexLock lock(&mu_);
      watch_ctx_ = nullptr;
      stop = stop_;
    }
    if (stop) return;
    failures_in_a_row = got ? 1 : failures_in_a_row + 1;
    KVF_LOG(WARNING) << "agent: cluster-map watch on " << target->address << " ended ("
                     << s.error_message() << "); re-opening"
                     << (n > 1 ? " on the next coordinator" : "");
    // Any coordinator serves the watch: the next one, at once the first time
    // round the list, then after a pause.
    index = (index + 1) % n;
    const absl::Duration pause =
        failures_in_a_row < n ? absl::Milliseconds(20) : absl::Milliseconds(500);
    if (failures_in_a_row >= n) failures_in_a_row = 0;
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), pause);
    if (stop_) return;
  }
}

}  // namespace kvf
