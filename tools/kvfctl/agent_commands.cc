// join, evict, metrics: commands that reach agents, or start one.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/agent_control.grpc.pb.h"
#include "proto/channel.h"
#include "tools/kvfctl/commands.h"
#include "tools/kvfctl/output.h"

namespace kvf::ctl {
namespace {

// `arg` quoted for a POSIX shell when it needs it.
std::string ShellQuote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789-_=./:,@+%") == std::string::npos) {
    return arg;
  }
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// kvf-agent beside this kvfctl (an installed bin/ directory), if there is one.
std::string AgentBesideUs() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  std::filesystem::path candidate = self.parent_path() / "kvf-agent";
  if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  return "";
}

// The coordinator's usage as heartbeats last reported it.
struct Usage {
  double used = 0;
  double capacity = 0;
  double heartbeats = 0;
};

absl::StatusOr<Usage> ReadUsage(const Context& ctx) {
  auto body = HttpGet(ctx.options().coordinator_http, "/metrics", ctx.options().rpc_timeout);
  if (!body.ok()) return body.status();
  Metrics m = ParseMetrics(*body);
  auto used = m.find("kvf_coordinator_used_bytes");
  auto cap = m.find("kvf_coordinator_capacity_bytes");
  auto hb = m.find("kvf_coordinator_heartbeats_total");
  if (used == m.end() || cap == m.end() || hb == m.end()) {
    return absl::NotFoundError(absl::StrCat("http://", ctx.options().coordinator_http,
                                            "/metrics has no kvf_coordinator_used_bytes, "
                                            "kvf_coordinator_capacity_bytes or heartbeats "
                                            "(not a kvf-coordinator?)"));
  }
  return Usage{used->second, cap->second, hb->second};
}

// Waits until the coordinator has taken `beats` more heartbeats than
// `after.heartbeats` (so the agents' usage after an eviction is in), or
// `settle` passes; returns the usage then.
absl::StatusOr<Usage> SettledUsage(const Context& ctx, const Usage& after, double beats,
                                   absl::Duration settle) {
  const absl::Time deadline = absl::Now() + settle;
  for (;;) {
    auto u = ReadUsage(ctx);
    if (!u.ok() || u->heartbeats >= after.heartbeats + beats || absl::Now() >= deadline) return u;
    absl::SleepFor(absl::Milliseconds(100));
  }
}

int UsageFailed(const absl::Status& s) {
  return Fail(s.code() == absl::StatusCode::kUnavailable ? kExitUnreachable : kExitFailed,
              absl::StrCat("cannot read cluster usage: ", std::string(s.message())),
              "evict needs the coordinator's /metrics: --coordinator_http=HOST:PORT "
              "(kvf-coordinator's --http_listen)");
}

}  // namespace

int RunJoin(Context& ctx, const JoinParams& params) {
  const Options& o = ctx.options();
  std::vector<std::string> argv = {"kvf-agent", absl::StrCat("--coordinator=", o.coordinator)};
  std::string token_shown;
  if (!o.token_file.empty()) {
    std::error_code ec;
    std::string abs = std::filesystem::absolute(o.token_file, ec).string();
    argv.push_back(absl::StrCat("--token_file=", ec ? o.token_file : abs));
  } else if (o.token_from_env && !params.exec) {
    // Not expanded: the printed command reads the token from the shell it
    // runs in, so the secret is not echoed.
    argv.push_back("--token=$KVF_TOKEN");
  } else if (!o.token.empty()) {
    argv.push_back(absl::StrCat("--token=", o.token));
  } else {
    return Fail(kExitUsage, "join needs the cluster token the agent will use",
                "pass --token_file=FILE (preferred: the agent reads the same file)");
  }
  if (!o.tls_ca.empty()) {
    // The agent checks the coordinator's certificate with the same roots.
    std::error_code ec;
    std::string abs = std::filesystem::absolute(o.tls_ca, ec).string();
    argv.push_back(absl::StrCat("--tls_ca=", ec ? o.tls_ca : abs));
  }
  for (const std::string& a : params.agent_args) {
    if (absl::StartsWith(a, "--coordinator=") || absl::StartsWith(a, "--token") ||
        absl::StartsWith(a, "--tls_ca=")) {
      return Fail(kExitUsage,
                  absl::StrCat("'", a, "': kvfctl sets the agent's coordinator, token and CA"),
                  "set them with kvfctl's own --coordinator, --token_file and --tls_ca");
    }
    argv.push_back(a);
  }

  // The command is only useful if the coordinator answers with this token.
  int code = 0;
  auto map = ctx.GetMap(&code);
  if (!map) return code;

  if (!params.exec) {
    std::vector<std::string> shown;
    for (const std::string& a : argv) {
      shown.push_back(a == "--token=$KVF_TOKEN" ? "--token=\"$KVF_TOKEN\"" : ShellQuote(a));
    }
    const std::string line = absl::StrJoin(shown, " ");
    if (ctx.json()) {
      JsonArray args;
      for (const std::string& a : argv) args.Str(a);
      std::printf("%s\n", JsonObject()
                              .Uint("epoch", map->epoch())
                              .Raw("argv", args.Done())
                              .Str("command", line)
                              .Done()
                              .c_str());
    } else {
      std::fprintf(stderr,
                   "# agents join by themselves; run this on the new host (epoch %llu, %d nodes "
                   "in the map). Add --failure_domain, --host_bytes, --listen as needed.\n",
                   static_cast<unsigned long long>(map->epoch()), map->nodes_size());
      std::printf("%s\n", line.c_str());
    }
    return kExitOk;
  }

  std::string bin = params.agent_bin.empty() ? AgentBesideUs() : params.agent_bin;
  if (bin.empty()) bin = "kvf-agent";  // PATH
  argv[0] = bin;
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  ::execvp(cargv[0], cargv.data());
  return Fail(kExitFailed, absl::StrCat("cannot exec ", bin, ": ", std::strerror(errno)),
              "put kvf-agent next to kvfctl or on PATH, or pass --agent_bin=PATH");
}

