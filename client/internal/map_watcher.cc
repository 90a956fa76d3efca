#include "client/internal/map_watcher.h"

#include <pthread.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/channel.h"
#include "proto/cluster_map_convert.h"
#include "proto/coordinator.grpc.pb.h"

namespace kvf::client_internal {
namespace {

std::chrono::system_clock::time_point ToChrono(absl::Time t) {
  return absl::ToChronoTime(t);
}

}  // namespace

struct MapWatcher::Rpc {
  std::vector<std::string> addresses;
  std::vector<std::unique_ptr<proto::Coordinator::Stub>> stubs;  // one per address
};

MapWatcher::MapWatcher(std::string address, std::string token, absl::Duration rpc_timeout)
    : address_(std::move(address)), token_(std::move(token)), rpc_timeout_(rpc_timeout) {}

absl::StatusOr<std::unique_ptr<MapWatcher>> MapWatcher::Start(std::string address,
                                                             std::string token,
                                                             const std::string& tls_ca_file,
                                                             absl::Duration rpc_timeout) {
  if (address.empty()) return absl::InvalidArgumentError("coordinator address is empty");
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentialsFor(tls_ca_file);
  if (!credentials.ok()) {
    return absl::Status(credentials.status().code(),
                        absl::StrCat("ClientOptions.tls_ca_file: ", credentials.status().message()));
  }
  std::unique_ptr<MapWatcher> w(new MapWatcher(std::move(address), std::move(token), rpc_timeout));
  w->rpc_ = std::make_unique<Rpc>();
  for (absl::string_view a : absl::StrSplit(w->address_, ',', absl::SkipWhitespace())) {
    w->rpc_->addresses.emplace_back(absl::StripAsciiWhitespace(a));
    w->rpc_->stubs.push_back(
        proto::Coordinator::NewStub(OpenChannel(w->rpc_->addresses.back(), *credentials)));
  }
  if (w->rpc_->stubs.empty()) return absl::InvalidArgumentError("coordinator address is empty");
  absl::Status s = w->FetchAny(absl::Now() + rpc_timeout);
  if (!s.ok()) {
    // Nothing in gRPC's text says TLS was the trouble: a plaintext client of
    // a TLS server sees the connection closed, a TLS one a failed handshake.
    const char* hint = "";
    if (absl::IsUnavailable(s)) {
      hint = tls_ca_file.empty()
                 ? " (is kvf-coordinator running there? If it serves TLS, set tls_ca_file)"
                 : " (is kvf-coordinator running there, serving TLS with a certificate that "
                   "tls_ca_file signs and that names this address?)";
    }
    return absl::Status(s.code(), absl::StrCat("GetClusterMap from coordinator ", w->address_,
                                               ": ", std::string(s.message()), hint));
  }
  w->watcher_ = std::thread([p = w.get()] {
    pthread_setname_np(pthread_self(), "kvf-cl-watch");
    p->WatchLoop();
  });
  return w;
}

MapWatcher::~MapWatcher() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
    if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
  }
  if (watcher_.joinable()) watcher_.join();
}

std::shared_ptr<const MapSnapshot> MapWatcher::Current() const {
  absl::MutexLock l(&mu_);
  return snapshot_;
}

absl::Status MapWatcher::Install(ClusterMap map) {
  {
    absl::MutexLock l(&mu_);
    if (snapshot_ != nullptr && snapshot_->map.epoch >= map.epoch) return absl::OkStatus();
  }
  KVF_ASSIGN_OR_RETURN(Placement placement,
                       Placement::Build(Placement::ReadMembers(map), map.ring));
  auto snap = std::make_shared<MapSnapshot>(MapSnapshot{std::move(map), std::move(placement)});
  absl::MutexLock l(&mu_);
  if (snapshot_ == nullptr || snapshot_->map.epoch < snap->map.epoch) snapshot_ = std::move(snap);
  return absl::OkStatus();
}

