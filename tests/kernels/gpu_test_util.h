// GPU test helpers (CUDA runtime only, no Abseil): a skip-without-device
// fixture and a move-only device buffer.
#ifndef KVF_TESTS_KERNELS_GPU_TEST_UTIL_H_
#define KVF_TESTS_KERNELS_GPU_TEST_UTIL_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace kvf::testing {

// Skips every test of the suite, with a message, when the driver reports no
// CUDA device (or there is no driver at all).
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
      cudaGetLastError();
      GTEST_SKIP() << "no CUDA device (" << (err != cudaSuccess ? cudaGetErrorString(err)
                                                                : "the driver reports none")
                   << "): GPU test skipped";
    }
  }
};

// One cudaMalloc allocation, freed on destruction. Test-only: failures are
// reported through gtest. The allocation is rounded up to 16 bytes (plus 16),
// as the int4 encoder's 32-bit atomics on nibbles that two threads share
// require (kernels/core/cuda_ops.h), so compute-sanitizer sees no access past
// it even for a blob at an unaligned offset.
class DevMem {
 public:
  explicit DevMem(size_t bytes) : bytes_(bytes) {
    EXPECT_EQ(cudaMalloc(&p_, (bytes + 15) / 16 * 16 + 16), cudaSuccess) << bytes << " bytes";
  }
  // A device copy of `host`.
  explicit DevMem(const std::vector<std::byte>& host) : DevMem(host.size()) { Upload(host); }
  DevMem(DevMem&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(o.bytes_) {}
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  ~DevMem() {
    if (p_ != nullptr) cudaFree(p_);
  }

  void* get() const { return p_; }
  std::byte* bytes() const { return static_cast<std::byte*>(p_); }
  size_t size() const { return bytes_; }

  void Upload(const std::vector<std::byte>& host) {
    ASSERT_LE(host.size(), bytes_);
    ASSERT_EQ(cudaMemcpy(p_, host.data(), host.size(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<std::byte> Download() const {
    std::vector<std::byte> out(bytes_);
    EXPECT_EQ(cudaMemcpy(out.data(), p_, bytes_, cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
  void Fill(int value) { ASSERT_EQ(cudaMemset(p_, value, bytes_), cudaSuccess); }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Waits for the device and reports a fault as a test failure.
inline void Sync() { ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << cudaGetErrorString(cudaGetLastError()); }

}  // namespace kvf::testing

#endif  // KVF_TESTS_KERNELS_GPU_TEST_UTIL_H_