int RunEvict(Context& ctx, const EvictParams& params) {
  if (ctx.options().coordinator_http.empty()) {
    return Fail(kExitUsage, "evict needs --coordinator_http=HOST:PORT",
                "cluster usage comes from kvf-coordinator's /metrics (its --http_listen)");
  }
  auto usage = ReadUsage(ctx);
  if (!usage.ok()) return UsageFailed(usage.status());
  if (usage->capacity <= 0) {
    return Fail(kExitFailed, "the coordinator reports no capacity (no live node heartbeated yet)",
                "wait for agents to join, then retry");
  }
  const double target = params.to_percent / 100.0 * usage->capacity;
  const double start_used = usage->used;
  auto pct = [&](double used) { return 100.0 * used / usage->capacity; };
  std::FILE* progress = ctx.json() ? stderr : stdout;
  auto finish = [&](int code, double used, uint64_t evicted, uint64_t last_cutoff_ms,
                    bool reached) {
    if (ctx.json()) {
      std::printf("%s\n", JsonObject()
                              .Num("target_percent", params.to_percent)
                              .Num("usage_percent_before", pct(start_used))
                              .Num("usage_percent", pct(used))
                              .Uint("evicted_bytes", evicted)
                              .Uint("last_cutoff_ms", last_cutoff_ms)
                              .Bool("reached", reached)
                              .Done()
                              .c_str());
    }
    return code;
  };
  if (usage->used <= target) {
    if (!ctx.json()) {
      std::printf("usage %.1f%% is already at or below %.1f%%; nothing evicted\n", pct(usage->used),
                  params.to_percent);
    }
    return finish(kExitOk, usage->used, 0, 0, true);
  }

  int code = 0;
  auto map = ctx.GetMap(&code);
  if (!map) return code;
  std::vector<const proto::Node*> live;
  for (const proto::Node& n : map->nodes()) {
    if (IsLive(n.state())) live.push_back(&n);
  }
  std::fprintf(progress, "usage %.1f%% (%s of %s), target %.1f%%; %zu live agents\n",
               pct(usage->used), HumanBytes(static_cast<uint64_t>(usage->used)).c_str(),
               HumanBytes(static_cast<uint64_t>(usage->capacity)).c_str(), params.to_percent,
               live.size());

  std::vector<std::unique_ptr<proto::AgentControl::Stub>> stubs;
  for (const proto::Node* n : live) {
    stubs.push_back(proto::AgentControl::NewStub(
        OpenChannel(n->address(), ctx.options().credentials)));
  }
  uint64_t evicted_total = 0;
  int failed_agents = 0;
  absl::Duration cutoff = params.start_cutoff;
  for (;;) {
    const uint64_t cutoff_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(cutoff));
    uint64_t evicted = 0;
    for (size_t i = 0; i < live.size(); ++i) {
      proto::EvictionCutoffRequest req;
      req.set_epoch(map->epoch());
      req.set_cutoff_ms(cutoff_ms);
      proto::EvictionCutoffResponse resp;
      auto call = ctx.NewCall();
      grpc::Status s = stubs[i]->ApplyEvictionCutoff(call.get(), req, &resp);
      if (!s.ok()) {
        const int c = ctx.AgentRpcFailed(
            absl::StrCat("ApplyEvictionCutoff on node ", live[i]->id()), live[i]->address(), s);
        if (c == kExitUnauthenticated) return c;
        ++failed_agents;
        continue;
      }
      evicted += resp.evicted_bytes();
    }
    evicted_total += evicted;
    std::fprintf(progress, "cutoff %-10s evicted %s\n",
                 absl::FormatDuration(absl::Milliseconds(cutoff_ms)).c_str(),
                 HumanBytes(evicted).c_str());
    std::fflush(progress);

    // Agents report what they evicted; the coordinator sees it with their
    // next heartbeats. Confirm from there only when the estimate says done
    // (or nothing is left to try), so a round costs RPCs, not heartbeats.
    const double estimate = start_used - static_cast<double>(evicted_total);
    if (estimate <= target || cutoff_ms == 0) {
      auto before = ReadUsage(ctx);
      if (!before.ok()) return UsageFailed(before.status());
      auto now = SettledUsage(ctx, *before, 2.0 * static_cast<double>(live.size()), params.settle);
      if (!now.ok()) return UsageFailed(now.status());
      std::fprintf(progress, "usage now %.1f%% (from heartbeats)\n", pct(now->used));
      if (now->used <= target) {
        if (!ctx.json()) {
          std::printf("usage %.1f%% -> %.1f%% (target %.1f%%), %s evicted, last cutoff %s\n",
                      pct(start_used), pct(now->used), params.to_percent,
                      HumanBytes(evicted_total).c_str(),
                      absl::FormatDuration(absl::Milliseconds(cutoff_ms)).c_str());
        }
        if (failed_agents > 0) {
          return finish(
              Fail(kExitFailed, absl::StrCat(failed_agents, " agent calls failed (above)")),
              now->used, evicted_total, cutoff_ms, true);
        }
        return finish(kExitOk, now->used, evicted_total, cutoff_ms, true);
      }
      if (cutoff_ms == 0) {
        return finish(Fail(kExitFailed,
                           absl::StrFormat("usage still %.1f%% after evicting every block not "
                                           "pinned (target %.1f%%)",
                                           pct(now->used), params.to_percent),
                           "what is left is pinned by leases or in-flight copies, or some agents "
                           "did not answer; retry later"),
                      now->used, evicted_total, cutoff_ms, false);
      }
    }
    cutoff = cutoff >= absl::Seconds(2) ? cutoff / 2 : absl::ZeroDuration();
  }
}

