#include "coordinator/coordinator_service.h"

#include <algorithm>
#include <functional>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"
#include "common/placement.h"
#include "common/status_macros.h"
#include "proto/cluster_map_convert.h"

namespace kvf {
namespace {


constexpr size_t kMaxAddressLength = 255;
constexpr size_t kMaxDataAddressLength = 4096;
constexpr size_t kMaxFailureDomainLength = 128;
constexpr int kMaxTiers = 8;
constexpr size_t kMaxTierLength = 32;
constexpr NodeId kMaxNodeId = NodeId{1} << 30;
constexpr uint64_t kMaxKnownEpoch = uint64_t{1} << 62;

bool Printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
  });
}

// host:port with a non-empty host (optionally [v6]) and a port in 1..65535.
absl::Status ValidateHostPort(const char* what, std::string_view address) {
  if (address.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (address.size() > kMaxAddressLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", address.size(), " bytes; at most ", kMaxAddressLength));
  }
  if (!Printable(address)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has spaces or non-printable characters"));
  }
  size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(address.data() + colon + 1, address.size() - colon - 1),
                        &port) ||
      port == 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", std::string(address), "' is not host:port with a port in 1..65535"));
  }
  return absl::OkStatus();
}

absl::Status CheckTransition(NodeId id, NodeState from, NodeState to) {
  bool ok = false;
  switch (from) {
    case NodeState::kJoining:
      ok = to == NodeState::kActive || to == NodeState::kDown || to == NodeState::kLeft;
      break;
    case NodeState::kActive:
      ok = to == NodeState::kDraining || to == NodeState::kDown || to == NodeState::kLeft;
      break;
    case NodeState::kDraining:
      ok = to == NodeState::kActive || to == NodeState::kLeft || to == NodeState::kDown;
      break;
    case NodeState::kDown:
      ok = to == NodeState::kActive || to == NodeState::kLeft;
      break;
    case NodeState::kLeft:
      ok = false;
      break;
  }
  if (ok) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("node ", id, " is ", NodeStateText(from), ": it cannot become ",
                   NodeStateText(to), from == NodeState::kLeft ? " (left is final)" : ""));
}

}  // namespace


absl::StatusOr<std::unique_ptr<CoordinatorService>> CoordinatorService::Create(
    CoordinatorOptions options) {
  if (options.ring.replication < 1 ||
      options.ring.replication > static_cast<uint32_t>(kMaxReplication)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "replication ", options.ring.replication, " outside [1, ", kMaxReplication, "]"));
  }
  if (!(options.ring.load_epsilon >= 0.0)) {
    return absl::InvalidArgumentError("load_epsilon must be >= 0");
  }
  if (options.lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("lease must be positive");
  }
  if (!(options.watermarks.low > 0.0 && options.watermarks.low <= options.watermarks.high &&
        options.watermarks.high <= 1.0)) {
    return absl::InvalidArgumentError("watermarks must satisfy 0 < low <= high <= 1");
  }
  if (options.default_segment_blocks == 0) {
    return absl::InvalidArgumentError("default_segment_blocks must be >= 1");
  }
  if (options.map_history == 0) options.map_history = 1;
  std::shared_ptr<StateStore> store = options.store;
  if (store == nullptr) {
    KVF_ASSIGN_OR_RETURN(std::unique_ptr<EpochStore> files, EpochStore::Open(options.state_dir));
    store = std::move(files);
  }
  KVF_ASSIGN_OR_RETURN(uint64_t saved, store->Load());
  KVF_ASSIGN_OR_RETURN(std::optional<std::string> bytes, store->LoadRoster());
  std::optional<proto::CoordinatorState> roster;
  if (bytes) {
    roster.emplace();
    if (!roster->ParseFromString(*bytes) || !ClusterMapFromProto(roster->map()).ok()) {
      return absl::DataLossError(absl::StrCat(
          options.store ? store->Describe() : options.state_dir + "/roster.pb",
          ": does not hold a coordinator state"));
    }
  }
  const uint64_t epoch = saved + 1;
  KVF_RETURN_IF_ERROR(store->Save(epoch));
  KVF_LOG(INFO) << "coordinator: starting at epoch " << epoch
                << (roster ? absl::StrCat(" (restart: ", roster->map().nodes_size(),
                                          " nodes from the saved roster)")
                           : saved ? " (restart without a roster: rebuilding the map from "
                                     "re-joining agents)"
                                   : "");
  return std::unique_ptr<CoordinatorService>(
      new CoordinatorService(std::move(options), std::move(store), epoch, std::move(roster)));
}

