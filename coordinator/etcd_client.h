// EtcdClient: the few etcd v3 calls the coordinators need (proto/etcd/, the
// published API over the project's gRPC): Range, Put, DeleteRange and Txn on
// keys, lease grant, revoke and keep-alive, Maintenance.Status, and a watch
// of one key that survives broken streams and etcd restarts.
//
// Endpoints are etcd client addresses (host:port, no scheme; "http://" is
// stripped). Calls go to one endpoint at a time; a call that fails with
// UNAVAILABLE or DEADLINE_EXCEEDED moves the next call to the next endpoint.
// Nothing is retried inside a call: the caller decides (an epoch write must
// not be sent twice blindly).
//
// Errors: etcd's gRPC status as the same absl code, the message prefixed with
// "etcd <endpoint> <call>: ". Unreachable etcd is UNAVAILABLE.
//
// Thread-safety: every method is thread-safe.
#ifndef KVF_COORDINATOR_ETCD_CLIENT_H_
#define KVF_COORDINATOR_ETCD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/etcd/rpc.grpc.pb.h"

namespace kvf {

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

// The outcome of the last call, for health reporting.
struct EtcdHealth {
  bool ok = false;             // the last call succeeded
  std::string error;           // the last failure, when !ok
  std::string endpoint;        // the endpoint calls go to now
  int64_t revision = 0;        // the newest store revision seen in a response
};

class EtcdWatch;

class EtcdClient {
 public:
  // `endpoints`: a comma-separated list. INVALID_ARGUMENT when empty. Does
  // not contact etcd.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(const std::string& endpoints,
                                                            absl::Duration timeout);
  ~EtcdClient();

  const std::vector<std::string>& endpoints() const { return endpoints_; }
  absl::Duration timeout() const { return timeout_; }

  // The key, or nullopt when absent. `revision`, when given, gets the
  // store's revision at the read.
  absl::StatusOr<std::optional<EtcdKeyValue>> Get(const std::string& key,
                                                  int64_t* revision = nullptr);
  // Returns the revision of the write.
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                              int64_t lease = 0);
  // Every key starting with `prefix`. Returns how many were deleted.
  absl::StatusOr<int64_t> DeletePrefix(const std::string& prefix);
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request);

  // A lease of `ttl` (rounded up to whole seconds, at least 1). Returns its id.
  absl::StatusOr<int64_t> GrantLease(absl::Duration ttl);
  absl::Status RevokeLease(int64_t id);
  // One LeaseKeepAlive exchange (a short-lived stream). Returns the lease's
  // new TTL in seconds; <= 0 means it had expired.
  absl::StatusOr<int64_t> KeepAliveOnce(int64_t id);

  // Maintenance.Status of the current endpoint.
  absl::StatusOr<etcdserverpb::StatusResponse> Status();

  // Calls `on_event` (on the watch's own thread) for every change of `key`
  // with a revision >= `start_revision`, in order, until the returned watch is
  // destroyed. A broken stream is re-opened where it stopped (after a short
  // pause, trying the next endpoint); if etcd compacted past that point the
  // watch reads the key and reports its current value as a PUT (or a DELETE
  // when absent), then carries on.
  std::unique_ptr<EtcdWatch> Watch(const std::string& key, int64_t start_revision,
                                   std::function<void(const mvccpb::Event&)> on_event);

  EtcdHealth health() const;

  // Compare helpers for Txn.
  static etcdserverpb::Compare CreateRevisionIs(const std::string& key, int64_t revision);
  static etcdserverpb::Compare ModRevisionIs(const std::string& key, int64_t revision);

 private:
  friend class EtcdWatch;
  struct Endpoint;
  EtcdClient(std::vector<std::string> endpoints, absl::Duration timeout);

  // The endpoint calls go to now.
  std::shared_ptr<Endpoint> Current() const;
  // Converts a call's outcome; on UNAVAILABLE/DEADLINE moves to the next
  // endpoint. Records health.
  absl::Status Finish(const Endpoint& ep, const char* call, const grpc::Status& s,
                      int64_t revision = 0);
  void SetDeadline(grpc::ClientContext* ctx) const;

  const std::vector<std::string> endpoints_;
  const absl::Duration timeout_;
  std::vector<std::shared_ptr<Endpoint>> channels_;

  mutable absl::Mutex mu_;
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
  EtcdHealth health_ ABSL_GUARDED_BY(mu_);
};

// A running watch (EtcdClient::Watch). Destruction stops it and waits for the
// thread; no callback runs after it returns.
class EtcdWatch {
 public:
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

 private:
  friend class EtcdClient;
  EtcdWatch(EtcdClient* client, std::string key, int64_t start_revision,
            std::function<void(const mvccpb::Event&)> on_event);
  void Loop();
  // Reads the key after a compaction; returns the revision to go on from.
  int64_t Resync();

  EtcdClient* const client_;
  const std::string key_;
  const std::function<void(const mvccpb::Event&)> on_event_;
  int64_t next_revision_;  // watch thread only

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

}  // namespace kvf

#endif  // KVF_COORDINATOR_ETCD_CLIENT_H_
