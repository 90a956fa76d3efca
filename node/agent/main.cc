// kvf-agent: a shard agent of a kvfabric cluster (docs/agent.md). Joins the
// coordinator, serves the data plane over UCX, prints
//   kvf-agent ready node=ID control=HOST:PORT http=HOST:PORT
// on stdout once it serves, and on SIGTERM/SIGINT stops serving and (with
// --leave_on_exit, the default) leaves the cluster.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "common/config_flags.h"
#include "common/logging.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "common/credentials.h"
#include "node/agent/agent.h"
#include "proto/agent_config.pb.h"

ABSL_FLAG(std::string, config, "", "textproto kvf.proto.AgentConfig; flags override it");
ABSL_FLAG(std::string, coordinator, "", "kvf-coordinator host:port");
ABSL_FLAG(std::string, token, "", "the cluster token");
ABSL_FLAG(std::string, token_file, "", "file holding the cluster token (instead of --token)");
ABSL_FLAG(std::string, listen, "127.0.0.1:0", "AgentControl gRPC host:port; port 0 picks one");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:0", "/metrics and /healthz; empty turns it off");
ABSL_FLAG(std::string, failure_domain, "", "rack/host/zone replicas avoid sharing; default host name");
ABSL_FLAG(uint64_t, host_bytes, uint64_t{1} << 30, "bytes of host memory for blocks");
ABSL_FLAG(bool, prefault_arena, true,
          "populate the whole host arena in the background at start-up, so puts do not pay for "
          "first touches of its pages; commits --host_bytes of RAM at once");
ABSL_FLAG(std::string, eviction_policy, "lru", "lru, lfu, fifo, s3fifo, chain or chain-lru");
ABSL_FLAG(std::string, disk_path, "",
          "directory of the disk (SSD) tier; empty: none. A restart over it serves its blocks again");
ABSL_FLAG(uint64_t, disk_bytes, 0, "bytes of the disk tier's log file (with --disk_path)");
ABSL_FLAG(int32_t, device, -1, "CUDA device ordinal of the GPU tier; -1: none");
ABSL_FLAG(uint64_t, device_bytes, 0,
          "bytes of GPU memory for blocks, in front of the host tier (needs --device); 0: no GPU "
          "tier. Start-up fails if the device is not there");
ABSL_FLAG(double, memory_pressure_high, 0,
          "used fraction of the machine's (or cgroup's) memory at which the host tier shrinks a "
          "step per tick; 0: off");
ABSL_FLAG(double, memory_pressure_low, 0,
          "used fraction below which the host tier grows back; 0: memory_pressure_high - 0.1");
ABSL_FLAG(std::string, ucx_tls, "", "UCX transports (UCX_TLS syntax); empty lets UCX choose");
ABSL_FLAG(uint32_t, node_id, 0, "re-join with this node id (after a restart)");
ABSL_FLAG(uint64_t, get_lease_ms, 10000, "read leases expire after this many milliseconds");
ABSL_FLAG(uint64_t, lookup_hold_ms, 500,
          "blocks a lookup reports stay held (not evicted) until their get, at most this long; "
          "0: no holds");
ABSL_FLAG(bool, leave_on_exit, true, "leave the cluster on SIGTERM (else the node goes down)");
ABSL_FLAG(std::string, data_listen_host, "",
          "IP the UCX data plane listens on (UCX is kept to its interface); empty: the host of "
          "--listen; 0.0.0.0: every interface");
ABSL_FLAG(std::string, tenant_listen_host, "",
          "IP the tenants' UCX worker (no one-sided access) listens on; empty: as "
          "--data_listen_host. Keep --data_listen_host off the tenants' network");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate; with --tls_key serves AgentControl over TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, tls_ca, "", "PEM roots to verify the coordinator with; empty: plaintext");
ABSL_FLAG(uint32_t, max_sessions_per_tenant, 1024, "data-plane sessions one tenant may hold open");
ABSL_FLAG(uint32_t, max_namespaces_per_tenant, 256, "namespaces one tenant may register");
ABSL_FLAG(uint32_t, max_read_leases_per_tenant, 4096, "Get leases one tenant may hold at once");
ABSL_FLAG(uint32_t, max_reservations_per_tenant, 16384,
          "reserved, uncommitted blocks one tenant may hold at once");