CoordinatorService::CoordinatorService(CoordinatorOptions options,
                                       std::shared_ptr<StateStore> store, uint64_t epoch,
                                       std::optional<proto::CoordinatorState> roster)
    : options_(std::move(options)),
      clock_(options_.clock ? *options_.clock : Clock::Real()),
      started_(clock_.Now()),
      store_(std::move(store)),
      epoch_(epoch),
      recovering_(!roster && epoch > 1) {
  absl::MutexLock lock(&mu_);
  if (roster) RestoreLocked(*roster);
  PublishLocked();
  if (roster) {
    // Joins and drains that were in progress: their tasks were not kept.
    const ClusterMap map = BuildMapLocked();
    PlanLocked(map, map, kNoNode);
    FlipFinishedLocked();
  }
}

void CoordinatorService::RestoreLocked(const proto::CoordinatorState& roster) {
  const absl::Time now = Now();
  // Checked by Create.
  const ClusterMap map = *ClusterMapFromProto(roster.map());
  for (int i = 0; i < roster.map().nodes_size(); ++i) {
    const NodeInfo& info = map.nodes[static_cast<size_t>(i)];
    NodeEntry& e = nodes_[info.id];
    e.info = info;
    const auto& tiers = roster.map().nodes(i).tiers();
    e.tiers.assign(tiers.begin(), tiers.end());
    e.device_bytes = roster.map().nodes(i).device_bytes();
    e.lease_deadline = now + options_.lease;
    next_id_ = std::max(next_id_, info.id + 1);
  }
  next_id_ = std::max<NodeId>(next_id_, roster.next_node_id());
  next_task_id_ = std::max<uint64_t>(next_task_id_, roster.next_task_id()) + options_.task_id_gap;
}

void CoordinatorService::SaveRosterLocked() {
  proto::CoordinatorState state;
  *state.mutable_map() = *history_.back();
  state.set_next_node_id(next_id_);
  state.set_next_task_id(next_task_id_);
  absl::Status s = store_->SaveRoster(state.SerializeAsString());
  if (s.ok()) {
    roster_saved_ = true;
    return;
  }
  // The epoch file went first, so the epoch is safe; a roster one change
  // behind costs a restart in this window at most the re-join of the node
  // this change added (it joins again as a new node).
  if (roster_saved_) {
    KVF_LOG(ERROR) << "coordinator: cannot save the roster (retrying): " << s;
  }
  roster_saved_ = false;
  ++counters_.roster_save_failures;
}

CoordinatorService::~CoordinatorService() { Shutdown(); }

absl::Time CoordinatorService::Now() const { return clock_.Now(); }

ClusterMap CoordinatorService::BuildMapLocked() const {
  ClusterMap map;
  map.epoch = epoch_;
  map.ring = options_.ring;
  map.nodes.reserve(nodes_.size());
  for (const auto& [id, e] : nodes_) map.nodes.push_back(e.info);
  return map;
}

CoordinatorService::NodeEntry* CoordinatorService::FindLocked(NodeId id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

absl::StatusOr<CoordinatorService::NodeEntry*> CoordinatorService::LookupLocked(NodeId id) {
  if (id == kNoNode) return absl::InvalidArgumentError("node_id is missing (0)");
  NodeEntry* e = FindLocked(id);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat("unknown node id ", id));
  return e;
}

size_t CoordinatorService::LiveNodesLocked() const {
  size_t n = 0;
  for (const auto& [id, e] : nodes_) n += e.info.state != NodeState::kLeft;
  return n;
}

absl::Status CoordinatorService::BumpEpochLocked() {
  absl::Status s = store_->Save(epoch_ + 1);
  if (!s.ok()) {
    // INTERNAL for a state dir that cannot be written; UNAVAILABLE for etcd
    // out of reach or a leader that lost its lease (the caller retries,
    // elsewhere).
    return absl::Status(
        absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) ? absl::StatusCode::kUnavailable
                                                             : absl::StatusCode::kInternal,
        absl::StrCat("cannot save epoch ", epoch_ + 1, ", change refused: ", s.message()));
  }
  ++epoch_;
  return absl::OkStatus();
}

