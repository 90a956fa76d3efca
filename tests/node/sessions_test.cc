#include "node/agent/sessions.h"

#include <string>
#include <vector>

#include "common/credentials.h"
#include "gtest/gtest.h"

namespace kvf {
namespace {

using protocol::HelloRequest;
using protocol::PeerRole;

HelloRequest Hello(PeerRole role, std::string credential, uint32_t node = 0) {
  HelloRequest h;
  h.role = role;
  h.credential = std::move(credential);
  h.node_id = node;
  return h;
}

TEST(Sessions, EachCredentialGetsTheSessionItProves) {
  SessionTable t("current", {}, SessionLimits{});
  auto agent = t.Open(Hello(PeerRole::kAgent, "current", 7));
  auto op = t.Open(Hello(PeerRole::kClient, "current"));
  auto acme = t.Open(Hello(PeerRole::kClient, *TenantCredential("current", "acme")));
  ASSERT_TRUE(agent.ok() && op.ok() && acme.ok());
  auto a = *t.Find(*agent);
  EXPECT_TRUE(a->is_agent());
  EXPECT_TRUE(a->cluster);
  EXPECT_EQ(a->node, 7u);
  auto o = *t.Find(*op);
  EXPECT_FALSE(o->is_agent());
  EXPECT_TRUE(o->MayUse("anyone"));
  auto c = *t.Find(*acme);
  EXPECT_FALSE(c->cluster);
  EXPECT_EQ(c->tenant, "acme");
  EXPECT_TRUE(c->MayUse("acme"));
  EXPECT_FALSE(c->MayUse("victim"));
  EXPECT_FALSE(c->MayUse(""));
  EXPECT_EQ(t.size(), 3u);
}

TEST(Sessions, WrongCredentialsAndForgedRolesAreRefused) {
  SessionTable t("current", {}, SessionLimits{});
  EXPECT_EQ(t.Open(Hello(PeerRole::kClient, "wrong")).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(t.Open(Hello(PeerRole::kAgent, *TenantCredential("current", "acme"))).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(t.Find(0).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(t.Find(12345).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(t.refused_hellos(), 2u);
  EXPECT_EQ(t.size(), 0u);
}

TEST(Sessions, PreviousTokensAreAcceptedWhileTheTokenRotates) {
  SessionTable t("new", {"old"}, SessionLimits{});
  EXPECT_TRUE(t.Open(Hello(PeerRole::kAgent, "old")).ok());
  EXPECT_TRUE(t.Open(Hello(PeerRole::kAgent, "new")).ok());
  EXPECT_TRUE(t.Open(Hello(PeerRole::kClient, *TenantCredential("old", "acme"))).ok());
  EXPECT_TRUE(t.Open(Hello(PeerRole::kClient, *TenantCredential("new", "acme"))).ok());
  EXPECT_FALSE(t.Open(Hello(PeerRole::kClient, *TenantCredential("older", "acme"))).ok());
  EXPECT_EQ(t.cluster_token(), "new");
}

TEST(Sessions, ATenantsSessionsAreBoundedAndOthersStillGetIn) {
  SessionLimits limits;
  limits.max_sessions_per_tenant = 3;
  limits.max_sessions = 5;
  SessionTable t("tok", {}, limits);
  const std::string acme = *TenantCredential("tok", "acme");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(t.Open(Hello(PeerRole::kClient, acme)).ok());
  auto more = t.Open(Hello(PeerRole::kClient, acme));
  EXPECT_EQ(more.status().code(), absl::StatusCode::kResourceExhausted) << more.status();
  EXPECT_TRUE(t.Open(Hello(PeerRole::kClient, *TenantCredential("tok", "other"))).ok());
  EXPECT_TRUE(t.Open(Hello(PeerRole::kAgent, "tok")).ok());
  // The global bound holds for everyone, the cluster included.
  EXPECT_EQ(t.Open(Hello(PeerRole::kAgent, "tok")).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(Sessions, IdleSessionsAreForgottenAndFreeTheirTenantsSlots) {
  SessionLimits limits;
  limits.max_sessions_per_tenant = 1;
  limits.idle_ttl = absl::ZeroDuration();
  SessionTable t("tok", {}, limits);
  const std::string acme = *TenantCredential("tok", "acme");
  auto s = t.Open(Hello(PeerRole::kClient, acme));
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(t.Open(Hello(PeerRole::kClient, acme)).ok());
  t.Expire();
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.Find(*s).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(t.Open(Hello(PeerRole::kClient, acme)).ok());
}

}  // namespace
}  // namespace kvf
