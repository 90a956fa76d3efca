// status, nodes, drain, undrain, leave: the coordinator's membership RPCs and
// the cluster map.
#include <cstdio>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "tools/kvfctl/commands.h"
#include "tools/kvfctl/output.h"

namespace kvf::ctl {
namespace {

constexpr int kStates[] = {proto::NODE_STATE_JOINING, proto::NODE_STATE_ACTIVE,
                           proto::NODE_STATE_DRAINING, proto::NODE_STATE_DOWN,
                           proto::NODE_STATE_LEFT};

std::string NodeJson(const proto::Node& n) {
  JsonArray tiers;
  for (const std::string& t : n.tiers()) tiers.Str(t);
  return JsonObject()
      .Uint("id", n.id())
      .Str("state", StateName(n.state()))
      .Str("address", n.address())
      .Str("failure_domain", n.failure_domain())
      .Uint("capacity_bytes", n.capacity_bytes())
      .Uint("device_bytes", n.device_bytes())
      .Raw("tiers", tiers.Done())
      .Done();
}

// What the coordinator's /metrics adds to the map, when --coordinator_http is
// given and answers.
struct CoordinatorMetrics {
  bool ok = false;
  std::string error;  // why not, when !ok
  double used_bytes = 0;
  double capacity_bytes = 0;
  double cutoff_seconds = -1;
  double tasks_outstanding = 0;
};

CoordinatorMetrics ScrapeCoordinator(const Context& ctx) {
  CoordinatorMetrics m;
  if (ctx.options().coordinator_http.empty()) {
    m.error = "pass --coordinator_http=HOST:PORT (kvf-coordinator's --http_listen)";
    return m;
  }
  auto body = HttpGet(ctx.options().coordinator_http, "/metrics", ctx.options().rpc_timeout);
  if (!body.ok()) {
    m.error = std::string(body.status().message());
    return m;
  }
  Metrics metrics = ParseMetrics(*body);
  auto get = [&](const char* name, double* out) {
    auto it = metrics.find(name);
    if (it == metrics.end()) return false;
    *out = it->second;
    return true;
  };
  if (!get("kvf_coordinator_used_bytes", &m.used_bytes) ||
      !get("kvf_coordinator_capacity_bytes", &m.capacity_bytes)) {
    m.error = absl::StrCat("http://", ctx.options().coordinator_http,
                           "/metrics has no kvf_coordinator_used_bytes (not a kvf-coordinator?)");
    return m;
  }
  get("kvf_coordinator_eviction_cutoff_seconds", &m.cutoff_seconds);
  get("kvf_coordinator_migration_tasks_outstanding", &m.tasks_outstanding);
  m.ok = true;
  return m;
}

// Hit rate over the agents named by --agent_http, or else over every live
// node's HTTP address in the map.
struct HitRate {
  bool ok = false;
  std::string error;
  double hits = 0;
  double misses = 0;
  int agents = 0;
};

HitRate ScrapeAgents(const Context& ctx, const proto::ClusterMap& map) {
  HitRate h;
  std::vector<std::string> addresses = ctx.options().agent_http;
  if (addresses.empty()) {
    for (const proto::Node& n : map.nodes()) {
      if (IsLive(n.state()) && !n.http_address().empty()) addresses.push_back(n.http_address());
    }
  }
  if (addresses.empty()) {
    h.error = "no agent HTTP address in the map; pass --agent_http=HOST:PORT,...";
    return h;
  }
  for (const std::string& addr : addresses) {
    auto body = HttpGet(addr, "/metrics", ctx.options().rpc_timeout);
    if (!body.ok()) {
      h.error = std::string(body.status().message());
      return h;
    }
    Metrics m = ParseMetrics(*body);
    auto hits = m.find("kvf_agent_hits_total");
    auto misses = m.find("kvf_agent_misses_total");
    if (hits == m.end() || misses == m.end()) {
      h.error =
          absl::StrCat("http://", addr, "/metrics has no kvf_agent_hits_total (not a kvf-agent?)");
      return h;
    }
    h.hits += hits->second;
    h.misses += misses->second;
    ++h.agents;
  }
  h.ok = true;
  return h;
}

// Polls the map while `node` drains; see RunDrain.
int WaitForLeft(Context& ctx, const DrainParams& params, uint64_t epoch) {
  std::FILE* progress = ctx.json() ? stderr : stdout;
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + params.timeout;
  int last_state = proto::NODE_STATE_DRAINING;
  double last_tasks = -1;
  bool warned_unreachable = false;
  for (;;) {
    proto::ClusterMap map;
    auto call = ctx.NewCall();
    grpc::Status s =
        ctx.coordinator().GetClusterMap(call.get(), proto::GetClusterMapRequest(), &map);
    const std::string at = absl::StrFormat("[%6.1fs]", absl::ToDoubleSeconds(absl::Now() - start));
    if (!s.ok()) {
      // A coordinator restart mid-drain is survivable: keep polling until the
      // deadline. Anything else (a wrong token) ends the wait.
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
          s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        return ctx.RpcFailed("GetClusterMap", s);
      }
      if (!warned_unreachable) {
        std::fprintf(progress, "%s coordinator not answering (%s); still waiting\n", at.c_str(),
                     s.error_message().c_str());
        std::fflush(progress);
        warned_unreachable = true;
      }
    } else {
      warned_unreachable = false;
      const proto::Node* n = FindNode(map, params.node);
      const int state = n == nullptr ? proto::NODE_STATE_LEFT : n->state();
      if (state != last_state) {
        std::fprintf(progress, "%s epoch %llu: node %u %s -> %s\n", at.c_str(),
                     static_cast<unsigned long long>(map.epoch()), params.node,
                     StateName(last_state), StateName(state));
        std::fflush(progress);
        last_state = state;
      }
      epoch = map.epoch();
      if (state == proto::NODE_STATE_LEFT) break;
      if (state == proto::NODE_STATE_ACTIVE) {
        return Fail(kExitFailed,
                    absl::StrCat("node ", params.node, " was undrained (epoch ", epoch, ")"),
                    "someone ran `kvfctl undrain`; run `kvfctl drain` again to drain it");
      }
      if (state == proto::NODE_STATE_DOWN) {
        return Fail(
            kExitFailed,
            absl::StrCat("node ", params.node, " went down while draining (epoch ", epoch, ")"),
            absl::StrCat("its ranges are re-replicated from the other owners; `kvfctl leave ",
                         params.node, "` removes it for good"));
      }
      if (!ctx.options().coordinator_http.empty()) {
        auto body = HttpGet(ctx.options().coordinator_http, "/metrics", ctx.options().rpc_timeout);
        if (body.ok()) {
          Metrics m = ParseMetrics(*body);
          auto it = m.find("kvf_coordinator_migration_tasks_outstanding");
          if (it != m.end() && it->second != last_tasks) {
            std::fprintf(progress, "%s migration tasks outstanding (whole cluster): %.0f\n",
                         at.c_str(), it->second);
            std::fflush(progress);
            last_tasks = it->second;
          }
        }
      }
    }
    if (absl::Now() >= deadline) {
      return Fail(kExitTimeout,
                  absl::StrCat("node ", params.node, " still ", StateName(last_state), " after ",
                               absl::FormatDuration(params.timeout)),
                  absl::StrCat("its migration goes on in the background: `kvfctl drain ",
                               params.node, "` waits again, `kvfctl undrain ", params.node,
                               "` cancels; raise --timeout for large nodes"));
    }
    absl::SleepFor(std::min(params.poll, deadline - absl::Now()));
  }
  const double waited = absl::ToDoubleSeconds(absl::Now() - start);
  if (ctx.json()) {
    std::printf("%s\n", JsonObject()
                            .Uint("node", params.node)
                            .Str("state", "left")
                            .Uint("epoch", epoch)
                            .Num("waited_seconds", waited)
                            .Done()
                            .c_str());
  } else {
    std::printf("node %u left the cluster (epoch %llu) after %.1fs\n", params.node,
                static_cast<unsigned long long>(epoch), waited);
  }
  return kExitOk;
}

// Undrain and Leave: one RPC, one line.
int Membership(Context& ctx, uint32_t node, const char* rpc_name,
               grpc::Status (proto::Coordinator::Stub::*rpc)(grpc::ClientContext*,
                                                             const proto::NodeRequest&,
                                                             proto::MembershipResponse*)) {
  proto::NodeRequest req;
  req.set_node_id(node);
  proto::MembershipResponse resp;
  auto call = ctx.NewMutationCall();
  grpc::Status s = (ctx.coordinator().*rpc)(call.get(), req, &resp);
  if (!s.ok()) return ctx.RpcFailed(absl::StrCat(rpc_name, "(", node, ")"), s, /*mutation=*/true);
  if (ctx.json()) {
    std::printf(
        "%s\n",
        JsonObject().Uint("epoch", resp.epoch()).Raw("node", NodeJson(resp.node())).Done().c_str());
  } else {
    std::printf("node %u is %s (epoch %llu)\n", node, StateName(resp.node().state()),
                static_cast<unsigned long long>(resp.epoch()));
  }
  return kExitOk;
}

}  // namespace