void CoordinatorService::PublishLocked() {
  auto map = std::make_shared<proto::ClusterMap>();
  ClusterMapToProto(BuildMapLocked(), map.get());
  int i = 0;
  for (const auto& [id, e] : nodes_) {
    for (const std::string& t : e.tiers) map->mutable_nodes(i)->add_tiers(t);
    map->mutable_nodes(i)->set_device_bytes(e.device_bytes);
    ++i;
  }
  map->set_default_segment_blocks(options_.default_segment_blocks);
  if (options_.on_publish) options_.on_publish(map);
  history_.push_back(std::move(map));
  while (history_.size() > options_.map_history) history_.pop_front();
  SaveRosterLocked();
}

absl::Status CoordinatorService::TransitionLocked(NodeId id, NodeState to, Plan plan) {
  NodeEntry* e = FindLocked(id);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat("unknown node id ", id));
  KVF_RETURN_IF_ERROR(CheckTransition(id, e->info.state, to));
  const ClusterMap before = BuildMapLocked();
  KVF_RETURN_IF_ERROR(BumpEpochLocked());
  KVF_LOG(INFO) << "coordinator: epoch " << epoch_ << ": node " << id << " "
                << NodeStateText(e->info.state) << " -> " << NodeStateText(to);
  e->info.state = to;
  PublishLocked();
  if (plan == Plan::kMigrate) PlanLocked(before, BuildMapLocked(), id);
  CancelStaleTasksLocked();
  FlipFinishedLocked();
  return absl::OkStatus();
}

