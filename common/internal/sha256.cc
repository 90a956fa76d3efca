#include "common/internal/sha256.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

namespace kvf::internal {
namespace {

// The one place libcrypto results are checked: a failure names the call and
// OpenSSL's reason, then aborts (see the class comment).
void Check(int ok, const char* call) {
  if (ok == 1) return;
  char reason[256];
  ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
  std::fprintf(stderr, "kvfabric: SHA-256: %s failed: %s\n", call, reason);
  std::abort();
}

// Fetched once: an implicit fetch by name on every EVP_DigestInit_ex costs
// more than hashing a block.
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = [] {
    EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    Check(m != nullptr, "EVP_MD_fetch(SHA256)");
    return m;
  }();
  return md;
}

}  // namespace

void Sha256::ContextFree::operator()(evp_md_ctx_st* ctx) const { EVP_MD_CTX_free(ctx); }

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  Check(ctx_ != nullptr, "EVP_MD_CTX_new");
  Check(EVP_DigestInit_ex(ctx_.get(), Sha256Md(), nullptr), "EVP_DigestInit_ex");
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(const void* data, size_t size) {
  if (size == 0) return;  // data may be null then
  Check(EVP_DigestUpdate(ctx_.get(), data, size), "EVP_DigestUpdate");
}

std::array<uint8_t, 32> Sha256::Finish() {
  std::array<uint8_t, 32> out;
  unsigned int length = 0;
  Check(EVP_DigestFinal_ex(ctx_.get(), out.data(), &length), "EVP_DigestFinal_ex");
  Check(length == out.size(), "EVP_DigestFinal_ex (digest length)");
  return out;
}

}  // namespace kvf::internal
