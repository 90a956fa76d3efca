// Shared pieces of the pybind11 module kvfabric._kvfabric (docs/python.md):
// Status -> exception, Python buffers -> (pointer, size), and the register
// functions each binding file defines.
#ifndef KVF_PYTHON_SRC_BINDINGS_H_
#define KVF_PYTHON_SRC_BINDINGS_H_

#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_hash.h"
#include "common/block_key.h"
#include "common/version.h"
#include "kernels/codec.h"

namespace kvf::python {

namespace py = pybind11;

// Raises the kvfabric.errors class for status.code() (kvfabric.Error and its
// subclasses, defined in Python) carrying the code's name and the message.
[[noreturn]] void ThrowStatus(const absl::Status& status);

template <typename T>
T ValueOrThrow(absl::StatusOr<T> v) {
  if (!v.ok()) ThrowStatus(v.status());
  return *std::move(v);
}
inline void OkOrThrow(const absl::Status& s) {
  if (!s.ok()) ThrowStatus(s);
}

std::string StatusCodeName(absl::StatusCode code);

// One caller buffer held for the length of a call: a buffer-protocol object
// (bytes, bytearray, memoryview, NumPy; must be C-contiguous, and writable
// when `writable`) or a CPU torch.Tensor (contiguous). Move-only; releases
// the Py_buffer (GIL held) in its destructor. CUDA tensors raise
// UnimplementedError.
class HeldBuffer {
 public:
  HeldBuffer(py::handle obj, bool writable);
  HeldBuffer(HeldBuffer&& other) noexcept;
  HeldBuffer& operator=(HeldBuffer&&) = delete;
  HeldBuffer(const HeldBuffer&) = delete;
  HeldBuffer& operator=(const HeldBuffer&) = delete;
  ~HeldBuffer();

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  Py_buffer view_{};
  bool has_view_ = false;
  void* data_ = nullptr;
  size_t size_ = 0;
};

std::vector<HeldBuffer> HoldBuffers(const py::sequence& objs, bool writable);

// A chain of block keys held in C++ (kvfabric.Chain).
struct Chain {
  std::vector<BlockKey> keys;
};

// The chain of every full block of `tokens` (a list or integer array, each in
// [0, 2**32)), continuing from `parent`: HashSequence's keys (module.cc).
Chain HashTokens(const py::object& tokens, uint32_t block_tokens, HashAlgorithm algorithm,
                 const py::object& extra, const BlockKey& parent);

py::tuple VersionTuple(const Version& v);
Version VersionFromTuple(const py::object& v);
CodecId CodecFromName(const std::string& name);

void RegisterTypes(py::module_& m);     // BlockKey, Chain, KvLayout, hashing, BlockResult
void RegisterClient(py::module_& m);    // Client, Namespace, Sequence
void RegisterPaged(py::module_& m);     // PagedKv, PagedTransfer, paged calls
void RegisterBench(py::module_& m);     // the C++ peer loop of kvfabric.bench
void RegisterAdvisor(py::module_& m);   // advise_codec (client/codec_advisor.h)

}  // namespace kvf::python

#endif  // KVF_PYTHON_SRC_BINDINGS_H_