bool ParseNodeId(const std::string& text, uint32_t* id) {
  return absl::SimpleAtoi(text, id) && *id != 0;
}

int RunNodes(Context& ctx) {
  int code = 0;
  auto map = ctx.GetMap(&code);
  if (!map) return code;
  if (ctx.json()) {
    JsonArray nodes;
    for (const proto::Node& n : map->nodes()) nodes.Raw(NodeJson(n));
    std::printf("%s\n",
                JsonObject().Uint("epoch", map->epoch()).Raw("nodes", nodes.Done()).Done().c_str());
    return kExitOk;
  }
  // DEVICE: the GPU tier's share of CAPACITY ("-": none).
  Table t({"ID", "STATE", "CONTROL ADDRESS", "FAILURE DOMAIN", "CAPACITY", "DEVICE", "TIERS"},
          {true, false, false, false, true, true, false});
  for (const proto::Node& n : map->nodes()) {
    t.AddRow({absl::StrCat(n.id()), StateName(n.state()), n.address(), n.failure_domain(),
              HumanBytes(n.capacity_bytes()),
              n.device_bytes() > 0 ? HumanBytes(n.device_bytes()) : "-",
              absl::StrJoin(n.tiers(), ",")});
  }
  std::printf("epoch %llu, %d nodes\n", static_cast<unsigned long long>(map->epoch()),
              map->nodes_size());
  t.Print(stdout);
  return kExitOk;
}

