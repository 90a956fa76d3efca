#include "common/credentials.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace kvf {
namespace {

TEST(Credentials, TenantCredentialIsTheDocumentedHmac) {
  // HMAC-SHA256("abc", "kvfabric tenant credential v1\nacme"), computed with
  // Python's hmac module.
  EXPECT_EQ(*TenantCredential("abc", "acme"),
            "kvft1.acme.d25af7d5f4c6f44ccfddfdf83e90354b75870afac51bfda0237111453838927b");
}

TEST(Credentials, BadTokensAndTenantsAreRefused) {
  EXPECT_EQ(TenantCredential("", "acme").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TenantCredential("t", std::string(1, '\n')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TenantCredential("t", std::string(NamespaceSpec::kMaxStringLength + 1, 'a'))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Dots and the empty (default) tenant are fine.
  EXPECT_TRUE(TenantCredential("t", "a.b.c").ok());
  EXPECT_TRUE(TenantCredential("t", "").ok());
}

TEST(Credentials, VerifySaysWhatTheSecretProves) {
  const std::string token = "cluster-secret";
  auto cluster = VerifyCredential(token, token);
  ASSERT_TRUE(cluster.ok());
  EXPECT_TRUE(cluster->cluster);
  for (const std::string tenant : {"acme", "", "a.b"}) {
    auto p = VerifyCredential(*TenantCredential(token, tenant), token);
    ASSERT_TRUE(p.ok()) << tenant;
    EXPECT_FALSE(p->cluster);
    EXPECT_EQ(p->tenant, tenant);
  }
  std::string tampered = *TenantCredential(token, "acme");
  tampered.back() = tampered.back() == '0' ? '1' : '0';
  const std::string renamed = "kvft1.evil" + TenantCredential(token, "acme")->substr(10);
  for (const std::string& bad :
       {std::string(), std::string("cluster-secreT"), tampered, renamed,
        *TenantCredential("other-cluster", "acme"), std::string("kvft1.acme"),
        std::string("kvft1.")}) {
    EXPECT_EQ(VerifyCredential(bad, token).status().code(), absl::StatusCode::kUnauthenticated)
        << bad;
  }
  // An empty token never matches, not even an empty secret.
  EXPECT_FALSE(VerifyCredential("", "").ok());
}

TEST(Credentials, VersionTagsBindTokenNamespaceKeyAndVersion) {
  const BlockKey key{1, 2};
  const Version v{3, 4};
  const uint64_t tag = VersionTag("t", 5, key, v);
  EXPECT_EQ(tag, VersionTag("t", 5, key, v));
  std::set<uint64_t> others = {VersionTag("u", 5, key, v), VersionTag("t", 6, key, v),
                               VersionTag("t", 5, BlockKey{1, 3}, v),
                               VersionTag("t", 5, key, Version{3, 5}),
                               VersionTag("t", 5, key, Version{4, 4})};
  EXPECT_EQ(others.size(), 5u);
  EXPECT_FALSE(others.contains(tag));
}

TEST(Credentials, TheTaggerAgreesWithTheOneShotHmac) {
  // Short, block-sized and longer-than-a-block keys (hashed first).
  for (const std::string token : {std::string("t"), std::string(64, 'k'), std::string(100, 'z')}) {
    const VersionTagger tagger(token);
    for (uint64_t i = 0; i < 50; ++i) {
      const BlockKey key{i, ~i};
      const Version v{i / 7, i};
      EXPECT_EQ(tagger.Tag(i, key, v), VersionTag(token, i, key, v)) << token.size() << " " << i;
    }
  }
}

TEST(Credentials, SecureRandomIsNeverZeroAndDoesNotRepeat) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t v = SecureRandom64();
    EXPECT_NE(v, 0u);
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

}  // namespace
}  // namespace kvf
