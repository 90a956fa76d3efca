#include "node/agent/sessions.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/credentials.h"

namespace kvf {
namespace {

// Cluster-token sessions (agents, operators) are counted under a name no
// tenant credential can carry (tenant names have no control characters).
constexpr char kClusterBucket[] = "\x01cluster";

std::string Bucket(const Session& s) { return s.cluster ? kClusterBucket : s.tenant; }

}  // namespace

namespace {
std::vector<std::string> AllTokens(std::string current, std::vector<std::string> previous) {
  previous.insert(previous.begin(), std::move(current));
  return previous;
}
}  // namespace

SessionTable::SessionTable(std::string cluster_token, std::vector<std::string> previous_tokens,
                           SessionLimits limits)
    : tokens_(AllTokens(std::move(cluster_token), std::move(previous_tokens))), limits_(limits) {}

absl::StatusOr<uint64_t> SessionTable::Open(const protocol::HelloRequest& hello) {
  absl::StatusOr<Principal> who = VerifyCredential(hello.credential, tokens_);
  absl::MutexLock l(&mu_);
  if (!who.ok()) {
    ++refused_;
    return absl::UnauthenticatedError("hello refused: the credential is not valid for this cluster");
  }
  if (hello.role == protocol::PeerRole::kAgent && !who->cluster) {
    ++refused_;
    return absl::UnauthenticatedError("hello refused: only the cluster token speaks for an agent");
  }
  Session s;
  s.role = hello.role;
  s.cluster = who->cluster;
  s.tenant = std::move(who->tenant);
  s.node = hello.role == protocol::PeerRole::kAgent ? static_cast<NodeId>(hello.node_id) : kNoNode;
  const std::string bucket = Bucket(s);
  size_t& count = per_tenant_[bucket];
  // The cluster's own sessions share the global bound only: agents and
  // operators are trusted not to flood.
  if ((!s.cluster && count >= limits_.max_sessions_per_tenant) ||
      sessions_.size() >= limits_.max_sessions) {
    if (count == 0) per_tenant_.erase(bucket);
    ++refused_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "hello refused: ", s.cluster ? std::string("the agent") : "tenant '" + s.tenant + "'",
        " has too many sessions (", s.cluster ? limits_.max_sessions : limits_.max_sessions_per_tenant,
        "); idle ones close after ", absl::FormatDuration(limits_.idle_ttl)));
  }
  uint64_t id = SecureRandom64();
  while (sessions_.contains(id)) id = SecureRandom64();
  ++count;
  sessions_.emplace(id, Entry{std::make_shared<const Session>(std::move(s)), absl::Now()});
  return id;
}

absl::StatusOr<std::shared_ptr<const Session>> SessionTable::Find(uint64_t id) {
  absl::MutexLock l(&mu_);
  auto it = sessions_.find(id);
  if (id == 0 || it == sessions_.end()) {
    return absl::UnauthenticatedError(
        "no such session (never opened, or idle too long): send HelloRequest first");
  }
  it->second.last_used = absl::Now();
  return it->second.session;
}

void SessionTable::Expire() {
  const absl::Time cutoff = absl::Now() - limits_.idle_ttl;
  absl::MutexLock l(&mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (it->second.last_used >= cutoff) {
      ++it;
      continue;
    }
    auto count = per_tenant_.find(Bucket(*it->second.session));
    if (count != per_tenant_.end() && --count->second == 0) per_tenant_.erase(count);
    sessions_.erase(it++);
  }
}

size_t SessionTable::size() const {
  absl::MutexLock l(&mu_);
  return sessions_.size();
}

uint64_t SessionTable::refused_hellos() const {
  absl::MutexLock l(&mu_);
  return refused_;
}

}  // namespace kvf