int RunMetrics(Context& ctx, uint32_t node, std::string http) {
  if (http.empty()) {
    int code = 0;
    auto map = ctx.GetMap(&code);
    if (!map) return code;
    if (const proto::Node* n = FindNode(*map, node); n != nullptr) http = n->http_address();
  }
  if (http.empty()) {
    return Fail(kExitUsage,
                absl::StrCat("node ", node, " has no HTTP address in the cluster map"),
                "pass --http=HOST:PORT (the agent's --http_listen, printed as http= in its ready "
                "line)");
  }
  // /healthz says which node answers ("ok node=N epoch=E"), so a wrong
  // --http is caught rather than printed as NODE's metrics.
  auto health = HttpGet(http, "/healthz", ctx.options().rpc_timeout);
  if (health.ok()) {
    for (absl::string_view part : absl::StrSplit(*health, absl::ByAnyChar(" \n"))) {
      uint32_t id = 0;
      if (absl::ConsumePrefix(&part, "node=") && absl::SimpleAtoi(part, &id) && id != node) {
        return Fail(kExitFailed, absl::StrCat(http, " is node ", id, ", not node ", node),
                    "check --http");
      }
    }
  }
  auto body = HttpGet(http, "/metrics", ctx.options().rpc_timeout);
  if (!body.ok()) {
    return Fail(
        body.status().code() == absl::StatusCode::kUnavailable ? kExitUnreachable : kExitFailed,
        std::string(body.status().message()),
        absl::StrCat("is node ", node, "'s kvf-agent serving HTTP at ", http, "?"));
  }
  if (ctx.json()) {
    JsonObject metrics;
    for (const auto& [series, value] : ParseMetrics(*body)) metrics.Num(series, value);
    std::printf("%s\n", JsonObject()
                            .Uint("node", node)
                            .Str("http", http)
                            .Raw("metrics", metrics.Done())
                            .Done()
                            .c_str());
  } else {
    std::fwrite(body->data(), 1, body->size(), stdout);
  }
  return kExitOk;
}

}  // namespace kvf::ctl
