#include "coordinator/http_endpoint.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/cluster_map_convert.h"

namespace kvf {

std::string MetricsText(const CoordinatorStats& s, const RpcCounters& rpc) {
  std::string out;
  auto metric = [&out](const char* name, const char* type, const char* help) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  };
  metric("kvf_coordinator_epoch", "gauge", "Current cluster map epoch.");
  absl::StrAppend(&out, "kvf_coordinator_epoch ", s.epoch, "\n");
  metric("kvf_coordinator_nodes", "gauge", "Nodes in the map by state.");
  for (int st = 0; st < 5; ++st) {
    absl::StrAppend(&out, "kvf_coordinator_nodes{state=\"",
                    NodeStateText(static_cast<NodeState>(st)), "\"} ", s.nodes_by_state[st], "\n");
  }
  metric("kvf_coordinator_capacity_bytes", "gauge", "Capacity of live nodes.");
  absl::StrAppend(&out, "kvf_coordinator_capacity_bytes ", s.capacity_bytes, "\n");
  metric("kvf_coordinator_used_bytes", "gauge", "Bytes used on live nodes, as last reported.");
  absl::StrAppend(&out, "kvf_coordinator_used_bytes ", s.used_bytes, "\n");
  metric("kvf_coordinator_heartbeats_total", "counter", "Heartbeats accepted.");
  absl::StrAppend(&out, "kvf_coordinator_heartbeats_total ", s.heartbeats, "\n");
  metric("kvf_coordinator_migration_tasks_total", "counter", "Migration tasks by outcome.");
  absl::StrAppend(&out, "kvf_coordinator_migration_tasks_total{outcome=\"planned\"} ",
                  s.tasks_planned, "\n");
  absl::StrAppend(&out, "kvf_coordinator_migration_tasks_total{outcome=\"done\"} ", s.tasks_done,
                  "\n");
  absl::StrAppend(&out, "kvf_coordinator_migration_tasks_total{outcome=\"cancelled\"} ",
                  s.tasks_cancelled, "\n");
  metric("kvf_coordinator_migration_tasks_outstanding", "gauge", "Tasks not done yet.");
  absl::StrAppend(&out, "kvf_coordinator_migration_tasks_outstanding ", s.tasks_outstanding, "\n");
  metric("kvf_coordinator_ranges_lost_total", "counter",
         "Ranges a migration needed that no surviving replica held.");
  absl::StrAppend(&out, "kvf_coordinator_ranges_lost_total ", s.ranges_lost, "\n");
  metric("kvf_coordinator_task_delivery_failures_total", "counter",
         "AssignMigration calls to agents that failed (retried).");
  absl::StrAppend(&out, "kvf_coordinator_task_delivery_failures_total ", s.delivery_failures,
                  "\n");
  metric("kvf_coordinator_roster_save_failures_total", "counter",
         "Failed writes of the roster to the state dir (retried every tick).");
  absl::StrAppend(&out, "kvf_coordinator_roster_save_failures_total ", s.roster_save_failures,
                  "\n");
  metric("kvf_coordinator_eviction_cutoff_seconds", "gauge",
         "Cluster-wide eviction age cutoff; -1 when none is in force.");
  absl::StrAppend(&out, "kvf_coordinator_eviction_cutoff_seconds ",
                  s.eviction_cutoff ? absl::StrFormat("%.3f", absl::ToDoubleSeconds(*s.eviction_cutoff))
                                    : std::string("-1"),
                  "\n");
  metric("kvf_coordinator_rpc_unauthenticated_total", "counter",
         "RPCs refused for a missing or wrong token.");
  absl::StrAppend(&out, "kvf_coordinator_rpc_unauthenticated_total ", rpc.unauthenticated, "\n");
  metric("kvf_coordinator_rpc_failed_total", "counter", "RPCs answered with an error.");
  absl::StrAppend(&out, "kvf_coordinator_rpc_failed_total ", rpc.failed, "\n");
  return out;
}

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(
    const std::string& host, int port, const CoordinatorService* core,
    std::function<RpcCounters()> rpc_counters) {
  HttpHandlers handlers;
  handlers.metrics = [core, rpc_counters] {
    return MetricsText(core->Stats(), rpc_counters ? rpc_counters() : RpcCounters{});
  };
  handlers.health = [core]() -> absl::StatusOr<std::string> {
    if (core->shutting_down()) return absl::UnavailableError("shutting down");
    return absl::StrCat("ok epoch=", core->epoch(), "\n");
  };
  std::unique_ptr<HttpEndpoint> ep(new HttpEndpoint());
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(host, port, handlers);
  if (!server.ok()) return server.status();
  ep->server_ = *std::move(server);
  return ep;
}

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(
    const std::string& host, int port, std::function<CoordinatorStats()> stats,
    std::function<absl::StatusOr<std::string>()> health,
    std::function<RpcCounters()> rpc_counters, std::function<std::string()> extra_metrics) {
  HttpHandlers handlers;
  handlers.metrics = [stats, rpc_counters, extra_metrics] {
    std::string text = MetricsText(stats(), rpc_counters ? rpc_counters() : RpcCounters{});
    if (extra_metrics) text += extra_metrics();
    return text;
  };
  handlers.health = std::move(health);
  std::unique_ptr<HttpEndpoint> ep(new HttpEndpoint());
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(host, port, handlers);
  if (!server.ok()) return server.status();
  ep->server_ = *std::move(server);
  return ep;
}

HttpEndpoint::~HttpEndpoint() { Stop(); }

void HttpEndpoint::Stop() {
  if (server_) server_->Stop();
}

int HttpEndpoint::port() const { return server_ ? server_->port() : 0; }

}  // namespace kvf
