// kvf-launch mpi: one kvf-agent per MPI rank; rank 0 also runs the
// coordinator. The coordinator's address, the token and (with NCCL and GPUs)
// an NCCL unique id travel by MPI_Bcast. See docs/operating.md.
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/device.h"
#include "tools/launch/internal/client_check.h"
#include "tools/launch/internal/common.h"
#include "transport/transport.h"

namespace kvf::launch::internal {
namespace {

// Rank 0's `value` on every rank.
std::string BcastString(std::string value, int rank) {
  int size = rank == 0 ? static_cast<int>(value.size()) : 0;
  MPI_Bcast(&size, 1, MPI_INT, 0, MPI_COMM_WORLD);
  value.resize(size);
  if (size > 0) MPI_Bcast(value.data(), size, MPI_CHAR, 0, MPI_COMM_WORLD);
  return value;
}

// Every rank's `value`, in rank order, on rank 0 (empty elsewhere).
std::vector<std::string> GatherStrings(const std::string& value, int rank, int ranks) {
  int len = static_cast<int>(value.size());
  std::vector<int> lens(rank == 0 ? ranks : 0);
  MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<int> offsets(lens.size());
  int total = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    offsets[i] = total;
    total += lens[i];
  }
  std::string all(total, '\0');
  MPI_Gatherv(value.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(), MPI_CHAR, 0,
              MPI_COMM_WORLD);
  std::vector<std::string> out;
  for (size_t i = 0; i < lens.size(); ++i) out.push_back(all.substr(offsets[i], lens[i]));
  return out;
}

// True on every rank iff `ok` on every rank.
bool AllOk(bool ok) {
  int mine = ok ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

std::string HostName() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

void WaitForSignal() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  int sig = 0;
  sigwait(&signals, &sig);
}

int Run(const LaunchFlags& flags, int rank, int ranks) {
  MPI_Comm node_comm;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node_comm);
  int local_rank = 0, local_ranks = 1;
  MPI_Comm_rank(node_comm, &local_rank);
  MPI_Comm_size(node_comm, &local_ranks);
  MPI_Comm_free(&node_comm);
  const bool one_host = AllOk(local_ranks == ranks);
  const std::string tag = absl::StrCat("kvf-launch[rank ", rank, "/", ranks, "]");

  LocalClusterOptions options = ClusterOptionsFromFlags(flags);
  options.agents = 0;
  options.wait_active = false;
  // One host: loopback. Several: this host's name, which the others resolve.
  if (flags.host.empty()) options.host = one_host ? "127.0.0.1" : HostName();
  if (!flags.dir.empty()) options.dir = absl::StrCat(flags.dir, "/rank-", rank);

  // Rank 0 starts the coordinator; its address and the token go to everyone.
  std::unique_ptr<LocalCluster> cluster;
  std::string message;  // "OK <coordinator>" or an error
  std::string token;
  if (rank == 0) {
    absl::StatusOr<std::string> t = ResolveToken(flags);
    if (t.ok()) {
      token = *t;
      options.token = token;
      absl::StatusOr<std::unique_ptr<LocalCluster>> c = LocalCluster::Start(options);
      if (c.ok()) {
        cluster = std::move(*c);
        message = absl::StrCat("OK ", cluster->coordinator());
      } else {
        message = absl::StrCat("starting kvf-coordinator: ", c.status().ToString());
      }
    } else {
      message = t.status().ToString();
    }
  }
  message = BcastString(message, rank);
  token = BcastString(token, rank);
  if (!absl::StartsWith(message, "OK ")) {
    std::fprintf(stderr, "%s: %s\n", tag.c_str(), message.c_str());
    return 1;
  }
  const std::string coordinator = message.substr(3);

  // GPUs and NCCL. kvf-agent has no device tier or NCCL flag yet: the agent
  // serves host memory; the id is created and broadcast so every rank holds
  // it, and each agent sees only its local rank's GPU.
  const DeviceInventory& devices = Devices();
  std::string nccl_id;
  if (rank == 0 && devices.count > 0) {
    absl::StatusOr<std::string> id = NcclUniqueId();
    if (id.ok()) {
      nccl_id = *id;
    } else {
      std::printf("%s: no NCCL unique id: %s\n", tag.c_str(), id.status().ToString().c_str());
    }
  }
  nccl_id = BcastString(nccl_id, rank);
  std::string device_text = absl::StrCat("host memory (no GPU: ", devices.reason, ")");
  if (devices.count > 0) {
    const int gpu = local_rank % devices.count;
    options.agent_env.push_back({"CUDA_VISIBLE_DEVICES", absl::StrCat(gpu)});
    device_text =
        absl::StrCat("host memory, CUDA_VISIBLE_DEVICES=", gpu, " (kvf-agent has no GPU tier yet)");
  }