absl::Status MapWatcher::FetchOnce(absl::Time deadline) {
  size_t index;
  {
    absl::MutexLock l(&mu_);
    index = preferred_;
  }
  const size_t n = rpc_->stubs.size();
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  // With several coordinators one that hangs must not eat the whole budget.
  ctx.set_deadline(ToChrono(
      n > 1 ? std::min(deadline, absl::Now() + std::max(rpc_timeout_ / 2, absl::Seconds(1)))
            : deadline));
  proto::ClusterMap pm;
  grpc::Status gs = rpc_->stubs[index]->GetClusterMap(&ctx, proto::GetClusterMapRequest(), &pm);
  if (!gs.ok()) {
    if (n > 1 && (gs.error_code() == grpc::StatusCode::UNAVAILABLE ||
                  gs.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)) {
      absl::MutexLock l(&mu_);
      if (preferred_ == index) preferred_ = (index + 1) % n;
    }
    absl::Status st = FromGrpcStatus(gs);
    return absl::Status(st.code(), n > 1 ? absl::StrCat(rpc_->addresses[index], ": ", st.message())
                                         : std::string(st.message()));
  }
  KVF_ASSIGN_OR_RETURN(ClusterMap map, ClusterMapFromProto(pm));
  return Install(std::move(map));
}

absl::Status MapWatcher::FetchAny(absl::Time deadline) {
  absl::Status s;
  for (size_t i = 0; i < rpc_->stubs.size(); ++i) {
    s = FetchOnce(deadline);
    if (s.ok() || !(absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s)) ||
        absl::Now() >= deadline) {
      return s;
    }
  }
  return s;
}

absl::Status MapWatcher::RefreshTo(uint64_t min_epoch, absl::Time deadline) {
  absl::Duration backoff = absl::Milliseconds(5);
  for (;;) {
    {
      auto snap = Current();
      if (snap != nullptr && snap->map.epoch >= min_epoch) return absl::OkStatus();
    }
    absl::Status s = FetchAny(std::min(deadline, absl::Now() + rpc_timeout_));
    {
      auto snap = Current();
      if (snap != nullptr && snap->map.epoch >= min_epoch) return absl::OkStatus();
    }
    if (absl::Now() + backoff >= deadline) {
      if (!s.ok()) return s;
      return absl::DeadlineExceededError(
          absl::StrCat("cluster map did not reach epoch ", min_epoch, " in time"));
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(100));
  }
}

void MapWatcher::WatchLoop() {
  const size_t n = rpc_->stubs.size();
  size_t failures_in_a_row = 0;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token_));
    proto::WatchClusterMapRequest req;
    size_t index;
    {
      absl::MutexLock l(&mu_);
      if (stop_) return;
      watch_ctx_ = &ctx;
      req.set_after_epoch(snapshot_ != nullptr ? snapshot_->map.epoch : 0);
      index = preferred_;
    }
    auto reader = rpc_->stubs[index]->WatchClusterMap(&ctx, req);
    proto::ClusterMap pm;
    bool got = false;
    while (reader->Read(&pm)) {
      got = true;
      auto map = ClusterMapFromProto(pm);
      if (!map.ok()) {
        KVF_LOG(WARNING) << "kvf client: bad cluster map from the watch: " << map.status();
        continue;
      }
      absl::Status s = Install(*std::move(map));
      if (!s.ok()) {
        KVF_LOG(WARNING) << "kvf client: cannot place with the new map: " << s;
      }
    }
    grpc::Status gs = reader->Finish();
    absl::MutexLock l(&mu_);
    watch_ctx_ = nullptr;
    if (stop_) return;
    // Any coordinator serves the watch: with several, the next one (at once
    // the first time round the list); with one, the same after a pause.
    failures_in_a_row = got ? 1 : failures_in_a_row + 1;
    absl::Duration pause = absl::Milliseconds(200);
    if (n > 1) {
      if (preferred_ == index) preferred_ = (index + 1) % n;
      pause = failures_in_a_row < n ? absl::Milliseconds(20) : absl::Milliseconds(200);
      if (failures_in_a_row >= n) failures_in_a_row = 0;
    }
    mu_.AwaitWithTimeout(absl::Condition(&stop_), pause);
    if (stop_) return;
  }
}

}  // namespace kvf::client_internal
