// The CUDA runtime, wrapped once (STYLE.md): device discovery and move-only
// owners for device and page-locked host memory. Everything compiles without
// CUDA; then every device call reports FAILED_PRECONDITION.
#ifndef KVF_KERNELS_DEVICE_H_
#define KVF_KERNELS_DEVICE_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvf {

// True when this build has CUDA compiled in (a capability of the binary, not
// of the machine).
bool CudaCompiledIn();

struct DeviceInventory {
  int count = 0;       // usable CUDA devices
  std::string reason;  // why count is 0 ("no CUDA driver", "built without CUDA", ...)
};
// Asks the driver once per process and caches the answer. Thread-safe.
const DeviceInventory& Devices();

// True when `ptr` points into CUDA device memory (cudaMalloc'd, not managed
// or host memory). False without CUDA or without a device.
bool IsDeviceMemory(const void* ptr);

// Owns one cudaMalloc allocation. Move-only; freed in the destructor.
class DeviceBuffer {
 public:
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes, int device);
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* data() const { return data_; }
  size_t size() const { return size_; }
  int device() const { return device_; }

 private:
  void Reset();
  void* data_ = nullptr;
  size_t size_ = 0;
  int device_ = -1;
};

// Page-locks an existing host range (cudaHostRegister) for as long as it
// lives. Move-only; unregisters in the destructor.
class HostRegistration {
 public:
  static absl::StatusOr<HostRegistration> Register(void* data, size_t bytes);
  HostRegistration() = default;
  HostRegistration(HostRegistration&& other) noexcept;
  HostRegistration& operator=(HostRegistration&& other) noexcept;
  HostRegistration(const HostRegistration&) = delete;
  HostRegistration& operator=(const HostRegistration&) = delete;
  ~HostRegistration();

  bool registered() const { return data_ != nullptr; }

 private:
  void Reset();
  void* data_ = nullptr;
};

// Synchronous copies between host and device memory (cudaMemcpy); errors carry
// the CUDA text.
absl::Status CopyHostToDevice(void* dst, const void* src, size_t bytes);
absl::Status CopyDeviceToHost(void* dst, const void* src, size_t bytes);

// The CUDA device `ptr` points into (device memory), or -1.
int DeviceOf(const void* ptr);

// Stream-ordered work for transfers that overlap with an engine's own
// (`stream` is a cudaStream_t; nullptr: the legacy default stream). Errors
// carry the CUDA text; without CUDA, FAILED_PRECONDITION.
//
// Copies between any two of host and device memory (cudaMemcpyDefault: the
// direction is taken from the pointers). Page-locked host memory makes it
// asynchronous and full speed; pageable memory is staged by the driver.
absl::Status CopyAsync(void* dst, const void* src, size_t bytes, void* stream);
absl::Status SynchronizeStream(void* stream);
// Runs fn(arg) on a CUDA runtime thread once the work enqueued on `stream`
// before it has finished (cudaLaunchHostFunc). fn must not call CUDA.
absl::Status EnqueueHostCallback(void* stream, void (*fn)(void*), void* arg);

// CUDA IPC: another process on this host maps device memory this one
// allocated (cudaIpcGetMemHandle / cudaIpcOpenMemHandle). The handle of the
// allocation that starts at `device_base` (a cudaMalloc'd base), as bytes
// for the wire (kIpcHandleBytes of them).
inline constexpr size_t kIpcHandleBytes = 64;
absl::StatusOr<std::string> ExportIpcHandle(void* device_base);

// Maps another process's allocation by its handle into this process, on
// `device`. Move-only; unmaps in the destructor (the exporter must keep the
// allocation until then). INVALID_ARGUMENT for a handle of the wrong size.
class IpcMapping {
 public:
  static absl::StatusOr<IpcMapping> Open(std::string_view handle, int device);
  IpcMapping() = default;
  IpcMapping(IpcMapping&& other) noexcept;
  IpcMapping& operator=(IpcMapping&& other) noexcept;
  IpcMapping(const IpcMapping&) = delete;
  IpcMapping& operator=(const IpcMapping&) = delete;
  ~IpcMapping();
  void* data() const { return data_; }

 private:
  void Reset();
  void* data_ = nullptr;
  int device_ = -1;
};

}  // namespace kvf

#endif  // KVF_KERNELS_DEVICE_H_
