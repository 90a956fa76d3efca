// kvfabric.PagedKv and the paged calls (client/paged.h): an engine's KV pages
// <-> blocks. The Python side (kvfabric/paged.py) builds descriptors from
// torch tensors; here they are pointers and element strides.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "absl/strings/str_cat.h"
#include "client/paged.h"
#include "python/src/bindings.h"

namespace kvf::python {
namespace {

// A descriptor plus the Python objects that own its memory, kept alive as
// long as the descriptor (and any transfer using it).
struct PagedKv {
  PagedKvDesc desc;
  py::object owners;
};

// A transfer and what it reads or writes, alive until it finished.
struct Transfer {
  PagedTransfer transfer;
  py::object owners;
};

std::vector<int32_t> PageIds(const py::object& ids) {
  auto arr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(ids);
  if (!arr) ThrowStatus(absl::InvalidArgumentError("page_ids must be integers (flat or per block)"));
  std::vector<int32_t> out(static_cast<size_t>(arr.size()));
  const int64_t* p = arr.data();
  for (size_t i = 0; i < out.size(); ++i) {
    if (p[i] < 0 || p[i] > INT32_MAX) {
      ThrowStatus(absl::InvalidArgumentError(absl::StrCat("page id ", p[i], " is out of range")));
    }
    out[i] = static_cast<int32_t>(p[i]);
  }
  return out;
}

size_t BlockCount(const Namespace& ns, const PagedKv& pages, const std::vector<int32_t>& ids) {
  const size_t per_block = PagesPerBlock(ns, pages.desc);
  return per_block == 0 ? 0 : ids.size() / per_block;
}

template <typename T>
T Released(const std::function<T()>& fn) {
  py::gil_scoped_release release;
  return fn();
}

}  // namespace

void RegisterPaged(py::module_& m) {
  py::class_<PagedKv>(m, "_PagedKv", "An engine's paged KV cache (kernels/core/paged.h).")
      .def(py::init([](uint32_t num_layers, uint32_t num_kv_heads, uint32_t head_dim,
                       uint32_t page_size, uint32_t num_pages, const std::string& dtype,
                       uint64_t page_stride, uint64_t kv_stride, uint64_t token_stride,
                       uint64_t head_stride, const std::vector<uintptr_t>& layer_ptrs,
                       uint64_t layer_bytes, py::object owners) {
             PagedKv p;
             PagedKvDesc& d = p.desc;
             d.kind = PagedLayoutKind::kCustom;
             d.num_layers = num_layers;
             d.num_kv_heads = num_kv_heads;
             d.head_dim = head_dim;
             d.page_size = page_size;
             d.num_pages = num_pages;
             d.dtype = ElemTypeOf(ValueOrThrow(ParseDType(dtype)));
             d.page_stride = page_stride;
             d.kv_stride = kv_stride;
             d.token_stride = token_stride;
             d.head_stride = head_stride;
             for (uintptr_t ptr : layer_ptrs) d.layer_bases.push_back(reinterpret_cast<void*>(ptr));
             d.layer_bytes = layer_bytes;
             OkOrThrow(ValidatePagedKvDesc(d));
             p.owners = std::move(owners);
             return p;
           }),
           py::arg("num_layers"), py::arg("num_kv_heads"), py::arg("head_dim"), py::arg("page_size"),
           py::arg("num_pages"), py::arg("dtype"), py::arg("page_stride"), py::arg("kv_stride"),
           py::arg("token_stride"), py::arg("head_stride"), py::arg("layer_ptrs"),
           py::arg("layer_bytes") = 0, py::arg("owners") = py::none())
      .def_property_readonly("num_layers", [](const PagedKv& p) { return p.desc.num_layers; })
      .def_property_readonly("num_kv_heads", [](const PagedKv& p) { return p.desc.num_kv_heads; })
      .def_property_readonly("head_dim", [](const PagedKv& p) { return p.desc.head_dim; })
      .def_property_readonly("page_size", [](const PagedKv& p) { return p.desc.page_size; })
      .def_property_readonly("num_pages", [](const PagedKv& p) { return p.desc.num_pages; })
      .def_property_readonly("dtype", [](const PagedKv& p) {
        return std::string(DTypeName(static_cast<DType>(p.desc.dtype)));
      });

  py::class_<Transfer>(m, "PagedTransfer", "An asynchronous save_pages / load_pages.")
      .def("done", [](const Transfer& t) { return t.transfer.Done(); })
      .def("layer_ready", [](const Transfer& t, uint32_t l) { return t.transfer.LayerReady(l); })
      .def("wait_layer",
           [](const Transfer& t, uint32_t l) {
             OkOrThrow(Released<absl::Status>([&] { return t.transfer.WaitLayer(l); }));
           },
           "Blocks until layer l of a load is in the pages (every block's layer l), or the "
           "load finished.")
      .def("wait", [](Transfer& t) {
        absl::StatusOr<BatchResult> r = Released<absl::StatusOr<BatchResult>>([&] { return t.transfer.Wait(); });
        t.owners = py::none();
        return ValueOrThrow(std::move(r)).blocks;
      });

  auto put_options = [](const std::string& codec) {
    PutOptions o;
    o.codec = CodecFromName(codec);
    return o;
  };

  m.def(
      "_save_pages",
      [put_options](Client& c, const Namespace& ns, const Chain& chain, size_t begin,
                    const PagedKv& pages, const py::object& page_ids, const std::string& codec,
                    uintptr_t stream) {
        const std::vector<int32_t> ids = PageIds(page_ids);
        const PutOptions o = put_options(codec);
        const size_t n = BlockCount(ns, pages, ids);
        void* s = reinterpret_cast<void*>(stream);
        return ValueOrThrow(Released<absl::StatusOr<BatchResult>>(
                                [&] { return SavePages(c, ns, chain.keys, begin, n, pages.desc, ids, o, s); }))
            .blocks;
      },
      py::arg("client"), py::arg("ns"), py::arg("chain"), py::arg("begin"), py::arg("pages"),
      py::arg("page_ids"), py::arg("codec") = "none", py::arg("stream") = 0);
  m.def(
      "_load_pages",
      [](Client& c, const Namespace& ns, const Chain& chain, size_t begin, const PagedKv& pages,
         const py::object& page_ids, uintptr_t stream) {
        const std::vector<int32_t> ids = PageIds(page_ids);
        const size_t n = BlockCount(ns, pages, ids);
        void* s = reinterpret_cast<void*>(stream);
        return ValueOrThrow(Released<absl::StatusOr<BatchResult>>(
                                [&] { return LoadPages(c, ns, chain.keys, begin, n, pages.desc, ids, {}, s); }))
            .blocks;
      },
      py::arg("client"), py::arg("ns"), py::arg("chain"), py::arg("begin"), py::arg("pages"),
      py::arg("page_ids"), py::arg("stream") = 0);
  m.def(
      "_start_save_pages",
      [put_options](Client& c, const Namespace& ns, const Chain& chain, size_t begin,
                    const PagedKv& pages, const py::object& page_ids, const std::string& codec,
                    uintptr_t stream) {
        const std::vector<int32_t> ids = PageIds(page_ids);
        const size_t n = BlockCount(ns, pages, ids);
        OkOrThrow(CheckPagedTransfer(ns, pages.desc, n, ids));
        return Transfer{StartSavePages(c, ns, chain.keys, begin, n, pages.desc, ids, put_options(codec),
                                       reinterpret_cast<void*>(stream)),
                        pages.owners};
      },
      py::arg("client"), py::arg("ns"), py::arg("chain"), py::arg("begin"), py::arg("pages"),
      py::arg("page_ids"), py::arg("codec") = "none", py::arg("stream") = 0,
      py::keep_alive<0, 1>());
  m.def(
      "_start_load_pages",
      [](Client& c, const Namespace& ns, const Chain& chain, size_t begin, const PagedKv& pages,
         const py::object& page_ids, uintptr_t stream) {
        const std::vector<int32_t> ids = PageIds(page_ids);
        const size_t n = BlockCount(ns, pages, ids);
        OkOrThrow(CheckPagedTransfer(ns, pages.desc, n, ids));
        return Transfer{StartLoadPages(c, ns, chain.keys, begin, n, pages.desc, ids, {},
                                       reinterpret_cast<void*>(stream)),
                        pages.owners};
      },
      py::arg("client"), py::arg("ns"), py::arg("chain"), py::arg("begin"), py::arg("pages"),
      py::arg("page_ids"), py::arg("stream") = 0, py::keep_alive<0, 1>());
}

}  // namespace kvf::python