  // Every rank starts its agent.
  if (rank != 0) {
    options.token = token;
    options.coordinator_address = coordinator;
    absl::StatusOr<std::unique_ptr<LocalCluster>> c = LocalCluster::Start(options);
    if (!c.ok()) {
      message = c.status().ToString();
    } else {
      cluster = std::move(*c);
    }
  }
  std::string domain = flags.failure_domain;
  if (domain.empty()) domain = one_host ? absl::StrCat("rank", rank) : HostName();
  std::string mine;
  if (cluster != nullptr) {
    absl::StatusOr<int> index = cluster->StartAgent(domain);
    if (index.ok()) {
      const AgentProcess& a = cluster->agents()[*index];
      mine = absl::StrCat("rank ", rank, " host=", HostName(), " node=", a.node,
                          " control=", a.control, " http=", a.http, " domain=", domain,
                          " pid=", a.pid, " ", device_text, " log=", a.log_prefix, ".err");
    } else {
      message = absl::StrCat("starting kvf-agent: ", index.status().ToString());
    }
  }
  const bool started = AllOk(!mine.empty());
  if (mine.empty()) std::fprintf(stderr, "%s: %s\n", tag.c_str(), message.c_str());
  int rc = 0;
  if (started) {
    // Rank 0 waits until every agent is active, and says so to everyone.
    int active = 1;
    if (rank == 0) {
      absl::Status s = cluster->WaitForActive(ranks, absl::Now() + flags.start_timeout);
      if (!s.ok()) {
        std::fprintf(stderr, "%s: %s\n", tag.c_str(), s.ToString().c_str());
        active = 0;
      }
    }
    MPI_Bcast(&active, 1, MPI_INT, 0, MPI_COMM_WORLD);
    rc = active ? 0 : 1;
    if (!active) {
      // The logs go with the cluster's directory at stop: show why here.
      if (rank == 0) {
        std::fprintf(stderr, "%s: ---- coordinator.err (tail)\n%s\n", tag.c_str(),
                     cluster->TailLog(cluster->dir() + "/coordinator").c_str());
      }
      const AgentProcess& a = cluster->agents().back();
      std::fprintf(stderr, "%s: ---- %s.err (node %llu, tail)\n%s\n", tag.c_str(),
                   a.log_prefix.c_str(), static_cast<unsigned long long>(a.node),
                   cluster->TailLog(a.log_prefix).c_str());
    }
  } else {
    rc = 1;
  }
  std::vector<std::string> lines = GatherStrings(mine, rank, ranks);
  if (rank == 0 && rc == 0) {
    std::printf(
        "kvf-launch: %d agent(s) active\n  coordinator  grpc=%s http=%s pid=%d "
        "log=%s/coordinator.err\n",
        ranks, coordinator.c_str(), cluster->coordinator_http().c_str(),
        static_cast<int>(cluster->coordinator_pid()), cluster->dir().c_str());
    std::printf("  token file   %s (rank 0; every rank has its own copy)\n",
                cluster->token_file().c_str());
    for (const std::string& l : lines) std::printf("  %s\n", l.c_str());
    if (!nccl_id.empty()) {
      std::printf(
          "  nccl         unique id of %zu bytes broadcast to %d rank(s); kvf-agent takes "
          "no NCCL id yet, so it is not used\n",
          nccl_id.size(), ranks);
    }
    std::fflush(stdout);
  }
  MPI_Barrier(MPI_COMM_WORLD);

  if (rc == 0) {
    if (flags.client_check) {
      int ok = 1;
      if (rank == 0) {
        absl::StatusOr<std::string> check = ClientRoundTrip(coordinator, token, flags.ucx_tls);
        if (check.ok()) {
          std::printf("kvf-launch: %s\n", check->c_str());
        } else {
          std::printf("kvf-launch: client check FAILED: %s\n", check.status().ToString().c_str());
          ok = 0;
        }
        std::fflush(stdout);
      }
      MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
      rc = ok ? 0 : 1;
    } else {
      if (rank == 0) {
        std::printf("kvf-launch: serving; Ctrl-C (or SIGTERM to mpirun) stops every rank\n");
        std::fflush(stdout);
      }
      WaitForSignal();
    }
  }

  // Agents leave first (while the coordinator runs), then rank 0 stops it.
  if (cluster != nullptr) {
    if (absl::Status s = cluster->StopAgents(flags.stop_timeout); !s.ok()) {
      std::fprintf(stderr, "%s: %s\n", tag.c_str(), s.ToString().c_str());
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (cluster != nullptr && rank == 0) {
    if (absl::Status s = cluster->Stop(flags.stop_timeout); !s.ok()) {
      std::fprintf(stderr, "%s: %s\n", tag.c_str(), s.ToString().c_str());
    }
    std::printf("kvf-launch: cluster stopped\n");
    std::fflush(stdout);
  }
  return rc;
}

}  // namespace

int RunMpi(const LaunchFlags& flags, int* argc, char*** argv) {
  MPI_Init(argc, argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const int rc = Run(flags, rank, ranks);
  MPI_Finalize();
  return rc;
}

}  // namespace kvf::launch::internal
