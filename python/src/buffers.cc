// Status -> Python exception and Python buffers -> memory the client reads or
// writes (docs/python.md, "Buffers").
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "python/src/bindings.h"

namespace kvf::python {

std::string StatusCodeName(absl::StatusCode code) {
  // absl's names are "NOT_FOUND" etc. for every code.
  return absl::StatusCodeToString(code);
}

void ThrowStatus(const absl::Status& status) {
  py::object make = py::module_::import("kvfabric.errors").attr("from_status");
  py::object err = make(StatusCodeName(status.code()), std::string(status.message()));
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(err.ptr())), err.ptr());
  throw py::error_already_set();
}

namespace {

bool IsTorchTensor(py::handle obj) {
  PyTypeObject* type = Py_TYPE(obj.ptr());
  // torch.Tensor and its subclasses (nn.Parameter) without importing torch.
  for (PyTypeObject* t = type; t != nullptr; t = t->tp_base) {
    if (std::string_view(t->tp_name) == "Tensor" || std::string_view(t->tp_name) == "torch.Tensor" ||
        std::string_view(t->tp_name) == "torch._C._TensorBase") {
      return py::hasattr(obj, "data_ptr") && py::hasattr(obj, "element_size");
    }
  }
  return false;
}

}  // namespace

HeldBuffer::HeldBuffer(py::handle obj, bool writable) {
  if (IsTorchTensor(obj)) {
    const std::string device = py::str(obj.attr("device").attr("type"));
    if (device != "cpu") {
      ThrowStatus(absl::UnimplementedError(absl::StrCat(
          "a torch tensor on '", device,
          "': this version moves host memory only (the GPU data path is pending; docs/python.md)")));
    }
    if (!obj.attr("is_contiguous")().cast<bool>()) {
      ThrowStatus(absl::InvalidArgumentError("torch tensor is not contiguous"));
    }
    data_ = reinterpret_cast<void*>(obj.attr("data_ptr")().cast<uintptr_t>());
    size_ = obj.attr("numel")().cast<size_t>() * obj.attr("element_size")().cast<size_t>();
    return;
  }
  int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) {
    PyErr_Clear();
    ThrowStatus(absl::InvalidArgumentError(absl::StrCat(
        "expected a C-contiguous", writable ? ", writable" : "",
        " buffer (bytes, bytearray, memoryview, numpy array) or a CPU torch.Tensor, got ",
        Py_TYPE(obj.ptr())->tp_name)));
  }
  has_view_ = true;
  data_ = view_.buf;
  size_ = static_cast<size_t>(view_.len);
}

HeldBuffer::HeldBuffer(HeldBuffer&& other) noexcept
    : view_(other.view_), has_view_(other.has_view_), data_(other.data_), size_(other.size_) {
  other.has_view_ = false;
}

HeldBuffer::~HeldBuffer() {
  if (has_view_) PyBuffer_Release(&view_);
}

std::vector<HeldBuffer> HoldBuffers(const py::sequence& objs, bool writable) {
  std::vector<HeldBuffer> out;
  out.reserve(objs.size());
  for (py::handle o : objs) out.emplace_back(o, writable);
  return out;
}

py::tuple VersionTuple(const Version& v) { return py::make_tuple(v.epoch, v.counter); }

Version VersionFromTuple(const py::object& v) {
  auto t = v.cast<py::tuple>();
  if (t.size() != 2) ThrowStatus(absl::InvalidArgumentError("a version is an (epoch, counter) tuple"));
  return Version{t[0].cast<uint64_t>(), t[1].cast<uint64_t>()};
}

CodecId CodecFromName(const std::string& name) { return ValueOrThrow(ParseCodec(name)); }

}  // namespace kvf::python