absl::StatusOr<proto::JoinResponse> CoordinatorService::Join(const proto::JoinRequest& request) {
  KVF_RETURN_IF_ERROR(ValidateHostPort("address", request.address()));
  if (request.http_address().size() > 256) {
    return absl::InvalidArgumentError("http_address is longer than 256 bytes");
  }
  if (request.data_address().size() > kMaxDataAddressLength) {
    return absl::InvalidArgumentError(absl::StrCat("data_address is ", request.data_address().size(),
                                                   " bytes; at most ", kMaxDataAddressLength));
  }
  if (request.tenant_data_address().size() > kMaxDataAddressLength) {
    return absl::InvalidArgumentError(absl::StrCat("tenant_data_address is ", request.tenant_data_address().size(),
                                                   " bytes; at most ", kMaxDataAddressLength));
  }
  if (request.failure_domain().size() > kMaxFailureDomainLength ||
      !Printable(request.failure_domain())) {
    return absl::InvalidArgumentError(
        absl::StrCat("failure_domain must be at most ", kMaxFailureDomainLength,
                     " printable characters without spaces"));
  }
  if (request.capacity_bytes() == 0 || request.capacity_bytes() > options_.max_capacity_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("capacity_bytes ", request.capacity_bytes(), " outside [1, ",
                     options_.max_capacity_bytes, "]"));
  }
  if (request.tiers_size() > kMaxTiers) {
    return absl::InvalidArgumentError(absl::StrCat("more than ", kMaxTiers, " tiers"));
  }
  for (const std::string& t : request.tiers()) {
    if (t.empty() || t.size() > kMaxTierLength || !Printable(t)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tier names must be 1..", kMaxTierLength, " printable characters"));
    }
  }
  if (request.node_id() >= kMaxNodeId) {
    return absl::InvalidArgumentError(absl::StrCat("node_id ", request.node_id(), " too large"));
  }
  if (request.known_epoch() >= kMaxKnownEpoch) {
    return absl::InvalidArgumentError(
        absl::StrCat("known_epoch ", request.known_epoch(), " too large"));
  }

  const absl::Time now = Now();
  proto::JoinResponse response;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::UnavailableError("coordinator is shutting down");
    if (recovering_ && now >= started_ + options_.lease) recovering_ = false;
    // If this coordinator lost its state, the node has seen later maps and
    // ignores any map not newer than what it has: the join's epoch moves past
    // it. Only once the join is known to succeed, so a refused one changes
    // nothing (the epoch would run ahead of the published map).
    const uint64_t epoch_before = epoch_;
    auto move_past_known_epoch = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (request.known_epoch() < epoch_) return;
      KVF_LOG(WARNING) << "coordinator: a joining node knows epoch " << request.known_epoch()
                       << ", this coordinator only " << epoch_ << ": moving past it";
      epoch_ = request.known_epoch();
    };
    const NodeId self = request.node_id();
    for (const auto& [id, e] : nodes_) {
      if (id != self && IsLive(e.info.state) && e.info.address == request.address()) {
        return absl::AlreadyExistsError(absl::StrCat("address ", request.address(),
                                                     " is already node ", id, " (",
                                                     NodeStateText(e.info.state), ")"));
      }
    }
    auto fill = [&](NodeEntry& e) {
      e.info.address = request.address();
      e.info.data_address = request.data_address();
      e.info.tenant_data_address = request.tenant_data_address();
      e.info.http_address = request.http_address();
      e.info.failure_domain = request.failure_domain();
      e.info.capacity_bytes = request.capacity_bytes();
      e.tiers.assign(request.tiers().begin(), request.tiers().end());
      e.device_bytes = std::min(request.device_bytes(), request.capacity_bytes());
      e.lease_deadline = now + options_.lease;
      e.reported = false;
    };
    NodeId id = self;
    if (self == kNoNode) {
      if (recovering_) {
        return absl::UnavailableError(
            "coordinator restarted and is waiting for known nodes to re-join; retry later");
      }
      if (LiveNodesLocked() >= options_.max_nodes) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the cluster already has ", options_.max_nodes, " nodes"));
      }
      const ClusterMap before = BuildMapLocked();
      move_past_known_epoch();
      if (absl::Status s = BumpEpochLocked(); !s.ok()) {
        epoch_ = epoch_before;
        return s;
      }
      id = next_id_++;
      NodeEntry& e = nodes_[id];
      e.info.id = id;
      e.info.state = NodeState::kJoining;
      fill(e);
      KVF_LOG(INFO) << "coordinator: epoch " << epoch_ << ": node " << id << " ("
                    << request.address() << ") joining";
      PublishLocked();
      PlanLocked(before, BuildMapLocked(), id);
      FlipFinishedLocked();
    } else if (NodeEntry* e = FindLocked(self); e == nullptr) {
      // Soft state: after a restart, agents re-join with the ids they had.
      if (!recovering_) {
        return absl::NotFoundError(
            absl::StrCat("unknown node id ", self, "; join without an id to get a new one"));
      }
      if (LiveNodesLocked() >= options_.max_nodes) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the cluster already has ", options_.max_nodes, " nodes"));
      }
      move_past_known_epoch();
      if (absl::Status s = BumpEpochLocked(); !s.ok()) {
        epoch_ = epoch_before;
        return s;
      }
      NodeEntry& n = nodes_[self];
      n.info.id = self;
      n.info.state = NodeState::kActive;
      fill(n);
      next_id_ = std::max(next_id_, self + 1);
      KVF_LOG(INFO) << "coordinator: epoch " << epoch_ << ": node " << self
                    << " re-joined after a coordinator restart";
      PublishLocked();
    } else if (e->info.state != NodeState::kDown) {
      if (e->info.state == NodeState::kLeft) {
        return CheckTransition(self, NodeState::kLeft, NodeState::kActive);
      }
      return absl::AlreadyExistsError(
          absl::StrCat("node ", self, " is ", NodeStateText(e->info.state),
                       "; a node re-joins with its id only once it is down"));
    } else {
      NodeEntry saved = *e;
      fill(*e);
      e->info.state = NodeState::kDown;
      move_past_known_epoch();
      absl::Status s = TransitionLocked(self, NodeState::kActive, Plan::kMigrate);
      if (!s.ok()) {
        *FindLocked(self) = std::move(saved);
        epoch_ = epoch_before;
        return s;
      }
    }
    response.set_node_id(id);
    *response.mutable_map() = *history_.back();
    response.set_lease_ms(static_cast<uint64_t>(absl::ToInt64Milliseconds(options_.lease)));
  }
  DeliverPendingTasks();
  return response;
}

