#include "common/credentials.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kvf {
namespace {

constexpr std::string_view kCredentialContext = "kvfabric tenant credential v1\n";
constexpr std::string_view kVersionContext = "kvfabric version tag v1\n";

std::array<uint8_t, 32> HmacSha256(std::string_view key, std::string_view message) {
  std::array<uint8_t, 32> mac{};
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac.data(),
           &length) == nullptr ||
      length != mac.size()) {
    // As for block hashing (internal/sha256.h): a libcrypto that cannot do
    // HMAC-SHA256 is a broken installation; failing open is not an option.
    KVF_LOG(ERROR) << "libcrypto cannot compute HMAC-SHA256";
    std::abort();
  }
  return mac;
}

absl::Status CheckTenant(std::string_view tenant) {
  if (tenant.size() > NamespaceSpec::kMaxStringLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("tenant name of ", tenant.size(), " bytes exceeds ",
                     NamespaceSpec::kMaxStringLength));
  }
  for (char c : tenant) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("tenant name has a control character");
    }
  }
  return absl::OkStatus();
}

std::string Hex(const std::array<uint8_t, 32>& mac) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()));
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

absl::StatusOr<std::string> TenantCredential(std::string_view cluster_token,
                                             std::string_view tenant) {
  if (cluster_token.empty()) return absl::InvalidArgumentError("the cluster token is empty");
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  const std::string message = absl::StrCat(absl::string_view(kCredentialContext.data(), kCredentialContext.size()),
                                           absl::string_view(tenant.data(), tenant.size()));
  return absl::StrCat(absl::string_view(kTenantCredentialPrefix.data(), kTenantCredentialPrefix.size()),
                      absl::string_view(tenant.data(), tenant.size()), ".",
                      Hex(HmacSha256(cluster_token, message)));
}

bool CredentialTenant(std::string_view presented, std::string* tenant) {
  tenant->clear();
  if (presented.substr(0, kTenantCredentialPrefix.size()) != kTenantCredentialPrefix) return false;
  const size_t dot = presented.rfind('.');
  if (dot < kTenantCredentialPrefix.size()) return false;
  *tenant = std::string(presented.substr(kTenantCredentialPrefix.size(),
                                         dot - kTenantCredentialPrefix.size()));
  return true;
}

absl::StatusOr<Principal> VerifyCredential(std::string_view presented,
                                           std::string_view cluster_token) {
  const absl::Status refused = absl::UnauthenticatedError("credential refused");
  if (cluster_token.empty() || presented.empty()) return refused;
  if (ConstantTimeEqual(presented, cluster_token)) return Principal{.cluster = true, .tenant = ""};
  std::string tenant;
  if (!CredentialTenant(presented, &tenant)) return refused;
  absl::StatusOr<std::string> expected = TenantCredential(cluster_token, tenant);
  if (!expected.ok() || !ConstantTimeEqual(presented, *expected)) return refused;
  return Principal{.cluster = false, .tenant = std::move(tenant)};
}

uint64_t VersionTag(std::string_view cluster_token, NamespaceId ns, const BlockKey& key,
                    const Version& version) {
  std::string message(kVersionContext);
  for (uint64_t v : {static_cast<uint64_t>(ns), key.hi, key.lo, version.epoch, version.counter}) {
    for (int i = 0; i < 8; ++i) message.push_back(static_cast<char>(v >> (8 * i)));
  }
  const std::array<uint8_t, 32> mac = HmacSha256(cluster_token, message);
  uint64_t tag = 0;
  for (int i = 0; i < 8; ++i) tag |= static_cast<uint64_t>(mac[i]) << (8 * i);
  return tag;
}

uint64_t SecureRandom64() {
  uint64_t v = 0;
  while (v == 0) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof(v)) != 1) {
      KVF_LOG(ERROR) << "libcrypto's random source failed";
      std::abort();
    }
  }
  return v;
}

}  // namespace kvf