namespace kvf {
namespace {

// The config file first, then every flag given on the command line; fields
// neither sets take the flags' defaults.
absl::StatusOr<proto::AgentConfig> ReadConfig(const GivenFlags& given) {
  proto::AgentConfig c;
  KVF_RETURN_IF_ERROR(kvf::LoadConfig(absl::GetFlag(FLAGS_config), given, &c));
  if (!c.token_file().empty()) {
    KVF_ASSIGN_OR_RETURN(std::string t, ReadFileToString(c.token_file()));
    KVF_ASSIGN_OR_RETURN(std::vector<std::string> tokens, ParseTokenFile(t));
    c.set_token(tokens[0]);
    for (size_t i = 1; i < tokens.size(); ++i) c.add_previous_tokens(tokens[i]);
  }
  if (c.coordinator().empty()) {
    return absl::InvalidArgumentError("--coordinator=HOST:PORT is required");
  }
  if (c.token().empty()) {
    return absl::InvalidArgumentError("a cluster token is required (--token or --token_file)");
  }
  if (c.host_bytes() < (uint64_t{16} << 20)) {
    return absl::InvalidArgumentError("--host_bytes must be at least 16 MiB");
  }
  if (c.get_lease_ms() == 0) return absl::InvalidArgumentError("--get_lease_ms must be positive");
  if (!c.disk_path().empty() && c.disk_bytes() == 0) {
    return absl::InvalidArgumentError("--disk_path needs --disk_bytes");
  }
  if (c.device_bytes() > 0 && c.device() < 0) {
    return absl::InvalidArgumentError("--device_bytes needs --device=N (a CUDA device ordinal)");
  }
  if (c.memory_pressure_high() < 0 || c.memory_pressure_high() > 1 ||
      c.memory_pressure_low() < 0 || c.memory_pressure_low() >= 1) {
    return absl::InvalidArgumentError("--memory_pressure_high/low are fractions in [0, 1]");
  }
  if (c.tls_cert().empty() != c.tls_key().empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (c.max_sessions_per_tenant() == 0 || c.max_namespaces_per_tenant() == 0 ||
      c.max_read_leases_per_tenant() == 0 || c.max_reservations_per_tenant() == 0) {
    return absl::InvalidArgumentError("the --max_*_per_tenant limits must be at least 1");
  }
  return c;
}

int Run(const GivenFlags& given) {
  absl::StatusOr<proto::AgentConfig> c = ReadConfig(given);
  if (!c.ok()) {
    std::fprintf(stderr, "kvf-agent: %s\n", std::string(c.status().message()).c_str());
    return 2;
  }
  AgentOptions options;
  options.coordinator = c->coordinator();
  options.token = c->token();
  options.previous_tokens.assign(c->previous_tokens().begin(), c->previous_tokens().end());
  options.listen = c->listen();
  options.http_listen = c->http_listen();
  options.failure_domain = c->failure_domain();
  options.host_bytes = c->host_bytes();
  options.prefault_arena = c->prefault_arena();
  options.eviction_policy = c->eviction_policy();
  options.disk_path = c->disk_path();
  options.disk_bytes = c->disk_bytes();
  options.device = c->device();
  options.device_bytes = c->device_bytes();
  options.memory_pressure_high = c->memory_pressure_high();
  options.memory_pressure_low = c->memory_pressure_low();
  options.ucx_tls = c->ucx_tls();
  options.data_listen_host = c->data_listen_host();
  options.tenant_listen_host = c->tenant_listen_host();
  options.tls_cert = c->tls_cert();
  options.tls_key = c->tls_key();
  options.tls_ca = c->tls_ca();
  options.node_id = c->node_id();
  options.get_lease = absl::Milliseconds(c->get_lease_ms());
  options.lookup_hold = absl::Milliseconds(c->lookup_hold_ms());
  options.sessions.max_sessions_per_tenant = c->max_sessions_per_tenant();
  options.tenant_limits.namespaces = c->max_namespaces_per_tenant();
  options.tenant_limits.read_leases = c->max_read_leases_per_tenant();
  options.tenant_limits.reservations = c->max_reservations_per_tenant();
  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(options);
  if (!agent.ok()) {
    std::fprintf(stderr, "kvf-agent: %s\n", agent.status().ToString().c_str());
    return 1;
  }
  std::printf("kvf-agent ready node=%u control=%s http=%s\n", (*agent)->node_id(),
              (*agent)->control_address().c_str(),
              (*agent)->http_address().empty() ? "off" : (*agent)->http_address().c_str());
  std::fflush(stdout);

  const int sig = WaitForStopSignal();
  KVF_LOG(INFO) << "kvf-agent: signal " << sig << ", shutting down";
  (*agent)->Shutdown(c->leave_on_exit());
  agent->reset();
  return 0;
}

}  // namespace
}  // namespace kvf

int main(int argc, char** argv) {
  kvf::ConfigureProcessForServing();
  // Block the stop signals in every thread (UCX's and gRPC's included); Run()
  // waits for them with sigwait.
  kvf::BlockStopSignals();
  absl::SetProgramUsageMessage(
      "kvf-agent --coordinator=HOST:PORT --token_file=FILE [--host_bytes=N] ...");
  absl::ParseCommandLine(argc, argv);
  return kvf::Run(kvf::GivenFlags::Scan(argc, argv));
}
