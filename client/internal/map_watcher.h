// The client's view of the cluster map: fetched from kvf-coordinator over
// gRPC at Connect, kept current by a watch thread on WatchClusterMap (which
// reconnects when the stream breaks), and refreshed on demand when an agent
// answers WRONG_OWNER. Readers take an immutable snapshot (map + Placement).
//
// The address may list several coordinators, separated by commas (state in
// etcd, docs/coordinator.md "Several coordinators"). Every one of them serves
// the map, so a fetch that finds one unreachable tries the next, and the
// watch moves to the next when its stream breaks (at once the first time
// round the list, then after a pause).
//
// Thread-safety: all methods are safe from any thread.
#ifndef KVF_CLIENT_INTERNAL_MAP_WATCHER_H_
#define KVF_CLIENT_INTERNAL_MAP_WATCHER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cluster_map.h"
#include "common/placement.h"

namespace grpc {
class ClientContext;
}

namespace kvf::client_internal {

struct MapSnapshot {
  ClusterMap map;
  Placement placement;
};

class MapWatcher {
 public:
  // Fetches the first map (GetClusterMap, from the first coordinator that
  // answers) and starts the watch thread.
  // `tls_ca_file`: PEM roots to verify a TLS coordinator with; empty:
  // plaintext (proto/channel.h). Errors come back with the coordinator's code
  // (UNAUTHENTICATED for a wrong token, UNAVAILABLE for nobody listening or a
  // failed TLS handshake) and name the address; an unreadable CA file is
  // NOT_FOUND, one without a certificate INVALID_ARGUMENT.
  static absl::StatusOr<std::unique_ptr<MapWatcher>> Start(std::string address, std::string token,
                                                           const std::string& tls_ca_file,
                                                           absl::Duration rpc_timeout);
  ~MapWatcher();

  std::shared_ptr<const MapSnapshot> Current() const;

  // Fetches the map until its epoch is >= `min_epoch` or `deadline` passes.
  // OK when the snapshot now has such an epoch.
  absl::Status RefreshTo(uint64_t min_epoch, absl::Time deadline);

 private:
  struct Rpc;
  MapWatcher(std::string address, std::string token, absl::Duration rpc_timeout);
  // One GetClusterMap from the preferred coordinator; on UNAVAILABLE or a
  // timeout the next one becomes preferred.
  absl::Status FetchOnce(absl::Time deadline);
  // FetchOnce until one succeeds, every coordinator was tried, or `deadline`.
  absl::Status FetchAny(absl::Time deadline);
  // Installs `map` if it is newer than the current snapshot.
  absl::Status Install(ClusterMap map);
  void WatchLoop();

  const std::string address_;  // as given (for messages)
  const std::string token_;
  const absl::Duration rpc_timeout_;
  std::unique_ptr<Rpc> rpc_;

  mutable absl::Mutex mu_;
  size_t preferred_ ABSL_GUARDED_BY(mu_) = 0;  // index into rpc_'s stubs
  std::shared_ptr<const MapSnapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* watch_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread watcher_;
};

}  // namespace kvf::client_internal

#endif  // KVF_CLIENT_INTERNAL_MAP_WATCHER_H_
