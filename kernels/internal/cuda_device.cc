// The only file that calls the CUDA runtime for memory and devices.
#include <cstring>
#include <utility>

#include "common/logging.h"
#include "common/status_macros.h"
#include "absl/strings/str_cat.h"
#include "kernels/device.h"

#if KVF_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvf {
namespace {

#if KVF_WITH_CUDA
absl::Status CudaError(cudaError_t err, absl::string_view call, absl::string_view context) {
  return absl::InternalError(absl::StrCat(call, " (", context, "): ", cudaGetErrorName(err), ": ",
                                          cudaGetErrorString(err)));
}
#else
absl::Status NoCuda(absl::string_view call) {
  return absl::FailedPreconditionError(absl::StrCat(call, ": kvfabric was built without CUDA"));
}
#endif

DeviceInventory Probe() {
  DeviceInventory inv;
#if KVF_WITH_CUDA
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    inv.reason = absl::StrCat("cudaGetDeviceCount: ", cudaGetErrorString(err));
    cudaGetLastError();  // clear the sticky error
  } else if (n == 0) {
    inv.reason = "the CUDA driver reports no device";
  }
  inv.count = err == cudaSuccess ? n : 0;
#else
  inv.reason = "kvfabric was built without CUDA";
#endif
  if (inv.count == 0) {
    KVF_LOG(INFO) << "kvfabric: no CUDA device (" << inv.reason << "); using host memory only";
  }
  return inv;
}

}  // namespace

#if KVF_WITH_CUDA
namespace {
// Makes `device` current for this thread; FAILED_PRECONDITION if there is none.
absl::Status UseDevice(int device) {
  if (device < 0 || device >= Devices().count) {
    return absl::FailedPreconditionError(absl::StrCat("no CUDA device ", device, " (",
                                                      Devices().count, " present)"));
  }
  if (cudaError_t err = cudaSetDevice(device); err != cudaSuccess) {
    return CudaError(err, "cudaSetDevice", absl::StrCat("device ", device));
  }
  return absl::OkStatus();
}
}  // namespace
#endif

bool CudaCompiledIn() { return KVF_WITH_CUDA != 0; }

const DeviceInventory& Devices() {
  static const DeviceInventory* inventory = new DeviceInventory(Probe());
  return *inventory;
}

bool IsDeviceMemory(const void* ptr) {
#if KVF_WITH_CUDA
  if (ptr == nullptr || Devices().count == 0) return false;
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    cudaGetLastError();  // plain host memory on old runtimes: clear the error
    return false;
  }
  return attr.type == cudaMemoryTypeDevice;
#else
  (void)ptr;
  return false;
#endif
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes, int device) {
#if KVF_WITH_CUDA
  KVF_RETURN_IF_ERROR(UseDevice(device));
  DeviceBuffer buffer;
  if (cudaError_t err = cudaMalloc(&buffer.data_, bytes); err != cudaSuccess) {
    return CudaError(err, "cudaMalloc", absl::StrCat(bytes, " bytes on device ", device));
  }
  buffer.size_ = bytes;
  buffer.device_ = device;
  return buffer;
#else
  (void)bytes;
  (void)device;
  return NoCuda("cudaMalloc");
#endif
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      device_(std::exchange(other.device_, -1)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() { Reset(); }

void DeviceBuffer::Reset() {
#if KVF_WITH_CUDA
  if (data_ != nullptr) {
    cudaSetDevice(device_);
    cudaFree(data_);
  }
#endif
  data_ = nullptr;
  size_ = 0;
}

absl::StatusOr<HostRegistration> HostRegistration::Register(void* data, size_t bytes) {
#if KVF_WITH_CUDA
  if (Devices().count == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot page-lock host memory: ", Devices().reason));
  }
  if (cudaError_t err = cudaHostRegister(data, bytes, cudaHostRegisterDefault);
      err != cudaSuccess) {
    return CudaError(err, "cudaHostRegister", absl::StrCat(bytes, " bytes"));
  }
  HostRegistration reg;
  reg.data_ = data;
  return reg;
#else
  (void)data;
  (void)bytes;
  return NoCuda("cudaHostRegister");
#endif
}

HostRegistration::HostRegistration(HostRegistration&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)) {}

HostRegistration& HostRegistration::operator=(HostRegistration&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::exchange(other.data_, nullptr);
  }
  return *this;
}

HostRegistration::~HostRegistration() { Reset(); }

void HostRegistration::Reset() {
#if KVF_WITH_CUDA
  if (data_ != nullptr) cudaHostUnregister(data_);
#endif
  data_ = nullptr;
}

