// StateStore: where a coordinator keeps what must outlive it, the last epoch
// and the roster (a proto::CoordinatorState: the last published map and the id
// counters). Two implementations: EpochStore (coordinator/epoch_store.h, files
// in --state_dir; one coordinator) and EtcdStateStore
// (coordinator/etcd_state_store.h, keys in etcd written only by the elected
// leader; several coordinators).
//
// The contract CoordinatorService relies on: Save(epoch) happens before the
// change with that epoch is made, and an error refuses the change (so an
// epoch is never handed out twice, across restarts and leaders); SaveRoster
// happens after, and a failure is retried.
//
// Not thread-safe: the coordinator calls it under its own lock.
#ifndef KVF_COORDINATOR_STATE_STORE_H_
#define KVF_COORDINATOR_STATE_STORE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvf {

class StateStore {
 public:
  virtual ~StateStore() = default;

  // The last saved epoch; 0 when none was saved. DATA_LOSS when what is
  // stored is not an epoch.
  virtual absl::StatusOr<uint64_t> Load() const = 0;
  // Records `epoch` as taken. On error nothing changed and the caller must
  // not use the epoch.
  virtual absl::Status Save(uint64_t epoch) = 0;
  // The last saved roster's bytes; nullopt when none was saved.
  virtual absl::StatusOr<std::optional<std::string>> LoadRoster() const = 0;
  virtual absl::Status SaveRoster(const std::string& bytes) = 0;
  // Where the state lives, for messages: "state dir /var/lib/...",
  // "etcd /kvfabric/prod".
  virtual std::string Describe() const = 0;
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_STATE_STORE_H_
