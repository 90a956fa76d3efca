#include "coordinator/leader_election.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kvf {
namespace {

// How long etcd keeps a lease we asked `ttl` for (whole seconds, >= 1).
absl::Duration EtcdTtl(absl::Duration ttl) {
  return std::max(absl::Seconds(1), absl::Ceil(ttl, absl::Seconds(1)));
}

}  // namespace

LeaderElection::LeaderElection(EtcdClient* etcd, ElectionOptions options)
    : etcd_(etcd), options_(std::move(options)) {}

void LeaderElection::Start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kvf-election");
    Loop();
  });
}

LeaderElection::~LeaderElection() { Stop(true); }

void LeaderElection::Stop(bool resign) {
  {
    absl::MutexLock lock(&mu_);
    if (!stop_) resign_ = resign;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void LeaderElection::StepDown(const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  if (!leader_) return;
  KVF_LOG(WARNING) << "coordinator: stepping down: " << why.message();
  step_down_ = true;
}

bool LeaderElection::is_leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

int64_t LeaderElection::term() const {
  absl::MutexLock lock(&mu_);
  return leader_ ? term_ : 0;
}

std::string LeaderElection::leader() const {
  absl::MutexLock lock(&mu_);
  return leader_address_;
}

absl::Time LeaderElection::leader_since() const {
  absl::MutexLock lock(&mu_);
  return leader_since_;
}

bool LeaderElection::WaitStop(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  auto wake = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_ || step_down_; };
  mu_.AwaitWithTimeout(absl::Condition(&wake), d);
  return stop_;
}

void LeaderElection::Lose(const std::string& why) {
  KVF_LOG(WARNING) << "coordinator: lost the leadership (term " << term() << "): " << why;
  {
    absl::MutexLock lock(&mu_);
    leader_ = false;
    step_down_ = false;
    term_ = 0;
    leader_address_.clear();
  }
  if (options_.on_lost) options_.on_lost();
  // Revoke the old lease (best effort) so its key, if it is still there, goes
  // now; the next campaign takes a fresh lease.
  if (lease_ != 0 && !etcd_->RevokeLease(lease_).ok()) stale_lease_ = lease_;
  lease_ = 0;
}

void LeaderElection::Campaign() {
  if (stale_lease_ != 0) {
    if (!etcd_->RevokeLease(stale_lease_).ok()) return;  // etcd still away
    stale_lease_ = 0;
  }
  const absl::Time now = absl::Now();
  if (lease_ == 0 || now >= lease_valid_until_) {
    if (lease_ != 0) (void)etcd_->RevokeLease(lease_);
    lease_ = 0;
    const absl::Time sent = absl::Now();
    absl::StatusOr<int64_t> lease = etcd_->GrantLease(options_.ttl);
    if (!lease.ok()) return;
    lease_ = *lease;
    lease_valid_until_ = sent + EtcdTtl(options_.ttl);
    last_renewal_ = sent;
  } else if (now - last_renewal_ >= options_.ttl / 4) {
    // A follower keeps its lease alive too, so a campaign never puts the key
    // with a lease about to expire.
    const absl::Time sent = absl::Now();
    absl::StatusOr<int64_t> ttl = etcd_->KeepAliveOnce(lease_);
    if (!ttl.ok()) return;
    if (*ttl <= 0) {
      lease_ = 0;
      return;
    }
    lease_valid_until_ = sent + EtcdTtl(options_.ttl);
    last_renewal_ = sent;
  }
  etcdserverpb::TxnRequest txn;
  *txn.add_compare() = EtcdClient::CreateRevisionIs(options_.key, 0);
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(options_.key);
  put->set_value(options_.candidate);
  put->set_lease(lease_);
  txn.add_failure()->mutable_request_range()->set_key(options_.key);
  absl::StatusOr<etcdserverpb::TxnResponse> r = etcd_->Txn(txn);
  if (!r.ok()) return;
  int64_t term = 0;
  if (r->succeeded()) {
    term = r->header().revision();  // the put's revision: the key's create revision
  } else {
    const etcdserverpb::RangeResponse& range = r->responses(0).response_range();
    if (range.kvs_size() == 0) return;  // gone meanwhile: try again
    const mvccpb::KeyValue& kv = range.kvs(0);
    if (kv.lease() == lease_ && kv.value() == options_.candidate) {
      // Our own key from before a step-down that could not revoke the lease
      // (etcd was out of reach): the lease is alive, nobody else can lead.
      term = kv.create_revision();
    } else {
      absl::MutexLock lock(&mu_);
      leader_address_ = kv.value();
      return;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;  // the loop resigns
    leader_ = true;
    step_down_ = false;
    term_ = term;
    leader_address_ = options_.candidate;
    leader_since_ = absl::Now();
  }
  KVF_LOG(WARNING) << "coordinator: " << options_.candidate << " is the leader (term " << term
                   << ")";
  if (options_.on_elected) options_.on_elected(term);
}

bool LeaderElection::Renew() {
  {
    absl::MutexLock lock(&mu_);
    if (step_down_) {
      return false;
    }
  }
  const absl::Time now = absl::Now();
  if (now - last_renewal_ >= options_.ttl / 4) {
    const absl::Time sent = now;
    absl::StatusOr<int64_t> ttl = etcd_->KeepAliveOnce(lease_);
    if (ttl.ok() && *ttl <= 0) {
      lease_ = 0;
      Lose("the lease expired in etcd");
      return false;
    }
    if (ttl.ok()) {
      // Is the key still ours? (An operator may have deleted it.)
      absl::StatusOr<std::optional<EtcdKeyValue>> kv = etcd_->Get(options_.key);
      if (kv.ok() && (!*kv || (*kv)->create_revision != term())) {
        Lose(*kv ? absl::StrCat("the leader key is now ", (*kv)->value) : "the leader key is gone");
        return false;
      }
      lease_valid_until_ = sent + EtcdTtl(options_.ttl);
      last_renewal_ = sent;
    }
  }
  // etcd out of reach: stop before etcd could let anyone else in. A small
  // margin covers the time a write in flight still takes.
  if (absl::Now() >= lease_valid_until_ - absl::Milliseconds(100)) {
    Lose("etcd out of reach for the lease's whole TTL");
    return false;
  }
  return true;
}

void LeaderElection::Loop() {
  for (;;) {
    bool leader;
    {
      absl::MutexLock lock(&mu_);
      leader = leader_;
      if (stop_) break;
    }
    if (leader) {
      if (!Renew()) {
        bool stepped;
        {
          absl::MutexLock lock(&mu_);
          stepped = leader_ && step_down_;
        }
        if (stepped) Lose("a fenced write");
        continue;
      }
      WaitStop(std::max(absl::Milliseconds(20), options_.ttl / 16));
    } else {
      Campaign();
      WaitStop(options_.retry);
    }
  }
  bool leader, resign;
  {
    absl::MutexLock lock(&mu_);
    leader = leader_;
    resign = resign_;
  }
  if (leader) {
    if (resign) {
      // Delete the key only if it is still ours, then drop the lease.
      etcdserverpb::TxnRequest txn;
      *txn.add_compare() = EtcdClient::CreateRevisionIs(options_.key, term());
      txn.add_success()->mutable_request_delete_range()->set_key(options_.key);
      (void)etcd_->Txn(txn);
    }
    {
      absl::MutexLock lock(&mu_);
      leader_ = false;
      term_ = 0;
    }
    if (options_.on_lost) options_.on_lost();
  }
  if (resign && lease_ != 0) (void)etcd_->RevokeLease(lease_);
}

}  // namespace kvf