absl::Status CopyHostToDevice(void* dst, const void* src, size_t bytes) {
#if KVF_WITH_CUDA
  if (cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice); err != cudaSuccess) {
    return CudaError(err, "cudaMemcpy", absl::StrCat("host to device, ", bytes, " bytes"));
  }
  return absl::OkStatus();
#else
  (void)dst, (void)src, (void)bytes;
  return NoCuda("cudaMemcpy");
#endif
}

absl::Status CopyDeviceToHost(void* dst, const void* src, size_t bytes) {
#if KVF_WITH_CUDA
  if (cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost); err != cudaSuccess) {
    return CudaError(err, "cudaMemcpy", absl::StrCat("device to host, ", bytes, " bytes"));
  }
  return absl::OkStatus();
#else
  (void)dst, (void)src, (void)bytes;
  return NoCuda("cudaMemcpy");
#endif
}

int DeviceOf(const void* ptr) {
#if KVF_WITH_CUDA
  if (ptr == nullptr || Devices().count == 0) return -1;
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice ? attr.device : -1;
#else
  (void)ptr;
  return -1;
#endif
}

absl::Status CopyAsync(void* dst, const void* src, size_t bytes, void* stream) {
#if KVF_WITH_CUDA
  if (cudaError_t err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault,
                                        static_cast<cudaStream_t>(stream));
      err != cudaSuccess) {
    return CudaError(err, "cudaMemcpyAsync", absl::StrCat(bytes, " bytes"));
  }
  return absl::OkStatus();
#else
  (void)dst, (void)src, (void)bytes, (void)stream;
  return NoCuda("cudaMemcpyAsync");
#endif
}

absl::Status SynchronizeStream(void* stream) {
#if KVF_WITH_CUDA
  if (cudaError_t err = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
      err != cudaSuccess) {
    return CudaError(err, "cudaStreamSynchronize", "paged transfer");
  }
  return absl::OkStatus();
#else
  (void)stream;
  return NoCuda("cudaStreamSynchronize");
#endif
}

absl::Status EnqueueHostCallback(void* stream, void (*fn)(void*), void* arg) {
#if KVF_WITH_CUDA
  if (cudaError_t err = cudaLaunchHostFunc(static_cast<cudaStream_t>(stream), fn, arg);
      err != cudaSuccess) {
    return CudaError(err, "cudaLaunchHostFunc", "paged transfer progress");
  }
  return absl::OkStatus();
#else
  (void)stream, (void)fn, (void)arg;
  return NoCuda("cudaLaunchHostFunc");
#endif
}

absl::StatusOr<std::string> ExportIpcHandle(void* device_base) {
#if KVF_WITH_CUDA
  static_assert(sizeof(cudaIpcMemHandle_t) == kIpcHandleBytes);
  cudaIpcMemHandle_t h;
  if (cudaError_t err = cudaIpcGetMemHandle(&h, device_base); err != cudaSuccess) {
    return CudaError(err, "cudaIpcGetMemHandle", "a device tier's arena");
  }
  return std::string(reinterpret_cast<const char*>(&h), sizeof(h));
#else
  (void)device_base;
  return NoCuda("cudaIpcGetMemHandle");
#endif
}

absl::StatusOr<IpcMapping> IpcMapping::Open(std::string_view handle, int device) {
  if (handle.size() != kIpcHandleBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a CUDA IPC handle is ", kIpcHandleBytes,
                                                   " bytes, not ", handle.size()));
  }
#if KVF_WITH_CUDA
  KVF_RETURN_IF_ERROR(UseDevice(device));
  cudaIpcMemHandle_t h;
  std::memcpy(&h, handle.data(), sizeof(h));
  IpcMapping m;
  if (cudaError_t err = cudaIpcOpenMemHandle(&m.data_, h, cudaIpcMemLazyEnablePeerAccess);
      err != cudaSuccess) {
    return CudaError(err, "cudaIpcOpenMemHandle", absl::StrCat("device ", device));
  }
  m.device_ = device;
  return m;
#else
  (void)device;
  return NoCuda("cudaIpcOpenMemHandle");
#endif
}

IpcMapping::IpcMapping(IpcMapping&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), device_(std::exchange(other.device_, -1)) {}

IpcMapping& IpcMapping::operator=(IpcMapping&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::exchange(other.data_, nullptr);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

IpcMapping::~IpcMapping() { Reset(); }

void IpcMapping::Reset() {
#if KVF_WITH_CUDA
  if (data_ != nullptr) {
    cudaSetDevice(device_);
    cudaIpcCloseMemHandle(data_);
  }
#endif
  data_ = nullptr;
  device_ = -1;
}

}  // namespace kvf
