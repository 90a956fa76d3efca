#include "tools/kvfctl/context.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/auth.h"
#include "proto/channel.h"

namespace kvf::ctl {
namespace {

// "FAILED_PRECONDITION": gRPC and absl codes are the same numbers.
std::string CodeName(const grpc::Status& status) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
}

}  // namespace

Metrics ParseMetrics(const std::string& text) {
  Metrics out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    // The value follows the last space (labels may hold spaces only inside
    // quotes, before it); an optional timestamp is not written by kvfabric.
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    double v = 0;
    if (!absl::SimpleAtod(line.substr(space + 1), &v)) continue;
    out[std::string(absl::StripAsciiWhitespace(line.substr(0, space)))] = v;
  }
  return out;
}

absl::StatusOr<std::string> HttpGet(const std::string& host_port, const std::string& path,
                                    absl::Duration timeout) {
  const size_t colon = host_port.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(host_port).substr(colon + 1), &port) || port <= 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", host_port, "' is not HOST:PORT"));
  }
  std::string host = host_port.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  httplib::Client client(host, port);
  const int64_t us = absl::ToInt64Microseconds(timeout);
  client.set_connection_timeout(us / 1000000, us % 1000000);
  client.set_read_timeout(us / 1000000, us % 1000000);
  httplib::Result res = client.Get(path.c_str());
  if (!res) {
    return absl::UnavailableError(
        absl::StrCat("GET http://", host_port, path, ": ", httplib::to_string(res.error())));
  }
  if (res->status != 200) {
    return absl::InternalError(
        absl::StrCat("GET http://", host_port, path, ": HTTP ", res->status));
  }
  return res->body;
}

int Fail(int code, const std::string& message, const std::string& hint) {
  std::fprintf(stderr, "kvfctl: %s\n", message.c_str());
  if (!hint.empty()) std::fprintf(stderr, "  %s\n", hint.c_str());
  return code;
}

Context::Context(Options options) : options_(std::move(options)) {}

std::vector<std::string> Context::CoordinatorList() const {
  std::vector<std::string> list;
  for (absl::string_view a : absl::StrSplit(options_.coordinator, ',', absl::SkipWhitespace())) {
    list.emplace_back(absl::StripAsciiWhitespace(a));
  }
  if (list.empty()) list.push_back(options_.coordinator);
  return list;
}

std::vector<CoordinatorProbe> Context::ProbeCoordinators() const {
  std::vector<CoordinatorProbe> probes;
  for (const std::string& address : CoordinatorList()) {
    CoordinatorProbe p;
    p.address = address;
    auto stub = proto::Coordinator::NewStub(OpenChannel(address, options_.credentials));
    auto call = NewCall(std::min(options_.rpc_timeout, absl::Seconds(2)));
    grpc::Status s =
        stub->CoordinatorStatus(call.get(), proto::CoordinatorStatusRequest(), &p.status);
    p.reachable = s.ok();
    if (!s.ok()) p.error = absl::StrCat(s.error_message(), " (", CodeName(s), ")");
    probes.push_back(std::move(p));
  }
  return probes;
}

proto::Coordinator::Stub& Context::coordinator() {
  if (stub_ == nullptr) {
    std::vector<std::string> list = CoordinatorList();
    active_ = list[0];
    {
      // The leader takes writes; any member serves reads. (A single
      // follower named: its leader.)
      std::string answered;
      for (const CoordinatorProbe& p : ProbeCoordinators()) {
        if (!p.reachable) continue;
        if (answered.empty()) answered = p.address;
        if (p.status.role() != proto::CoordinatorStatusResponse::ROLE_FOLLOWER) {
          answered = p.address;
          break;
        }
        if (!p.status.leader_address().empty()) {
          answered = p.status.leader_address();
          break;
        }
      }
      if (!answered.empty()) active_ = answered;
    }
    // Short reconnect backoff: an operator wants "unreachable" now.
    channel_ = OpenChannel(active_, options_.credentials);
    stub_ = proto::Coordinator::NewStub(channel_);
  }
  return *stub_;
}

std::unique_ptr<grpc::ClientContext> Context::NewCall() const {
  return NewCall(options_.rpc_timeout);
}