std::optional<absl::Duration> CoordinatorService::ComputeCutoffLocked() const {
  std::vector<NodeUsage> usage;
  for (const auto& [id, e] : nodes_) {
    if (!IsLive(e.info.state) || !e.reported) continue;
    NodeUsage u;
    u.capacity_bytes = e.capacity();
    u.used_bytes = e.used_bytes;
    u.ages = e.ages;
    usage.push_back(u);
  }
  if (usage.empty()) return std::nullopt;
  return ComputeEvictionCutoff(usage, options_.watermarks);
}

absl::StatusOr<proto::HeartbeatResponse> CoordinatorService::Heartbeat(
    const proto::HeartbeatRequest& request) {
  if (request.used_bytes() > options_.max_capacity_bytes ||
      request.capacity_bytes() > options_.max_capacity_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("used_bytes/capacity_bytes over ",
                                                   options_.max_capacity_bytes));
  }
  const int buckets = request.ages().bytes_size();
  if (buckets != 0 && buckets != AgeHistogram::kBuckets) {
    return absl::InvalidArgumentError(absl::StrCat("age histogram has ", buckets,
                                                   " buckets; expected 0 or ",
                                                   AgeHistogram::kBuckets));
  }
  AgeHistogram ages;
  for (int b = 0; b < buckets; ++b) {
    if (request.ages().bytes(b) > options_.max_capacity_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("age histogram bucket ", b, " over ",
                                                     options_.max_capacity_bytes, " bytes"));
    }
    ages.bytes[b] = request.ages().bytes(b);
  }
  const absl::Time now = Now();
  proto::HeartbeatResponse response;
  {
    absl::MutexLock lock(&mu_);
    KVF_ASSIGN_OR_RETURN(NodeEntry * e, LookupLocked(request.node_id()));
    if (!IsLive(e->info.state)) {
      return absl::FailedPreconditionError(
          absl::StrCat("node ", request.node_id(), " is ", NodeStateText(e->info.state),
                       e->info.state == NodeState::kDown ? "; re-join with its id" : ""));
    }
    KVF_RETURN_IF_ERROR(ValidateProgress(request.node_id(), request.tasks()));
    e->lease_deadline = now + options_.lease;
    e->reported = true;
    e->used_bytes = request.used_bytes();
    e->reported_capacity = request.capacity_bytes();
    e->ages = ages;
    ++counters_.heartbeats;
    const absl::Time deadline = e->lease_deadline;
    ApplyProgressLocked(request.node_id(), request.tasks());
    FlipFinishedLocked();
    std::optional<absl::Duration> cutoff = ComputeCutoffLocked();
    counters_.eviction_cutoff = cutoff;
    response.set_epoch(epoch_);
    const NodeEntry* self = FindLocked(request.node_id());
    if (cutoff) {
      // The cutoff comes from every node's last report, some of them a
      // heartbeat old; the floor makes a node that has since freed space
      // (or never filled) keep what it holds.
      response.set_eviction_cutoff_ms(static_cast<uint64_t>(absl::ToInt64Milliseconds(*cutoff)));
      response.set_eviction_keep_bytes(static_cast<uint64_t>(
          static_cast<long double>(options_.watermarks.low) * self->capacity()));
    }
    response.set_lease_deadline_unix_ms(absl::ToUnixMillis(deadline));
    response.set_lease_ms(static_cast<uint64_t>(absl::ToInt64Milliseconds(options_.lease)));
    response.set_state(NodeStateToProto(self->info.state));
  }
  DeliverPendingTasks(request.node_id());
  return response;
}

proto::MembershipResponse CoordinatorService::MembershipLocked(NodeId id) {
  proto::MembershipResponse r;
  r.set_epoch(epoch_);
  for (const proto::Node& n : history_.back()->nodes()) {
    if (n.id() == id) *r.mutable_node() = n;
  }
  return r;
}

absl::StatusOr<proto::MembershipResponse> CoordinatorService::Drain(NodeId id) {
  proto::MembershipResponse r;
  {
    absl::MutexLock lock(&mu_);
    KVF_RETURN_IF_ERROR(LookupLocked(id).status());
    KVF_RETURN_IF_ERROR(TransitionLocked(id, NodeState::kDraining, Plan::kMigrate));
    r = MembershipLocked(id);
  }
  DeliverPendingTasks();
  return r;
}

