// kvfctl: the operator CLI of a kvfabric cluster (docs/kvfctl.md).
//
//   kvfctl [--coordinator=HOST:PORT] [--token=T | --token_file=F] [--tls_ca=CA.pem] [--json]
//          COMMAND ...
//
// Flags are Abseil flags, parsed here rather than by absl::ParseCommandLine so
// that a bad command line exits with status 2 (usage) and flags may come
// before or after the command; `--no-wait` and `--no_wait` are the same flag.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/block_hash.h"
#include "common/kv_layout.h"
#include "common/process.h"
#include "proto/channel.h"
#include "common/credentials.h"
#include "tools/kvfctl/commands.h"
#include "tools/kvfctl/output.h"
#include "tools/kvfctl/context.h"

// Connection and output (every command).
ABSL_FLAG(std::string, coordinator, "",
          "kvf-coordinator gRPC HOST:PORT, or several coordinators' separated by commas (the "
          "leader is found); default $KVF_COORDINATOR, else 127.0.0.1:7700");
ABSL_FLAG(std::string, token, "", "the cluster token; default $KVF_TOKEN");
ABSL_FLAG(std::string, token_file, "", "file holding the cluster token (instead of --token)");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA file: talk TLS to the coordinator and agents, verifying them with it");
ABSL_FLAG(bool, json, false, "print one JSON object instead of text");
ABSL_FLAG(absl::Duration, rpc_timeout, absl::Seconds(5), "deadline of each RPC and HTTP request");
ABSL_FLAG(std::string, coordinator_http, "",
          "kvf-coordinator's /metrics HOST:PORT (its --http_listen): usage for status and evict");
ABSL_FLAG(std::vector<std::string>, agent_http, {},
          "agents' /metrics HOST:PORT list, comma separated: hit rate for status");
// drain
ABSL_FLAG(bool, no_wait, false, "drain: return once the node is draining");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(10), "drain: give up waiting after this (exit 3)");
ABSL_FLAG(absl::Duration, poll, absl::Milliseconds(250), "drain: how often to read the map");
// join
ABSL_FLAG(bool, exec, false, "join: exec kvf-agent instead of printing its command line");
ABSL_FLAG(std::string, agent_bin, "", "join: kvf-agent to exec; default beside kvfctl, then PATH");
// evict
ABSL_FLAG(double, to, -1, "evict: target cluster usage in percent (0..100)");
ABSL_FLAG(absl::Duration, start_cutoff, absl::Hours(1),
          "evict: first age cutoff; halved each round down to 0");
ABSL_FLAG(absl::Duration, settle, absl::Seconds(30),
          "evict: how long to wait for heartbeats to report usage after evicting");
// placement
ABSL_FLAG(std::string, tokens, "", "placement: file of whitespace-separated token ids");
ABSL_FLAG(std::string, model, "", "placement: namespace model id");
ABSL_FLAG(uint32_t, num_layers, 32, "placement: layout layers");
ABSL_FLAG(uint32_t, num_kv_heads, 8, "placement: layout KV heads");
ABSL_FLAG(uint32_t, head_dim, 128, "placement: layout head dimension");
ABSL_FLAG(uint32_t, block_tokens, 16, "placement: tokens per block");
ABSL_FLAG(std::string, dtype, "fp16", "placement: fp16, bf16 or fp32");
ABSL_FLAG(uint32_t, tp_rank, 0, "placement: tensor-parallel rank");
ABSL_FLAG(uint32_t, tp_size, 1, "placement: tensor-parallel size");
ABSL_FLAG(std::string, tenant, "", "placement: namespace tenant; credential: the tenant");
ABSL_FLAG(std::string, hash, "xxh3_128", "placement: block hash, xxh3_128 or sha256");
ABSL_FLAG(uint32_t, segment_blocks, 16, "placement: blocks per placement segment");
ABSL_FLAG(std::string, namespace_id, "", "placement: 0x... namespace id instead of the spec flags");
ABSL_FLAG(std::string, extra, "", "placement: HashBlock's extra bytes (LoRA id, salt)");
// metrics
ABSL_FLAG(std::string, http, "", "metrics: the agent's /metrics HOST:PORT (its --http_listen)");