int RunStatus(Context& ctx) {
  int code = 0;
  auto map = ctx.GetMap(&code);
  if (!map) return code;
  std::map<int, int> by_state;
  uint64_t capacity = 0;
  for (const proto::Node& n : map->nodes()) {
    ++by_state[n.state()];
    if (IsLive(n.state())) capacity += n.capacity_bytes();
  }
  const CoordinatorMetrics cm = ScrapeCoordinator(ctx);
  const HitRate hr = ScrapeAgents(ctx, *map);
  // Who leads, and how etcd is (several coordinators sharing etcd).
  const std::vector<CoordinatorProbe> probes = ctx.ProbeCoordinators();
  const CoordinatorProbe* leader = nullptr;
  const CoordinatorProbe* etcd = nullptr;  // the report of the leader, else any member's
  bool replicated = false;
  for (const CoordinatorProbe& p : probes) {
    if (!p.reachable) continue;
    const auto role = p.status.role();
    replicated |= role == proto::CoordinatorStatusResponse::ROLE_LEADER ||
                  role == proto::CoordinatorStatusResponse::ROLE_FOLLOWER;
    if (role == proto::CoordinatorStatusResponse::ROLE_LEADER) leader = &p;
    if (p.status.etcd_endpoints_size() > 0 && (etcd == nullptr || &p == leader)) etcd = &p;
  }
  std::string leader_address = leader ? leader->status.address() : "";
  for (const CoordinatorProbe& p : probes) {
    if (leader_address.empty() && p.reachable) leader_address = p.status.leader_address();
  }
  auto role_text = [](const CoordinatorProbe& p) -> std::string {
    if (!p.reachable) return absl::StrCat("unreachable: ", p.error);
    switch (p.status.role()) {
      case proto::CoordinatorStatusResponse::ROLE_LEADER:
        return "leader";
      case proto::CoordinatorStatusResponse::ROLE_FOLLOWER:
        return "follower";
      case proto::CoordinatorStatusResponse::ROLE_STANDALONE:
        return "standalone";
      default:
        return "unknown";
    }
  };

  if (ctx.json()) {
    JsonObject states;
    for (int s : kStates) states.Int(StateName(s), by_state[s]);
    JsonObject o;
    JsonArray members;
    for (const CoordinatorProbe& p : probes) {
      JsonObject m;
      m.Str("address", p.address).Str("role", role_text(p)).Bool("reachable", p.reachable);
      if (p.reachable) m.Uint("epoch", p.status.epoch());
      members.Raw(m.Done());
    }
    o.Str("coordinator", ctx.options().coordinator)
        .Raw("coordinators", members.Done())
        .Str("leader", leader_address);
    if (etcd != nullptr) {
      JsonArray endpoints;
      for (const std::string& e : etcd->status.etcd_endpoints()) endpoints.Str(e);
      o.Raw("etcd", JsonObject()
                        .Raw("endpoints", endpoints.Done())
                        .Bool("healthy", etcd->status.etcd_healthy())
                        .Str("version", etcd->status.etcd_version())
                        .Int("revision", etcd->status.etcd_revision())
                        .Str("error", etcd->status.etcd_error())
                        .Done());
    } else {
      o.Null("etcd");
    }
    o.Uint("epoch", map->epoch())
        .Uint("replication", map->ring().replication())
        .Uint("default_segment_blocks", map->default_segment_blocks())
        .Int("nodes", map->nodes_size())
        .Raw("nodes_by_state", states.Done())
        .Uint("capacity_bytes", capacity);
    if (cm.ok) {
      o.Num("used_bytes", cm.used_bytes)
          .Num("reported_capacity_bytes", cm.capacity_bytes)
          .Num("usage", cm.capacity_bytes > 0 ? cm.used_bytes / cm.capacity_bytes : 0)
          .Raw("eviction_cutoff_seconds",
               cm.cutoff_seconds < 0 ? "null" : JsonNumber(cm.cutoff_seconds))
          .Num("migration_tasks_outstanding", cm.tasks_outstanding);
    } else {
      o.Null("used_bytes").Null("usage").Str("usage_unavailable", cm.error);
    }
    if (hr.ok) {
      o.Num("hit_rate", hr.hits + hr.misses > 0 ? hr.hits / (hr.hits + hr.misses) : 0)
          .Num("hits", hr.hits)
          .Num("misses", hr.misses);
    } else {
      o.Null("hit_rate").Str("hit_rate_unavailable", hr.error);
    }
    std::printf("%s\n", o.Done().c_str());
    return kExitOk;
  }

  std::vector<std::string> parts;
  for (int s : kStates) parts.push_back(absl::StrCat(StateName(s), " ", by_state[s]));
  std::printf("coordinator      %s\n", ctx.options().coordinator.c_str());
  if (replicated || probes.size() > 1) {
    std::vector<std::string> members;
    for (const CoordinatorProbe& p : probes) {
      members.push_back(absl::StrCat(p.address, " (", role_text(p), ")"));
    }
    std::printf("coordinators     %s\n", absl::StrJoin(members, ", ").c_str());
    if (leader != nullptr) {
      std::printf("leader           %s (term %llu, for %llds)\n", leader_address.c_str(),
                  static_cast<unsigned long long>(leader->status.leader_term()),
                  static_cast<long long>(absl::ToInt64Seconds(
                      absl::Now() - absl::FromUnixMillis(leader->status.leader_since_unix_ms()))));
    } else {
      std::printf("leader           %s\n", leader_address.empty()
                                               ? "none elected"
                                               : absl::StrCat(leader_address, " (not listed)").c_str());
    }
  }
  if (etcd != nullptr) {
    const auto& st = etcd->status;
    std::printf("etcd             %s: %s%s\n",
                st.etcd_healthy() ? "healthy" : "UNHEALTHY",
                absl::StrJoin(st.etcd_endpoints(), ",").c_str(),
                st.etcd_healthy()
                    ? absl::StrCat(" (etcd ", st.etcd_version(), ", revision ", st.etcd_revision(),
                                   ")").c_str()
                    : absl::StrCat(" (", st.etcd_error(), ")").c_str());
  }
  std::printf("epoch            %llu\n", static_cast<unsigned long long>(map->epoch()));
  std::printf("replication      R=%u, segments of %u blocks\n", map->ring().replication(),
              map->default_segment_blocks());
  std::printf("nodes            %d (%s)\n", map->nodes_size(), absl::StrJoin(parts, ", ").c_str());
  std::printf("capacity         %s (live nodes, from the map)\n", HumanBytes(capacity).c_str());
  if (cm.ok) {
    const double pct = cm.capacity_bytes > 0 ? 100.0 * cm.used_bytes / cm.capacity_bytes : 0;
    std::printf("usage            %s of %s (%.1f%%, as last heartbeated)\n",
                HumanBytes(static_cast<uint64_t>(cm.used_bytes)).c_str(),
                HumanBytes(static_cast<uint64_t>(cm.capacity_bytes)).c_str(), pct);
    std::printf("eviction cutoff  %s\n", cm.cutoff_seconds < 0
                                             ? "none"
                                             : absl::StrFormat("%.0fs", cm.cutoff_seconds).c_str());
    std::printf("migration tasks  %.0f outstanding\n", cm.tasks_outstanding);
  } else {
    std::printf("usage            n/a: %s\n", cm.error.c_str());
  }
  if (hr.ok) {
    const double total = hr.hits + hr.misses;
    std::printf("hit rate         %s (%.0f hits, %.0f misses, %d agents)\n",
                total > 0 ? absl::StrFormat("%.1f%%", 100.0 * hr.hits / total).c_str() : "n/a",
                hr.hits, hr.misses, hr.agents);
  } else {
    std::printf("hit rate         n/a: %s\n", hr.error.c_str());
  }
  return kExitOk;
}

