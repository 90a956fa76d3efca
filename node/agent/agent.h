// kvf-agent: one shard agent (docs/design.md, "Shard agent"). Owns, in start
// order: the transport and its arena (the host tier, allocated by the
// transport so peers reach it with one-sided RMA), the shard store over that
// arena, the data plane, the replicator and migrator, the AgentControl gRPC
// service, the /metrics and /healthz endpoint, and the coordinator link
// (join, heartbeats, map watch). Shutdown() stops serving (requests get
// UNAVAILABLE), optionally leaves the cluster, and tears everything down in
// reverse order.
#ifndef KVF_NODE_AGENT_AGENT_H_
#define KVF_NODE_AGENT_AGENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster_map.h"

#include "node/agent/data_plane.h"

namespace kvf {

struct AgentOptions {
  std::string coordinator;                   // host:port; required
  std::string token;                         // the cluster token; required
  // Previous cluster tokens still accepted (a token file's further lines),
  // while the token is rotated (docs/security.md).
  std::vector<std::string> previous_tokens;
  std::string listen = "127.0.0.1:0";        // AgentControl gRPC; port 0 picks one
  std::string http_listen = "127.0.0.1:0";   // /metrics, /healthz; empty: off
  std::string failure_domain;                // rack/host/zone; empty: the host name
  uint64_t host_bytes = uint64_t{1} << 30;   // the host tier
  // Populate the whole host tier's arena at start-up, on a background thread
  // (MADV_POPULATE_WRITE, after MADV_HUGEPAGE), so that puts do not pay for
  // first touches of its pages. Commits host_bytes of RAM at start-up instead
  // of as blocks arrive. The agent serves while it runs (docs/agent.md,
  // "Arena prefault").
  bool prefault_arena = true;
  // The disk (SSD) tier: a directory and the bytes of the log file in it;
  // none when disk_path is empty (docs/shard-store.md, "Disk tier"). An agent
  // restarted over the same directory serves its immutable blocks again.
  std::string disk_path;
  uint64_t disk_bytes = 0;
  // The GPU tier (docs/agent.md, "GPU tier"): `device_bytes` of CUDA device
  // `device`'s memory in front of the host tier. device_bytes 0: none.
  // device_bytes > 0 needs device >= 0, a CUDA build and that device, or
  // Start fails (FAILED_PRECONDITION / INVALID_ARGUMENT): an operator who
  // asked for a GPU tier gets an error, not a host-only agent.
  int device = -1;
  uint64_t device_bytes = 0;
  // Memory pressure (node/agent/memory_pressure.h): the used fraction of the
  // machine's (or cgroup's) memory at which the host tier's usable bytes
  // shrink a step per maintenance tick, and below which they grow back.
  // high = 0: off. low = 0: high - 0.1.
  double memory_pressure_high = 0;
  double memory_pressure_low = 0;
  std::string eviction_policy = "lru";
  std::string ucx_tls;                       // empty: UCX chooses
  // The IP address (or host name) the UCX data plane listens on: UCX's TCP
  // transport opens a listening socket on each network device it uses, so
  // the agent restricts UCX to the interface(s) owning this address
  // (transport/net_devices.h; RDMA ports are kept). Empty: the host of
  // `listen`; "0.0.0.0": every interface. $UCX_NET_DEVICES, when set, wins.
  std::string data_listen_host;
  // The same for the tenants' worker (no one-sided access; docs/security.md).
  // Empty: as the data plane. Give tenants' network here and keep
  // data_listen_host on the cluster's own, so tenants cannot reach the
  // worker that has one-sided access.
  std::string tenant_listen_host;
  // TLS (proto/channel.h). With both PEM files AgentControl serves over TLS;
  // with `tls_ca` the coordinator's certificate is verified against it.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  NodeId node_id = kNoNode;                  // re-join with this id
  absl::Duration get_lease = absl::Seconds(10);
  // Blocks a Lookup reports are held until their Get, at most this long and
  // at most an eighth of the host tier (node/agent/read_holds.h); zero: none.
  absl::Duration lookup_hold = absl::Milliseconds(500);
  absl::Duration heartbeat = absl::ZeroDuration();  // zero: a third of the lease
  absl::Duration rpc_timeout = absl::Seconds(5);
  // What one tenant's clients may hold on this agent (docs/security.md).
  TenantLimits tenant_limits;
  SessionLimits sessions;
};

class Agent {
 public:
  // Starts everything and joins; returns once the agent serves.
  static absl::StatusOr<std::unique_ptr<Agent>> Start(const AgentOptions& options);
  virtual ~Agent() = default;

  // Stops serving; with `leave`, tells the coordinator this node leaves.
  // Idempotent; the destructor calls Shutdown(false).
  virtual void Shutdown(bool leave) = 0;

  virtual NodeId node_id() const = 0;
  virtual std::string control_address() const = 0;  // host:port actually bound
  virtual std::string http_address() const = 0;     // empty when off
};

}  // namespace kvf

#endif  // KVF_NODE_AGENT_AGENT_H_
