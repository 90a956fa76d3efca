// Streaming SHA-256 (FIPS 180-4) for key hashing of untrusted tenants, computed
// by OpenSSL's libcrypto (EVP); OpenSSL stays out of this header.
#ifndef KVF_COMMON_INTERNAL_SHA256_H_
#define KVF_COMMON_INTERNAL_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace kvf::internal {

// One digest: Update() any number of times, then Finish() once. A libcrypto
// that cannot compute SHA-256 (a broken installation) aborts the process with
// OpenSSL's error text: block keys have no way to report it, and hashing must
// not silently differ between processes.
//
// Thread-compatible; move-only (owns the EVP context).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void Update(const void* data, size_t size);
  std::array<uint8_t, 32> Finish();

 private:
  struct ContextFree {
    void operator()(evp_md_ctx_st* ctx) const;
  };
  std::unique_ptr<evp_md_ctx_st, ContextFree> ctx_;
};

}  // namespace kvf::internal

#endif  // KVF_COMMON_INTERNAL_SHA256_H_