int RunDrain(Context& ctx, const DrainParams& params) {
  int code = 0;
  auto map = ctx.GetMap(&code);
  if (!map) return code;
  const proto::Node* n = FindNode(*map, params.node);
  if (n == nullptr) {
    return Fail(
        kExitFailed,
        absl::StrCat("no node ", params.node, " in the cluster map (epoch ", map->epoch(), ")"),
        "`kvfctl nodes` lists the node ids");
  }
  std::FILE* progress = ctx.json() ? stderr : stdout;
  uint64_t epoch = map->epoch();
  int state = n->state();
  if (state == proto::NODE_STATE_LEFT) {
    std::fprintf(progress, "node %u has already left\n", params.node);
  } else if (state == proto::NODE_STATE_DRAINING) {
    std::fprintf(progress, "node %u is already draining (epoch %llu)\n", params.node,
                 static_cast<unsigned long long>(epoch));
  } else {
    proto::NodeRequest req;
    req.set_node_id(params.node);
    proto::MembershipResponse resp;
    auto call = ctx.NewMutationCall();
    grpc::Status s = ctx.coordinator().Drain(call.get(), req, &resp);
    if (!s.ok()) {
      return ctx.RpcFailed(absl::StrCat("Drain(", params.node, ")"), s, /*mutation=*/true);
    }
    epoch = resp.epoch();
    state = resp.node().state();
    std::fprintf(progress, "node %u: %s -> %s (epoch %llu)\n", params.node, StateName(n->state()),
                 StateName(state), static_cast<unsigned long long>(epoch));
  }
  std::fflush(progress);
  if (!params.wait || state == proto::NODE_STATE_LEFT) {
    if (ctx.json()) {
      std::printf("%s\n", JsonObject()
                              .Uint("node", params.node)
                              .Str("state", StateName(state))
                              .Uint("epoch", epoch)
                              .Bool("waited", false)
                              .Done()
                              .c_str());
    }
    return kExitOk;
  }
  return WaitForLeft(ctx, params, epoch);
}

int RunUndrain(Context& ctx, uint32_t node) {
  return Membership(ctx, node, "Undrain", &proto::Coordinator::Stub::Undrain);
}

int RunLeave(Context& ctx, uint32_t node) {
  return Membership(ctx, node, "Leave", &proto::Coordinator::Stub::Leave);
}

}  // namespace kvf::ctl
