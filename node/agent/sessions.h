// Who is on the other end of a data-plane frame (docs/security.md).
//
// Every connection starts with a HelloRequest carrying a credential; the
// agent answers with a random 64-bit session id that every later frame
// carries in its header. A session is bound to what the credential proved:
//
//   role agent, cluster token  → any frame, any tenant (peers, migration)
//   role client, cluster token → any tenant's namespaces, no agent-only frames
//                                (the operator's tools, kvf-bench)
//   role client, tenant credential → that tenant's namespaces only, within the
//                                tenant's resource limits
//
// Sessions are bounded in number (per tenant and in all) and forgotten after
// idling for `idle_ttl`; the sender then gets UNAUTHENTICATED and says hello
// again. Session ids are unguessable but travel in clear over the fabric: a
// sniffer on the data network can use one until it idles out (the threat
// model in docs/security.md).
//
// Thread-safe.
#ifndef KVF_NODE_AGENT_SESSIONS_H_
#define KVF_NODE_AGENT_SESSIONS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cluster_map.h"
#include "protocol/frames.h"

namespace kvf {

struct Session {
  protocol::PeerRole role = protocol::PeerRole::kClient;
  bool cluster = false;  // proved the cluster token
  std::string tenant;    // a tenant credential's tenant ("" with the token)
  NodeId node = kNoNode; // agents: the node id they said hello with

  bool is_agent() const { return role == protocol::PeerRole::kAgent; }
  // Whether this session may touch namespaces of `tenant`.
  bool MayUse(const std::string& ns_tenant) const { return cluster || ns_tenant == tenant; }
};

// The resources one tenant's clients may hold on one agent (cluster-token
// sessions are not limited); enforced by the data plane.
struct TenantLimits {
  size_t namespaces = 256;
  size_t read_leases = 4096;     // batch leases of Get, until released or expired
  size_t reservations = 16384;   // reserved, not yet committed blocks
};

enum class LimitedResource { kSessions, kNamespaces, kReadLeases, kReservations };
inline constexpr int kNumLimitedResources = 4;
std::string_view LimitedResourceName(LimitedResource r);

struct SessionLimits {
  size_t max_sessions = 1 << 16;
  size_t max_sessions_per_tenant = 1024;
  absl::Duration idle_ttl = absl::Minutes(10);
};

class SessionTable {
 public:
  // Hellos may prove `cluster_token` or any of `previous_tokens` (rotation).
  SessionTable(std::string cluster_token, std::vector<std::string> previous_tokens,
               SessionLimits limits);

  // Checks the hello's credential and opens a session. UNAUTHENTICATED for a
  // wrong credential or an agent role without the cluster token;
  // RESOURCE_EXHAUSTED when the tenant (or the agent) has too many sessions.
  absl::StatusOr<uint64_t> Open(const protocol::HelloRequest& hello);

  // The session `id` names, refreshing its idle clock. UNAUTHENTICATED when
  // unknown or expired. Shared, so the per-frame lookup copies no strings.
  absl::StatusOr<std::shared_ptr<const Session>> Find(uint64_t id);

  // Forgets sessions idle past the limit.
  void Expire();

  size_t size() const;
  const std::string& cluster_token() const { return tokens_.front(); }
  const SessionLimits& limits() const { return limits_; }
  uint64_t refused_hellos() const;

 private:
  struct Entry {
    std::shared_ptr<const Session> session;
    absl::Time last_used;
  };

  const std::vector<std::string> tokens_;  // the current one first
  const SessionLimits limits_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Entry> sessions_ ABSL_GUARDED_BY(mu_);
  // Open sessions per tenant credential (cluster sessions count under "*").
  absl::flat_hash_map<std::string, size_t> per_tenant_ ABSL_GUARDED_BY(mu_);
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_SESSIONS_H_
