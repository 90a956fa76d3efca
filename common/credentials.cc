#include "common/credentials.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <cstring>
#include <memory>
#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
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

namespace {

std::string VersionMessage(NamespaceId ns, const BlockKey& key, const Version& version) {
  std::string message(kVersionContext);
  for (uint64_t v : {static_cast<uint64_t>(ns), key.hi, key.lo, version.epoch, version.counter}) {
    for (int i = 0; i < 8; ++i) message.push_back(static_cast<char>(v >> (8 * i)));
  }
  return message;
}

uint64_t FirstEightBytes(const uint8_t* mac) {
  uint64_t tag = 0;
  for (int i = 0; i < 8; ++i) tag |= static_cast<uint64_t>(mac[i]) << (8 * i);
  return tag;
}

[[noreturn]] void CryptoFailed() {
  KVF_LOG(ERROR) << "libcrypto cannot compute SHA-256";
  std::abort();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseTokenFile(std::string_view contents) {
  std::vector<std::string> tokens;
  for (absl::string_view line : absl::StrSplit(absl::string_view(contents.data(), contents.size()), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    tokens.emplace_back(line);
  }
  if (tokens.empty()) return absl::InvalidArgumentError("the token file holds no token");
  return tokens;
}

absl::StatusOr<Principal> VerifyCredential(std::string_view presented,
                                           std::span<const std::string> tokens) {
  for (const std::string& token : tokens) {
    absl::StatusOr<Principal> p = VerifyCredential(presented, token);
    if (p.ok()) return p;
  }
  return absl::UnauthenticatedError("credential refused");
}

uint64_t VersionTag(std::string_view cluster_token, NamespaceId ns, const BlockKey& key,
                    const Version& version) {
  return FirstEightBytes(HmacSha256(cluster_token, VersionMessage(ns, key, version)).data());
}

// HMAC (RFC 2104) over SHA-256: H((K ^ opad) | H((K ^ ipad) | m)), with the
// two keyed prefixes hashed once here.
struct VersionTagger::State {
  EVP_MD_CTX* inner = nullptr;
  EVP_MD_CTX* outer = nullptr;
  ~State() {
    EVP_MD_CTX_free(inner);
    EVP_MD_CTX_free(outer);
  }
};

VersionTagger::VersionTagger(std::string_view cluster_token) : state_(std::make_unique<State>()) {
  constexpr size_t kBlock = 64;
  std::array<uint8_t, kBlock> key{};
  if (cluster_token.size() > kBlock) {
    unsigned int n = 0;
    if (EVP_Digest(cluster_token.data(), cluster_token.size(), key.data(), &n, EVP_sha256(),
                   nullptr) != 1) {
      CryptoFailed();
    }
  } else {
    std::memcpy(key.data(), cluster_token.data(), cluster_token.size());
  }
  std::array<uint8_t, kBlock> ipad, opad;
  for (size_t i = 0; i < kBlock; ++i) {
    ipad[i] = key[i] ^ 0x36;
    opad[i] = key[i] ^ 0x5c;
  }
  state_->inner = EVP_MD_CTX_new();
  state_->outer = EVP_MD_CTX_new();
  if (state_->inner == nullptr || state_->outer == nullptr ||
      EVP_DigestInit_ex(state_->inner, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(state_->inner, ipad.data(), kBlock) != 1 ||
      EVP_DigestInit_ex(state_->outer, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(state_->outer, opad.data(), kBlock) != 1) {
    CryptoFailed();
  }
}

VersionTagger::~VersionTagger() = default;

uint64_t VersionTagger::Tag(NamespaceId ns, const BlockKey& key, const Version& version) const {
  const std::string message = VersionMessage(ns, key, version);
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx(EVP_MD_CTX_new());
  std::array<uint8_t, 32> inner{}, mac{};
  unsigned int n = 0;
  if (ctx == nullptr || EVP_MD_CTX_copy_ex(ctx.get(), state_->inner) != 1 ||
      EVP_DigestUpdate(ctx.get(), message.data(), message.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), inner.data(), &n) != 1 ||
      EVP_MD_CTX_copy_ex(ctx.get(), state_->outer) != 1 ||
      EVP_DigestUpdate(ctx.get(), inner.data(), inner.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), mac.data(), &n) != 1) {
    CryptoFailed();
  }
  return FirstEightBytes(mac.data());
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
