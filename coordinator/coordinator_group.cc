#include "coordinator/coordinator_group.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "coordinator/etcd_state_store.h"
#include "proto/coordinator_state.pb.h"

namespace kvf {
namespace {

// Task ids a new leader skips: the one before it may have handed out ids it
// never managed to save, and agents de-duplicate tasks by id.
constexpr uint64_t kTaskIdGap = uint64_t{1} << 20;

}  // namespace

CoordinatorGroup::CoordinatorGroup(EtcdClient* etcd, CoordinatorGroupOptions options)
    : etcd_(etcd), options_(std::move(options)), feed_(options_.core.map_history) {}

absl::StatusOr<std::unique_ptr<CoordinatorGroup>> CoordinatorGroup::Create(
    EtcdClient* etcd, CoordinatorGroupOptions options) {
  if (options.prefix.empty() || options.prefix.back() == '/' || options.prefix.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd prefix '", options.prefix, "' must start with / and not end with one"));
  }
  if (options.election_ttl < absl::Seconds(1)) {
    return absl::InvalidArgumentError("the election TTL must be at least 1 s (etcd leases)");
  }
  return std::unique_ptr<CoordinatorGroup>(new CoordinatorGroup(etcd, std::move(options)));
}

std::string CoordinatorGroup::self() const {
  absl::MutexLock lock(&mu_);
  return self_;
}

absl::Status CoordinatorGroup::Start(const std::string& self) {
  if (self.empty()) return absl::InvalidArgumentError("the group needs this member's address");
  {
    absl::MutexLock lock(&mu_);
    if (election_ != nullptr || shut_down_) return absl::FailedPreconditionError("started twice");
    self_ = self;
  }
  const std::string state_key = EtcdStateKey(options_.prefix);
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  int64_t revision = 0;
  absl::StatusOr<std::optional<EtcdKeyValue>> state;
  for (;;) {
    state = etcd_->Get(state_key, &revision);
    if (state.ok() || absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  if (!state.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot read the cluster state from etcd: ", state.status().message()));
  }
  if (*state) {
    proto::CoordinatorState parsed;
    if (!parsed.ParseFromString((*state)->value)) {
      return absl::DataLossError(
          absl::StrCat("etcd ", state_key, " does not hold a coordinator state"));
    }
    feed_.Install(std::make_shared<proto::ClusterMap>(parsed.map()));
  }
  watch_ = etcd_->Watch(state_key, revision + 1,
                        [this](const mvccpb::Event& e) { OnStateEvent(e); });
  ElectionOptions eo;
  eo.key = EtcdLeaderKey(options_.prefix);
  eo.candidate = self;
  eo.ttl = options_.election_ttl;
  eo.retry = options_.campaign_retry;
  eo.on_elected = [this](int64_t term) { BecomeLeader(term); };
  eo.on_lost = [this] { BecomeFollower(); };
  auto election = std::make_unique<LeaderElection>(etcd_, std::move(eo));
  LeaderElection* e = election.get();
  {
    absl::MutexLock lock(&mu_);
    election_ = std::move(election);
  }
  e->Start();
  return absl::OkStatus();
}

CoordinatorGroup::~CoordinatorGroup() { Shutdown(true); }

void CoordinatorGroup::OnStateEvent(const mvccpb::Event& event) {
  if (event.type() != mvccpb::Event::PUT) return;
  proto::CoordinatorState state;
  if (!state.ParseFromString(event.kv().value())) {
    KVF_LOG(ERROR) << "coordinator: etcd " << event.kv().key()
                   << " does not hold a coordinator state; ignored";
    return;
  }
  feed_.Install(std::make_shared<proto::ClusterMap>(state.map()));
}

void CoordinatorGroup::BecomeLeader(int64_t term) {
  LeaderElection* election = election_.get();
  auto store = std::make_shared<EtcdStateStore>(
      etcd_, options_.prefix, term,
      [election](const absl::Status& why) { election->StepDown(why); });
  CoordinatorOptions o = options_.core;
  o.state_dir.clear();
  o.store = store;
  o.task_id_gap = kTaskIdGap;
  MapFeed* feed = &feed_;
  o.on_publish = [feed](std::shared_ptr<const proto::ClusterMap> map) {
    feed->Install(std::move(map));
  };
  absl::StatusOr<std::unique_ptr<CoordinatorService>> core = CoordinatorService::Create(o);
  if (!core.ok()) {
    KVF_LOG(ERROR) << "coordinator: elected (term " << term
                   << ") but cannot start from the state in etcd: " << core.status();
    election->StepDown(core.status());
    return;
  }
  KVF_LOG(WARNING) << "coordinator: leading at epoch " << (*core)->epoch() << " (term " << term
                   << ")";
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  core_ = std::move(*core);
}

void CoordinatorGroup::BecomeFollower() {
  std::shared_ptr<CoordinatorService> old;
  {
    absl::MutexLock lock(&mu_);
    old = std::move(core_);
  }
  if (old) old->Shutdown();
}

std::shared_ptr<CoordinatorService> CoordinatorGroup::Leader(std::string* leader) const {
  {
    absl::MutexLock lock(&mu_);
    if (core_ != nullptr) {
      if (leader != nullptr) *leader = self_;
      return core_;
    }
    if (leader == nullptr) return nullptr;
    leader->clear();
    if (election_ == nullptr) return nullptr;
  }
  *leader = election_->leader();
  // Elected but not serving yet (loading the state): no redirect to self.
  if (*leader == self()) leader->clear();
  return nullptr;
}

void CoordinatorGroup::Tick() {
  if (std::shared_ptr<CoordinatorService> core = Leader()) core->Tick();
}

void CoordinatorGroup::Shutdown(bool resign) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  feed_.Shutdown();
  LeaderElection* election;
  {
    absl::MutexLock lock(&mu_);
    election = election_.get();
  }
  if (election) election->Stop(resign);
  BecomeFollower();
  watch_.reset();
}

proto::CoordinatorStatusResponse CoordinatorGroup::Status() const {
  proto::CoordinatorStatusResponse r;
  std::string leader;
  const bool leading = Leader(&leader) != nullptr;
  r.set_role(leading ? proto::CoordinatorStatusResponse::ROLE_LEADER
                     : proto::CoordinatorStatusResponse::ROLE_FOLLOWER);
  r.set_address(self());
  r.set_leader_address(leader);
  r.set_epoch(feed_.epoch());
  for (const std::string& e : etcd_->endpoints()) r.add_etcd_endpoints(e);
  absl::StatusOr<etcdserverpb::StatusResponse> st = etcd_->Status();
  if (st.ok()) {
    r.set_etcd_healthy(st->errors_size() == 0);
    r.set_etcd_version(st->version());
    r.set_etcd_revision(st->header().revision());
    if (st->errors_size() > 0) r.set_etcd_error(st->errors(0));
  } else {
    r.set_etcd_healthy(false);
    r.set_etcd_error(std::string(st.status().message()));
  }
  if (leading) {
    absl::MutexLock lock(&mu_);
    r.set_leader_since_unix_ms(absl::ToUnixMillis(election_->leader_since()));
    r.set_leader_term(static_cast<uint64_t>(election_->term()));
  }
  return r;
}

CoordinatorStats CoordinatorGroup::Stats() const {
  if (std::shared_ptr<CoordinatorService> core = Leader()) return core->Stats();
  CoordinatorStats s;
  s.epoch = feed_.epoch();
  return s;
}

}  // namespace kvf
