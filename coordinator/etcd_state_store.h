// EtcdStateStore: the coordinator's state in etcd, written by the elected
// leader only (docs/coordinator.md, "Several coordinators").
//
// Keys under the cluster's prefix P (--etcd_prefix):
//   P/epoch   the last epoch taken, in decimal (etcdctl get shows it)
//   P/state   a serialized proto::CoordinatorState: the last published map
//             (every node record and its state) and the id counters
//   P/leader  the election key (coordinator/leader_election.h): the leader's
//             address, attached to its lease
//
// Epochs advance by transactions: Save(N) puts P/epoch only if its
// mod_revision is still the one this store last read or wrote, AND P/leader's
// create_revision is this leader's term. So a stale leader (its lease ran out,
// another was elected) cannot take an epoch, and two coordinators can never
// publish two maps for one epoch. SaveRoster is fenced the same way. A fenced
// write returns UNAVAILABLE ("not the leader any more ...") and calls
// `on_fenced` once, so the owner steps down.
//
// Not thread-safe (StateStore's contract: the coordinator's lock).
#ifndef KVF_COORDINATOR_ETCD_STATE_STORE_H_
#define KVF_COORDINATOR_ETCD_STATE_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "coordinator/etcd_client.h"
#include "coordinator/state_store.h"

namespace kvf {

std::string EtcdEpochKey(const std::string& prefix);
std::string EtcdStateKey(const std::string& prefix);
std::string EtcdLeaderKey(const std::string& prefix);

class EtcdStateStore final : public StateStore {
 public:
  // `etcd` is not owned and must outlive the store. `term`: the create
  // revision of the leader key this coordinator holds.
  EtcdStateStore(EtcdClient* etcd, std::string prefix, int64_t term,
                 std::function<void(const absl::Status&)> on_fenced = nullptr);

  absl::StatusOr<uint64_t> Load() const override;
  absl::Status Save(uint64_t epoch) override;
  absl::StatusOr<std::optional<std::string>> LoadRoster() const override;
  absl::Status SaveRoster(const std::string& bytes) override;
  std::string Describe() const override { return "etcd " + prefix_; }

  int64_t term() const { return term_; }

 private:
  // Why the guarded write failed, from the failure branch's reads; calls
  // on_fenced_ the first time.
  absl::Status Fenced(const etcdserverpb::TxnResponse& response, const char* what);

  EtcdClient* const etcd_;
  const std::string prefix_;
  const int64_t term_;
  const std::function<void(const absl::Status&)> on_fenced_;
  // P/epoch's mod_revision as last read or written; -1: not read yet.
  mutable int64_t epoch_revision_ = -1;
  bool fenced_ = false;
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_ETCD_STATE_STORE_H_