std::unique_ptr<grpc::ClientContext> Context::NewCall(absl::Duration timeout) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  AddClusterToken(ctx.get(), options_.token);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::microseconds(absl::ToInt64Microseconds(timeout)));
  return ctx;
}

std::unique_ptr<grpc::ClientContext> Context::NewMutationCall() const {
  return NewCall(std::max(options_.rpc_timeout, absl::Seconds(30)));
}

std::optional<proto::ClusterMap> Context::GetMap(int* exit_code) {
  proto::ClusterMap map;
  auto ctx = NewCall();
  grpc::Status s = coordinator().GetClusterMap(ctx.get(), proto::GetClusterMapRequest(), &map);
  if (!s.ok()) {
    *exit_code = RpcFailed("GetClusterMap", s);
    return std::nullopt;
  }
  return map;
}

int Context::RpcFailed(const std::string& what, const grpc::Status& status, bool mutation) const {
  const std::string& at = active_.empty() ? options_.coordinator : active_;
  const std::string msg = absl::StrCat(what, " at ", at, ": ", status.error_message(), " (",
                                       CodeName(status), ")");
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      absl::StrContains(status.error_message(), "not the leader")) {
    return Fail(kExitUnreachable, msg,
                "this coordinator is a follower: pass the leader's address, or every "
                "coordinator's (--coordinator=a,b,c) and kvfctl finds the leader");
  }
  switch (status.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
      return Fail(kExitUnauthenticated, msg,
                  "the coordinator refused the cluster token: check --token/--token_file "
                  "(or KVF_TOKEN)");
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (mutation) {
        return Fail(kExitUnreachable, msg,
                    "the coordinator did not answer in time; the change may have been made: "
                    "`kvfctl nodes` shows the node's state before you retry");
      }
      [[fallthrough]];
    case grpc::StatusCode::UNAVAILABLE:
      return Fail(kExitUnreachable, msg,
                  absl::StrCat("is kvf-coordinator running at ", at,
                               "? (--coordinator or KVF_COORDINATOR)",
                               options_.tls_ca.empty()
                                   ? " If it serves TLS, pass --tls_ca=CA.pem."
                                   : " Does --tls_ca sign its certificate, and does the "
                                     "certificate name that address?"));
    case grpc::StatusCode::NOT_FOUND:
      return Fail(kExitFailed, msg, "`kvfctl nodes` lists the node ids");
    case grpc::StatusCode::FAILED_PRECONDITION:
      return Fail(kExitFailed, msg,
                  "the node is not in a state that allows this; `kvfctl nodes` shows its state");
    default:
      return Fail(kExitFailed, msg);
  }
}

int Context::AgentRpcFailed(const std::string& what, const std::string& address,
                            const grpc::Status& status) const {
  const std::string msg = absl::StrCat(what, " at agent ", address, ": ", status.error_message(),
                                       " (", CodeName(status), ")");
  switch (status.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
      return Fail(kExitUnauthenticated, msg,
                  "the agent refused the token: check --token/--token_file");
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Fail(kExitUnreachable, msg,
                  absl::StrCat("is kvf-agent running at ", address,
                               "? (its control address as the cluster map has it)"));
    default:
      return Fail(kExitFailed, msg);
  }
}

const char* StateName(int proto_state) {
  switch (proto_state) {
    case proto::NODE_STATE_JOINING:
      return "joining";
    case proto::NODE_STATE_ACTIVE:
      return "active";
    case proto::NODE_STATE_DRAINING:
      return "draining";
    case proto::NODE_STATE_DOWN:
      return "down";
    case proto::NODE_STATE_LEFT:
      return "left";
    default:
      return "unknown";
  }
}

bool IsLive(int proto_state) {
  return proto_state == proto::NODE_STATE_JOINING || proto_state == proto::NODE_STATE_ACTIVE ||
         proto_state == proto::NODE_STATE_DRAINING;
}

const proto::Node* FindNode(const proto::ClusterMap& map, uint32_t id) {
  for (const proto::Node& n : map.nodes()) {
    if (n.id() == id) return &n;
  }
  return nullptr;
}

}  // namespace kvf::ctl
