// kvfabric._kvfabric: the module, and the value types every call uses
// (BlockKey, Chain, KvLayout, BlockResult, LookupResult, token hashing).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "common/block_hash.h"
#include "common/kv_layout.h"
#include "python/src/bindings.h"

namespace kvf::python {
namespace {

// Token ids from a list, tuple or integer array: each in [0, 2**32).
std::vector<uint32_t> TokensFrom(const py::object& tokens) {
  auto arr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(tokens);
  if (!arr) ThrowStatus(absl::InvalidArgumentError("tokens must be a sequence of integers"));
  if (arr.ndim() != 1) ThrowStatus(absl::InvalidArgumentError("tokens must be one-dimensional"));
  std::vector<uint32_t> out(static_cast<size_t>(arr.size()));
  const int64_t* p = arr.data();
  for (size_t i = 0; i < out.size(); ++i) {
    if (p[i] < 0 || p[i] > 0xffffffffLL) {
      ThrowStatus(absl::InvalidArgumentError(
          absl::StrCat("token ", i, " is ", p[i], ": token ids are in [0, 2**32)")));
    }
    out[i] = static_cast<uint32_t>(p[i]);
  }
  return out;
}

std::string BytesOf(const py::object& extra) {
  if (extra.is_none()) return {};
  if (py::isinstance<py::str>(extra)) return extra.cast<std::string>();
  return std::string(extra.cast<py::bytes>());
}

}  // namespace

// Also Namespace.hash_tokens (client_bindings.cc).
Chain HashTokens(const py::object& tokens, uint32_t block_tokens, HashAlgorithm algorithm,
                 const py::object& extra, const BlockKey& parent) {
  std::vector<uint32_t> t = TokensFrom(tokens);
  const std::string x = BytesOf(extra);
  return Chain{ValueOrThrow(HashSequence(algorithm, t, block_tokens, x, parent))};
}

void RegisterTypes(py::module_& m) {
  py::class_<BlockKey>(m, "BlockKey", "A 128-bit block key (common/block_key.h).")
      .def(py::init([](uint64_t hi, uint64_t lo) { return BlockKey{hi, lo}; }), py::arg("hi"),
           py::arg("lo"))
      .def_readonly("hi", &BlockKey::hi)
      .def_readonly("lo", &BlockKey::lo)
      .def("hex", &BlockKey::ToHex)
      .def_static("from_hex", [](const std::string& h) { return ValueOrThrow(BlockKey::FromHex(h)); })
      .def("__bytes__",
           [](const BlockKey& k) {
             char b[16];
             for (int i = 0; i < 8; ++i) {
               b[i] = static_cast<char>(k.hi >> (56 - 8 * i));
               b[8 + i] = static_cast<char>(k.lo >> (56 - 8 * i));
             }
             return py::bytes(b, 16);
           })
      .def("__eq__", [](const BlockKey& a, const BlockKey& b) { return a == b; })
      .def("__hash__", [](const BlockKey& k) { return static_cast<py::ssize_t>(k.hi ^ (k.lo * 31)); })
      .def("__repr__", [](const BlockKey& k) { return absl::StrCat("BlockKey('", k.ToHex(), "')"); });

  py::class_<Chain>(m, "Chain", "An immutable list of block keys, held in C++.")
      .def(py::init([](const std::vector<BlockKey>& keys) { return Chain{keys}; }), py::arg("keys"))
      .def("__len__", [](const Chain& c) { return c.keys.size(); })
      .def("__getitem__",
           [](const Chain& c, py::ssize_t i) {
             const auto n = static_cast<py::ssize_t>(c.keys.size());
             if (i < 0) i += n;
             if (i < 0 || i >= n) throw py::index_error("chain index out of range");
             return c.keys[static_cast<size_t>(i)];
           })
      .def("__iter__", [](const Chain& c) { return py::make_iterator(c.keys.begin(), c.keys.end()); },
           py::keep_alive<0, 1>())
      .def("__eq__", [](const Chain& a, const Chain& b) { return a.keys == b.keys; })
      .def("__repr__", [](const Chain& c) { return absl::StrCat("Chain(", c.keys.size(), " keys)"); });

  py::class_<KvLayout>(m, "KvLayout", "The shape of one KV block (common/kv_layout.h).")
      .def(py::init([](uint32_t l, uint32_t h, uint32_t d, uint32_t t, const std::string& dtype) {
             KvLayout k{l, h, d, t, ValueOrThrow(ParseDType(dtype))};
             OkOrThrow(k.Validate());
             return k;
           }),
           py::arg("num_layers"), py::arg("num_kv_heads"), py::arg("head_dim"),
           py::arg("block_tokens"), py::arg("dtype") = "fp16")
      .def_readonly("num_layers", &KvLayout::num_layers)
      .def_readonly("num_kv_heads", &KvLayout::num_kv_heads)
      .def_readonly("head_dim", &KvLayout::head_dim)
      .def_readonly("block_tokens", &KvLayout::block_tokens)
      .def_property_readonly("dtype", [](const KvLayout& k) { return std::string(DTypeName(k.dtype)); })
      .def_property_readonly("bytes_per_block", &KvLayout::BytesPerBlock)
      .def_property_readonly("fingerprint", &KvLayout::Fingerprint)
      .def("__eq__", [](const KvLayout& a, const KvLayout& b) { return a == b; })
      .def("__repr__", &KvLayout::DebugString);

  m.def(
      "hash_tokens",
      [](const py::object& tokens, uint32_t block_tokens, const std::string& algorithm,
         const py::object& extra, const BlockKey& parent) {
        return HashTokens(tokens, block_tokens, ValueOrThrow(ParseHashAlgorithm(algorithm)), extra,
                          parent);
      },
      py::arg("tokens"), py::arg("block_tokens"), py::arg("algorithm") = "xxh3_128",
      py::arg("extra") = py::bytes(), py::arg("parent") = BlockKey::Root(),
      "The chain of every full block of `tokens` (continuing from `parent`): exactly the C++\n"
      "HashSequence keys.");

  py::class_<BlockResult>(m, "BlockResult", "One block's outcome in a batch call.")
      .def_property_readonly("ok", [](const BlockResult& r) { return r.status.ok(); })
      .def_property_readonly("code", [](const BlockResult& r) { return StatusCodeName(r.status.code()); })
      .def_property_readonly("message", [](const BlockResult& r) { return std::string(r.status.message()); })
      .def_property_readonly("version", [](const BlockResult& r) { return VersionTuple(r.version); })
      .def_property_readonly("codec", [](const BlockResult& r) { return std::string(CodecName(r.codec)); })
      .def_readonly("size", &BlockResult::size)
      .def_readonly("node", &BlockResult::node)
      .def("raise_for_status", [](const BlockResult& r) { OkOrThrow(r.status); })
      .def("__repr__", [](const BlockResult& r) {
        return absl::StrCat("BlockResult(", StatusCodeName(r.status.code()),
                            r.status.ok() ? "" : absl::StrCat(": ", r.status.message()),
                            ", size=", r.size, ", node=", r.node, ")");
      });

  py::class_<BlockHolding>(m, "BlockHolding")
      .def_readonly("nodes", &BlockHolding::nodes)
      .def_property_readonly("version", [](const BlockHolding& h) { return VersionTuple(h.version); })
      .def_property_readonly("codec", [](const BlockHolding& h) { return std::string(CodecName(h.codec)); })
      .def_readonly("size", &BlockHolding::size);
  py::class_<LookupResult>(m, "LookupResult")
      .def_readonly("prefix", &LookupResult::prefix)
      .def_readonly("blocks", &LookupResult::blocks)
      .def("__repr__", [](const LookupResult& r) {
        return absl::StrCat("LookupResult(prefix=", r.prefix, " of ", r.blocks.size(), ")");
      });
}

}  // namespace kvf::python

PYBIND11_MODULE(_kvfabric, m) {
  m.doc() = "kvfabric's client library (docs/python.md); use the `kvfabric` package.";
  kvf::python::RegisterTypes(m);
  kvf::python::RegisterClient(m);
  kvf::python::RegisterPaged(m);
  kvf::python::RegisterBench(m);
  kvf::python::RegisterAdvisor(m);
}
