// kvf-coordinator: membership, cluster-map epochs, migration planning and
// global eviction for a kvfabric cluster. See docs/coordinator.md.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/config_flags.h"
#include "common/logging.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "common/credentials.h"
#include "coordinator/agent_client.h"
#include "coordinator/coordinator_group.h"
#include "coordinator/coordinator_service.h"
#include "coordinator/etcd_client.h"
#include "coordinator/grpc_service.h"
#include "coordinator/http_endpoint.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "proto/channel.h"
#include "proto/coordinator_config.pb.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7700", "gRPC host:port; port 0 picks a free one");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:7701",
          "host:port for /metrics and /healthz; port 0 picks a free one; empty turns it off");
ABSL_FLAG(std::string, token, "", "cluster token every RPC must carry");
ABSL_FLAG(std::string, token_file, "", "file holding the cluster token (instead of --token)");
ABSL_FLAG(std::string, state_dir, "", "directory for the last epoch; empty keeps nothing");
ABSL_FLAG(uint32_t, replication, 2, "owners per key (R), 1..8");
ABSL_FLAG(uint64_t, lease_ms, 10000, "a node missing heartbeats this long is marked down");
ABSL_FLAG(double, high_watermark, 0.90, "cluster usage that starts global eviction");
ABSL_FLAG(double, low_watermark, 0.80, "cluster usage global eviction brings it back to");
ABSL_FLAG(uint32_t, default_segment_blocks, 16, "blocks per placement segment");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate; with --tls_key serves gRPC over TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, agent_tls_ca, "", "PEM roots to verify agents with; empty: plaintext");
ABSL_FLAG(std::string, config, "", "textproto kvf.proto.CoordinatorConfig; flags override it");
ABSL_FLAG(std::string, etcd_endpoints, "",
          "etcd client endpoints (host:port,...): keep the state in etcd and run as one of "
          "several coordinators, one elected leader; empty: --state_dir");
ABSL_FLAG(std::string, etcd_prefix, "/kvfabric/default", "this cluster's key prefix in etcd");
ABSL_FLAG(uint64_t, election_ttl_ms, 2000,
          "the leader's etcd lease (whole seconds, >= 1000): a dead leader is replaced within "
          "about this plus 1 s");
ABSL_FLAG(std::string, advertise, "",
          "host:port others reach this coordinator at (redirects name it); default: --listen "
          "with the bound port");

namespace kvf {
namespace {

absl::Status SplitHostPort(const std::string& hp, std::string* host, int* port) {
  size_t colon = hp.rfind(':');
  int p = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(hp).substr(colon + 1), &p) || p < 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", hp, "' is not host:port"));
  }
  *host = hp.substr(0, colon);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  *port = p;
  return absl::OkStatus();
}