namespace kvf::ctl {
namespace {

constexpr char kUsage[] = R"(kvfctl: operate a kvfabric cluster (docs/kvfctl.md)

usage: kvfctl [--coordinator=HOST:PORT] [--token=T | --token_file=F] [--tls_ca=CA.pem] [--json]
              COMMAND ...

commands:
  status                      epoch, nodes by state, capacity, the leader and etcd's health
                              (several coordinators); usage with --coordinator_http,
                              hit rate with --agent_http=HOST:PORT,...
  nodes                       every node: id, state, control address, failure domain, capacity
  drain NODE                  drain NODE and wait until it has left [--no-wait] [--timeout=10m]
  undrain NODE                draining -> active
  leave NODE                  remove NODE at once (its ranges re-replicate from survivors)
  join [--exec] [-- AGENT FLAGS...]
                              print the kvf-agent command that joins this cluster, or exec it
  evict --to=PERCENT          evict the oldest blocks on every agent until cluster usage is at
                              most PERCENT (needs --coordinator_http)
  placement KEY | --tokens=FILE
                              owners of a block key (32 hex digits, a segment head), a
                              placement hash (0x...), or every segment of a token sequence;
                              namespace: --model, --num_layers, --num_kv_heads, --head_dim,
                              --block_tokens, --dtype, --tp_rank, --tp_size, --tenant, --hash,
                              --segment_blocks, --extra, or --namespace_id=0x...
  metrics NODE --http=HOST:PORT
                              print NODE's agent /metrics
  credential --tenant=T       print tenant T's client credential, derived from the cluster
                              token (docs/security.md); needs no coordinator

environment: KVF_COORDINATOR, KVF_TOKEN (defaults for --coordinator, --token)
exit status: 0 ok, 1 operation failed, 2 usage, 3 timeout, 4 unauthenticated,
             5 coordinator unreachable
)";

int Usage(const std::string& message) {
  return Fail(kExitUsage, message, "`kvfctl --help` lists commands and flags");
}

// Sets the kvfctl flags from argv; returns the positional arguments. Flags
// are `--name=value`, `--name value` (non-bool), `--name` / `--noname`
// (bool); `-` and `_` in names are the same; `--` ends flags.
bool ParseArgs(int argc, char** argv, std::vector<std::string>* positional, bool* help,
               std::string* error) {
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      positional->push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      positional->push_back(arg);  // join keeps what follows for kvf-agent
      continue;
    }
    std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
    std::string name = body, value;
    bool has_value = false;
    if (size_t eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    name = absl::StrReplaceAll(name, {{"-", "_"}});
    if (name == "help" || name == "h") {
      *help = true;
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    bool negated = false;
    if ((flag == nullptr || !absl::StrContains(flag->Filename(), "kvfctl")) &&
        absl::StartsWith(name, "no")) {
      absl::CommandLineFlag* base = absl::FindCommandLineFlag(name.substr(2));
      if (base != nullptr && base->IsOfType<bool>()) {
        flag = base;
        negated = true;
      }
    }
    if (flag == nullptr || !absl::StrContains(flag->Filename(), "kvfctl")) {
      *error = absl::StrCat("unknown flag ", arg);
      return false;
    }
    if (flag->IsOfType<bool>()) {
      if (negated && has_value) {
        *error = absl::StrCat(arg, ": a negated flag takes no value");
        return false;
      }
      if (!has_value) value = negated ? "false" : "true";
    } else if (!has_value) {
      if (i + 1 >= argc) {
        *error = absl::StrCat(arg, " needs a value");
        return false;
      }
      value = argv[++i];
    }
    std::string why;
    if (!flag->ParseFrom(value, &why)) {
      *error = absl::StrCat("--", name, "=", value, ": ", why);
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read --token_file ", path));
  std::stringstream buf;
  buf << in.rdbuf();
  // The current token is the first (the others are still accepted by the
  // daemons while the token is rotated).
  auto tokens = ParseTokenFile(buf.str());
  if (!tokens.ok()) return std::string();
  return (*tokens)[0];
}

// `args` must be exactly one node id.
bool OneNode(const std::string& command, const std::vector<std::string>& args, uint32_t* node,
             int* code) {
  if (args.size() != 1) {
    *code = Usage(absl::StrCat(command, " takes one node id (`kvfctl nodes` lists them)"));
    return false;
  }
  if (!ParseNodeId(args[0], node)) {
    *code = Usage(absl::StrCat("'", args[0], "' is not a node id (a number >= 1)"));
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  std::vector<std::string> positional;
  bool help = false;
  std::string error;
  if (!ParseArgs(argc, argv, &positional, &help, &error)) return Usage(error);
  if (help || (!positional.empty() && positional[0] == "help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (positional.empty()) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  const std::string command = positional[0];
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  // Only join passes arguments through (after --).
  std::vector<std::string> passthrough;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") {
      passthrough.assign(args.begin() + i + 1, args.end());
      args.resize(i);
      break;
    }
  }
  if (!passthrough.empty() && command != "join") {
    return Usage(absl::StrCat(command, " takes no arguments after --"));
  }

  Options o;
  o.coordinator = absl::GetFlag(FLAGS_coordinator);
  if (o.coordinator.empty()) {
    const char* env = std::getenv("KVF_COORDINATOR");
    o.coordinator = env != nullptr && *env != '\0' ? env : "127.0.0.1:7700";
  }
  o.token = absl::GetFlag(FLAGS_token);
  o.token_file = absl::GetFlag(FLAGS_token_file);
  if (!o.token.empty() && !o.token_file.empty()) {
    return Usage("--token and --token_file are exclusive");
  }
  if (!o.token_file.empty()) {
    auto t = ReadTokenFile(o.token_file);
    if (!t.ok()) return Usage(std::string(t.status().message()));
    o.token = *t;
    if (o.token.empty()) return Usage(absl::StrCat("--token_file ", o.token_file, " is empty"));
  } else if (o.token.empty()) {
    if (const char* env = std::getenv("KVF_TOKEN"); env != nullptr && *env != '\0') {
      o.token = env;
      o.token_from_env = true;
    }
  }
  o.json = absl::GetFlag(FLAGS_json);
  o.rpc_timeout = absl::GetFlag(FLAGS_rpc_timeout);
  if (o.rpc_timeout <= absl::ZeroDuration()) return Usage("--rpc_timeout must be positive");
  o.coordinator_http = absl::GetFlag(FLAGS_coordinator_http);
  o.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  if (!o.tls_ca.empty()) {
    auto credentials = ChannelCredentialsFor(o.tls_ca);
    if (!credentials.ok()) {
      return Usage(absl::StrCat("--tls_ca: ", credentials.status().message()));
    }
    o.credentials = *std::move(credentials);
  }
  o.agent_http = absl::GetFlag(FLAGS_agent_http);

  static const char* const kCommands[] = {"status", "nodes", "drain",     "undrain", "leave",
                                          "join",   "evict", "placement", "metrics",
                                          "credential"};
  bool known = false;
  for (const char* c : kCommands) known |= command == c;
  if (!known) return Usage(absl::StrCat("unknown command '", command, "'"));
  if (command != "metrics" && o.token.empty()) {
    return Usage("no cluster token: pass --token_file=FILE or --token=T, or set KVF_TOKEN");
  }
  if (command == "credential") {
    if (!args.empty()) return Usage("credential takes no arguments; name the tenant with --tenant");
    const std::string tenant = absl::GetFlag(FLAGS_tenant);
    auto credential = TenantCredential(o.token, tenant);
    if (!credential.ok()) return Usage(std::string(credential.status().message()));
    if (o.json) {
      std::printf("%s\n",
                  JsonObject().Str("tenant", tenant).Str("credential", *credential).Done().c_str());
    } else {
      std::printf("%s\n", credential->c_str());
    }
    return 0;
  }
  Context ctx(o);
  int code = 0;
  uint32_t node = 0;

  if (command == "status" || command == "nodes") {
    if (!args.empty()) return Usage(absl::StrCat(command, " takes no arguments"));
    return command == "status" ? RunStatus(ctx) : RunNodes(ctx);
  }
  if (command == "drain") {
    if (!OneNode(command, args, &node, &code)) return code;
    DrainParams p;
    p.node = node;
    p.wait = !absl::GetFlag(FLAGS_no_wait);
    p.timeout = absl::GetFlag(FLAGS_timeout);
    p.poll = absl::GetFlag(FLAGS_poll);
    if (p.timeout <= absl::ZeroDuration() || p.poll <= absl::ZeroDuration()) {
      return Usage("--timeout and --poll must be positive");
    }
    return RunDrain(ctx, p);
  }
  if (command == "undrain" || command == "leave") {
    if (!OneNode(command, args, &node, &code)) return code;
    return command == "undrain" ? RunUndrain(ctx, node) : RunLeave(ctx, node);
  }
  if (command == "join") {
    if (!args.empty()) {
      return Usage("join: put kvf-agent flags after --, e.g. `kvfctl join -- --failure_domain=r1`");
    }
    JoinParams p;
    p.exec = absl::GetFlag(FLAGS_exec);
    p.agent_bin = absl::GetFlag(FLAGS_agent_bin);
    p.agent_args = passthrough;
    return RunJoin(ctx, p);
  }
  if (command == "evict") {
    if (!args.empty()) return Usage("evict takes no arguments; give the target as --to=PERCENT");
    EvictParams p;
    p.to_percent = absl::GetFlag(FLAGS_to);
    if (!(p.to_percent >= 0 && p.to_percent <= 100)) {
      return Usage("evict needs --to=PERCENT, 0..100");
    }
    p.start_cutoff = absl::GetFlag(FLAGS_start_cutoff);
    p.settle = absl::GetFlag(FLAGS_settle);
    if (p.start_cutoff < absl::ZeroDuration() || p.settle < absl::ZeroDuration()) {
      return Usage("--start_cutoff and --settle must not be negative");
    }
    return RunEvict(ctx, p);
  }
  if (command == "placement") {
    PlacementParams p;
    p.tokens_file = absl::GetFlag(FLAGS_tokens);
    if (p.tokens_file.empty() == args.empty() || args.size() > 1) {
      return Usage("placement takes one KEY (32 hex digits or 0x...) or --tokens=FILE");
    }
    if (!args.empty()) p.key = args[0];
    p.spec.model_id = absl::GetFlag(FLAGS_model);
    p.spec.layout.num_layers = absl::GetFlag(FLAGS_num_layers);
    p.spec.layout.num_kv_heads = absl::GetFlag(FLAGS_num_kv_heads);
    p.spec.layout.head_dim = absl::GetFlag(FLAGS_head_dim);
    p.spec.layout.block_tokens = absl::GetFlag(FLAGS_block_tokens);
    auto dtype = ParseDType(absl::GetFlag(FLAGS_dtype));
    if (!dtype.ok()) return Usage(std::string(dtype.status().message()));
    p.spec.layout.dtype = *dtype;
    p.spec.tp_rank = absl::GetFlag(FLAGS_tp_rank);
    p.spec.tp_size = absl::GetFlag(FLAGS_tp_size);
    p.spec.tenant = absl::GetFlag(FLAGS_tenant);
    auto hash = ParseHashAlgorithm(absl::GetFlag(FLAGS_hash));
    if (!hash.ok()) return Usage(std::string(hash.status().message()));
    p.spec.hash = *hash;
    p.spec.segment_blocks = absl::GetFlag(FLAGS_segment_blocks);
    if (p.spec.segment_blocks == 0 || p.spec.layout.block_tokens == 0) {
      return Usage("--segment_blocks and --block_tokens must be positive");
    }
    if (const std::string id = absl::GetFlag(FLAGS_namespace_id); !id.empty()) {
      absl::string_view hex = id;
      if (!absl::ConsumePrefix(&hex, "0x") || hex.empty() || hex.size() > 16 ||
          !absl::SimpleHexAtoi(hex, &p.namespace_id)) {
        return Usage(absl::StrCat("--namespace_id=", id, ": want 0x and up to 16 hex digits"));
      }
      p.have_namespace_id = true;
    }
    p.extra = absl::GetFlag(FLAGS_extra);
    return RunPlacement(ctx, p);
  }
  // metrics
  if (!OneNode(command, args, &node, &code)) return code;
  return RunMetrics(ctx, node, absl::GetFlag(FLAGS_http));
}

}  // namespace
}  // namespace kvf::ctl

int main(int argc, char** argv) {
  kvf::ConfigureProcessForServing();
  return kvf::ctl::Main(argc, argv);
}
