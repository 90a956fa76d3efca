// A small streaming SHA-256 (FIPS 180-4), so key hashing for untrusted tenants
// needs no crypto library. Checked against the NIST test vectors.
#ifndef KVF_COMMON_INTERNAL_SHA256_H_
#define KVF_COMMON_INTERNAL_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>

namespace kvf::internal {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t size);
  std::array<uint8_t, 32> Finish();

 private:
  void Compress(const uint8_t* block);

  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

}  // namespace kvf::internal

#endif  // KVF_COMMON_INTERNAL_SHA256_H_