// The config file first, then every flag given on the command line; fields
// neither sets take the flags' defaults.
absl::StatusOr<proto::CoordinatorConfig> ReadConfig(const GivenFlags& given) {
  proto::CoordinatorConfig c;
  KVF_RETURN_IF_ERROR(kvf::LoadConfig(absl::GetFlag(FLAGS_config), given, &c));
  if (!c.token_file().empty()) {
    KVF_ASSIGN_OR_RETURN(std::string t, ReadFileToString(c.token_file()));
    KVF_ASSIGN_OR_RETURN(std::vector<std::string> tokens, ParseTokenFile(t));
    c.set_token(tokens[0]);
    for (size_t i = 1; i < tokens.size(); ++i) c.add_previous_tokens(tokens[i]);
  }
  if (c.token().empty()) {
    return absl::InvalidArgumentError("a cluster token is required (--token or --token_file)");
  }
  if (c.lease_ms() == 0 || c.lease_ms() > 3'600'000) {
    return absl::InvalidArgumentError("--lease_ms must be in 1..3600000");
  }
  if (c.tls_cert().empty() != c.tls_key().empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (!c.etcd_endpoints().empty() && !c.state_dir().empty()) {
    return absl::InvalidArgumentError(
        "--state_dir and --etcd_endpoints exclude each other: with etcd the state lives there");
  }
  if (!c.etcd_endpoints().empty() && c.election_ttl_ms() < 1000) {
    return absl::InvalidArgumentError("--election_ttl_ms must be at least 1000 (etcd leases)");
  }
  return c;
}

int Run(const GivenFlags& given) {
  auto config = ReadConfig(given);
  if (!config.ok()) {
    std::fprintf(stderr, "kvf-coordinator: %s\n", config.status().ToString().c_str());
    return 2;
  }
  const proto::CoordinatorConfig& c = *config;

  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> agent_creds =
      ChannelCredentialsFor(absl::GetFlag(FLAGS_agent_tls_ca));
  if (!agent_creds.ok()) {
    std::fprintf(stderr, "kvf-coordinator: --agent_tls_ca: %s\n",
                 agent_creds.status().ToString().c_str());
    return 2;
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      ServerCredentialsFor(c.tls_cert(), c.tls_key());
  if (!creds.ok()) {
    std::fprintf(stderr, "kvf-coordinator: --tls_cert/--tls_key: %s\n",
                 creds.status().ToString().c_str());
    return 2;
  }
  std::unique_ptr<AgentClient> agents =
      NewGrpcAgentClient(c.token(), *agent_creds, absl::Seconds(2));

  CoordinatorOptions options;
  options.ring.replication = c.replication();
  options.lease = absl::Milliseconds(c.lease_ms());
  options.watermarks.high = c.high_watermark();
  options.watermarks.low = c.low_watermark();
  options.default_segment_blocks = c.default_segment_blocks();
  options.state_dir = c.state_dir();
  options.agents = agents.get();
  std::vector<std::string> tokens = {c.token()};
  tokens.insert(tokens.end(), c.previous_tokens().begin(), c.previous_tokens().end());

  // One coordinator with a state dir, or one member of a group sharing etcd.
  std::unique_ptr<CoordinatorService> core;
  std::unique_ptr<EtcdClient> etcd;
  std::unique_ptr<CoordinatorGroup> group;
  std::unique_ptr<CoordinatorGrpcService> service;
  if (c.etcd_endpoints().empty()) {
    auto created = CoordinatorService::Create(options);
    if (!created.ok()) {
      std::fprintf(stderr, "kvf-coordinator: %s\n", created.status().ToString().c_str());
      return 2;
    }
    core = *std::move(created);
    service = std::make_unique<CoordinatorGrpcService>(core.get(), std::move(tokens));
  } else {
    auto client = EtcdClient::Create(c.etcd_endpoints(), absl::Seconds(2));
    if (!client.ok()) {
      std::fprintf(stderr, "kvf-coordinator: --etcd_endpoints: %s\n",
                   client.status().ToString().c_str());
      return 2;
    }
    etcd = *std::move(client);
    CoordinatorGroupOptions go;
    go.core = options;
    go.prefix = c.etcd_prefix();
    go.election_ttl = absl::Milliseconds(c.election_ttl_ms());
    auto created = CoordinatorGroup::Create(etcd.get(), go);
    if (!created.ok()) {
      std::fprintf(stderr, "kvf-coordinator: %s\n", created.status().ToString().c_str());
      return 2;
    }
    group = *std::move(created);
    service = std::make_unique<CoordinatorGrpcService>(group.get(), std::move(tokens));
  }

  std::string grpc_host;
  int grpc_port = 0;
  if (absl::Status s = SplitHostPort(c.listen(), &grpc_host, &grpc_port); !s.ok()) {
    std::fprintf(stderr, "kvf-coordinator: --listen: %s\n", s.ToString().c_str());
    return 2;
  }
  int bound = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(c.listen(), *creds, &bound);
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::fprintf(stderr, "kvf-coordinator: cannot listen on %s\n", c.listen().c_str());
    return 1;
  }
  std::string self = c.advertise();
  if (self.empty()) {
    self = absl::StrCat(grpc_host.find(':') != std::string::npos
                            ? absl::StrCat("[", grpc_host, "]")
                            : grpc_host,
                        ":", bound);
  }
  if (group) {
    if (absl::Status s = group->Start(self); !s.ok()) {
      std::fprintf(stderr, "kvf-coordinator: %s\n", s.ToString().c_str());
      server->Shutdown();
      return 1;
    }
  }

  std::unique_ptr<HttpEndpoint> http;
  std::string http_text = "off";
  if (!c.http_listen().empty()) {
    std::string host;
    int port = 0;
    absl::Status s = SplitHostPort(c.http_listen(), &host, &port);
    CoordinatorGrpcService* svc = service.get();
    auto rpc = [svc] { return RpcCounters{svc->unauthenticated_calls(), svc->failed_calls()}; };
    absl::StatusOr<std::unique_ptr<HttpEndpoint>> ep = s.ok() ? absl::InternalError("unset") : s;
    if (s.ok() && core) {
      ep = HttpEndpoint::Start(host, port, core.get(), rpc);
    } else if (s.ok()) {
      CoordinatorGroup* g = group.get();
      ep = HttpEndpoint::Start(
          host, port, [g] { return g->Stats(); },
          [g]() -> absl::StatusOr<std::string> {
            if (g->shutting_down()) return absl::UnavailableError("shutting down");
            std::string leader;
            const bool leading = g->Leader(&leader) != nullptr;
            return absl::StrCat("ok epoch=", g->feed().epoch(),
                                leading ? " role=leader" : " role=follower",
                                leading ? "" : absl::StrCat(" leader=", leader), "\n");
          },
          rpc,
          [g] {
            return absl::StrCat(
                "# HELP kvf_coordinator_leader 1 while this coordinator is the elected leader.\n"
                "# TYPE kvf_coordinator_leader gauge\nkvf_coordinator_leader ",
                g->is_leader() ? 1 : 0, "\n");
          });
    }
    if (!ep.ok()) {
      std::fprintf(stderr, "kvf-coordinator: --http_listen: %s\n", ep.status().ToString().c_str());
      server->Shutdown();
      return 1;
    }
    http = std::move(*ep);
    http_text = absl::StrCat(host, ":", http->port());
  }

  // Leases are checked a few times per lease.
  absl::Notification stop;
  const absl::Duration tick =
      std::clamp(options.lease / 4, absl::Milliseconds(5), absl::Seconds(1));
  CoordinatorService* core_ptr = core.get();
  CoordinatorGroup* group_ptr = group.get();
  std::thread ticker([&stop, core_ptr, group_ptr, tick] {
    while (!stop.WaitForNotificationWithTimeout(tick)) {
      if (core_ptr != nullptr) {
        core_ptr->Tick();
      } else {
        group_ptr->Tick();
      }
    }
  });

  std::printf("kvf-coordinator listening grpc=%s:%d http=%s\n", grpc_host.c_str(), bound,
              http_text.c_str());
  std::fflush(stdout);
  KVF_LOG(INFO) << "kvf-coordinator: "
                << (core_ptr ? absl::StrCat("epoch ", core_ptr->epoch())
                             : absl::StrCat("etcd ", c.etcd_endpoints(), " prefix ",
                                            c.etcd_prefix(), " as ", self))
                << ", R=" << options.ring.replication << ", lease " << options.lease
                << (c.tls_cert().empty() ? ", plaintext" : ", TLS");

  const int sig = WaitForStopSignal();
  KVF_LOG(INFO) << "kvf-coordinator: signal " << sig << ", shutting down";

  stop.Notify();
  ticker.join();
  if (core_ptr != nullptr) core_ptr->Shutdown();  // ends watch streams
  // A group member resigns: another is elected at once, not after a lease.
  if (group_ptr != nullptr) group_ptr->Shutdown(/*resign=*/true);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (http) http->Stop();
  return 0;
}

}  // namespace
}  // namespace kvf

int main(int argc, char** argv) {
  kvf::ConfigureProcessForServing();
  // Block the stop signals in every thread (gRPC's included); Run() waits for
  // them with sigwait.
  kvf::BlockStopSignals();
  absl::SetProgramUsageMessage("kvf-coordinator --token_file=FILE [--listen=host:port] ...");
  absl::ParseCommandLine(argc, argv);
  return kvf::Run(kvf::GivenFlags::Scan(argc, argv));
}
