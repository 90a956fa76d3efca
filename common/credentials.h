// Data-plane credentials (docs/security.md).
//
// The cluster token is the root secret: agents and the coordinator hold it,
// and so does the operator. A tenant's clients hold a tenant credential
// derived from it,
//
//   "kvft1." tenant "." hex(HMAC-SHA256(token, "kvfabric tenant credential v1\n" tenant))
//
// which proves the tenant without revealing the token, and which any holder
// of the token can check without a table of issued credentials (`kvfctl
// credential --tenant T` prints one). Rotating the token revokes every tenant
// credential at once.
//
// A version tag is a primary's proof that it committed a version of a key:
// the first 8 bytes of HMAC-SHA256(token, namespace | key | version). It lets
// a replica accept a client's ack=all copy at the primary's version without
// trusting the client with versions.
//
// Thread-safety: pure functions.
#ifndef KVF_COMMON_CREDENTIALS_H_
#define KVF_COMMON_CREDENTIALS_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_key.h"
#include "common/namespace.h"
#include "common/version.h"

namespace kvf {

inline constexpr std::string_view kTenantCredentialPrefix = "kvft1.";

// The tokens of a token file: one per line, blank lines and lines starting
// with '#' skipped, surrounding whitespace stripped. The first is the current
// token (what this process sends and signs with); the others are previous
// tokens it still accepts, for rotating the token without a flag day
// (docs/security.md, "Rotation"). INVALID_ARGUMENT when there is none.
absl::StatusOr<std::vector<std::string>> ParseTokenFile(std::string_view contents);

// The credential of `tenant` under `cluster_token`. INVALID_ARGUMENT for an
// empty token, or a tenant over NamespaceSpec::kMaxStringLength bytes or with
// control characters.
absl::StatusOr<std::string> TenantCredential(std::string_view cluster_token,
                                             std::string_view tenant);

// What a presented secret proves.
struct Principal {
  bool cluster = false;  // the cluster token itself: agents and operators
  std::string tenant;    // a tenant credential: this tenant only
};

// Checks `presented` against `cluster_token` in constant time (per byte of
// the expected values). UNAUTHENTICATED, without saying which part was
// wrong, for anything else; an empty token never matches.
absl::StatusOr<Principal> VerifyCredential(std::string_view presented,
                                           std::string_view cluster_token);
// The same against any of `tokens` (the current one and previous ones).
absl::StatusOr<Principal> VerifyCredential(std::string_view presented,
                                           std::span<const std::string> tokens);

// The tenant a credential string names, without verifying it ("" and false
// for a string that is not a tenant credential).
bool CredentialTenant(std::string_view presented, std::string* tenant);

// The primary's tag for (ns, key, version) under `cluster_token`.
uint64_t VersionTag(std::string_view cluster_token, NamespaceId ns, const BlockKey& key,
                    const Version& version);

// VersionTag with the key schedule done once: HMAC's inner and outer SHA-256
// states after the padded key are kept and copied per tag, so a tag costs
// two compressions (an agent tags every commit). Thread-safe after
// construction (Tag only reads the kept states).
class VersionTagger {
 public:
  explicit VersionTagger(std::string_view cluster_token);
  ~VersionTagger();
  VersionTagger(const VersionTagger&) = delete;
  VersionTagger& operator=(const VersionTagger&) = delete;

  uint64_t Tag(NamespaceId ns, const BlockKey& key, const Version& version) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// 64 bits from the operating system's cryptographic random source (never 0).
uint64_t SecureRandom64();

}  // namespace kvf

#endif  // KVF_COMMON_CREDENTIALS_H_