absl::StatusOr<proto::MembershipResponse> CoordinatorService::Undrain(NodeId id) {
  absl::MutexLock lock(&mu_);
  KVF_ASSIGN_OR_RETURN(NodeEntry * e, LookupLocked(id));
  if (e->info.state != NodeState::kDraining) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", id, " is ", NodeStateText(e->info.state), ": only a draining node can undrain"));
  }
  KVF_RETURN_IF_ERROR(TransitionLocked(id, NodeState::kActive, Plan::kNone));
  // The drain's tasks are no longer needed (unless another change wants them).
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    auto& causes = it->second.causes;
    causes.erase(std::remove(causes.begin(), causes.end(), id), causes.end());
    if (causes.empty()) {
      ++counters_.tasks_cancelled;
      it = tasks_.erase(it);
    } else {
      ++it;
    }
  }
  FlipFinishedLocked();
  return MembershipLocked(id);
}

absl::StatusOr<proto::MembershipResponse> CoordinatorService::Leave(NodeId id) {
  proto::MembershipResponse r;
  {
    absl::MutexLock lock(&mu_);
    KVF_RETURN_IF_ERROR(LookupLocked(id).status());
    KVF_RETURN_IF_ERROR(TransitionLocked(id, NodeState::kLeft, Plan::kMigrate));
    r = MembershipLocked(id);
  }
  DeliverPendingTasks();
  return r;
}

void CoordinatorService::Tick() {
  const absl::Time now = Now();
  {
    absl::MutexLock lock(&mu_);
    if (recovering_ && now >= started_ + options_.lease) recovering_ = false;
    if (!roster_saved_) SaveRosterLocked();
    std::vector<NodeId> expired;
    for (const auto& [id, e] : nodes_) {
      if (IsLive(e.info.state) && now > e.lease_deadline) expired.push_back(id);
    }
    for (NodeId id : expired) {
      NodeEntry* e = FindLocked(id);
      if (e == nullptr || !IsLive(e->info.state)) continue;  // flipped meanwhile
      KVF_LOG(WARNING) << "coordinator: node " << id << " missed its lease";
      absl::Status s = TransitionLocked(id, NodeState::kDown, Plan::kMigrate);
      if (!s.ok()) {
        KVF_LOG(ERROR) << "coordinator: cannot mark node " << id << " down: " << s;
      }
    }
    FlipFinishedLocked();
  }
  DeliverPendingTasks();
}

std::shared_ptr<const proto::ClusterMap> CoordinatorService::GetClusterMap() const {
  absl::MutexLock lock(&mu_);
  return history_.back();
}

ClusterMap CoordinatorService::CurrentMap() const {
  absl::MutexLock lock(&mu_);
  return BuildMapLocked();
}

uint64_t CoordinatorService::epoch() const {
  absl::MutexLock lock(&mu_);
  return epoch_;
}

std::vector<std::shared_ptr<const proto::ClusterMap>> CoordinatorService::WaitForMaps(
    uint64_t after_epoch, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto ready = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return shutdown_ || history_.back()->epoch() > after_epoch;
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (shutdown_ || history_.back()->epoch() <= after_epoch) return {};
  const uint64_t front = history_.front()->epoch();
  if (after_epoch == 0 || front > after_epoch + 1) return {history_.back()};
  // Epochs in the history may skip (a join that moved past an epoch its node
  // knew), so the first newer map is searched for, not computed.
  auto first = std::upper_bound(
      history_.begin(), history_.end(), after_epoch,
      [](uint64_t epoch, const std::shared_ptr<const proto::ClusterMap>& map) {
        return epoch < map->epoch();
      });
  return {first, history_.end()};
}

void CoordinatorService::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
}

bool CoordinatorService::shutting_down() const {
  absl::MutexLock lock(&mu_);
  return shutdown_;
}

CoordinatorStats CoordinatorService::Stats() const {
  absl::MutexLock lock(&mu_);
  CoordinatorStats s = counters_;
  s.epoch = epoch_;
  for (const auto& [id, e] : nodes_) {
    ++s.nodes_by_state[static_cast<int>(e.info.state)];
    if (IsLive(e.info.state)) {
      s.capacity_bytes += e.info.capacity_bytes;
      s.used_bytes += e.used_bytes;
    }
  }
  s.tasks_outstanding = tasks_.size();
  return s;
}

}  // namespace kvf
