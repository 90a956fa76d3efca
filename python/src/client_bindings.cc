// kvfabric.Client, Namespace and Sequence: the C++ client (client/client.h,
// client/sequence.h) with Python buffers; the GIL is released while a call
// waits on the cluster.
#include <pybind11/stl.h>

#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/sequence.h"
#include "python/src/bindings.h"

namespace kvf::python {
namespace {

AckMode AckFromName(const std::string& name) {
  if (name == "primary") return AckMode::kPrimary;
  if (name == "all") return AckMode::kAll;
  ThrowStatus(absl::InvalidArgumentError(absl::StrCat("ack is 'primary' or 'all', not '", name, "'")));
}

PutOptions MakePutOptions(const std::string& codec, bool is_mutable, const py::object& ack) {
  PutOptions o;
  o.codec = CodecFromName(codec);
  o.is_mutable = is_mutable;
  if (!ack.is_none()) {
    o.has_ack = true;
    o.ack = AckFromName(ack.cast<std::string>());
  }
  return o;
}

GetOptions MakeGetOptions(const py::object& min_version) {
  GetOptions o;
  if (!min_version.is_none()) {
    o.has_min_version = true;
    o.min_version = VersionFromTuple(min_version);
  }
  return o;
}

size_t EndOf(const Chain& chain, const py::object& end) {
  return end.is_none() ? chain.keys.size() : end.cast<size_t>();
}

std::vector<ConstBlockBuffer> ConstViews(const std::vector<HeldBuffer>& held) {
  std::vector<ConstBlockBuffer> v(held.size());
  for (size_t i = 0; i < held.size(); ++i) v[i] = {held[i].data(), held[i].size()};
  return v;
}
std::vector<BlockBuffer> MutableViews(const std::vector<HeldBuffer>& held) {
  std::vector<BlockBuffer> v(held.size());
  for (size_t i = 0; i < held.size(); ++i) v[i] = {held[i].data(), held[i].size()};
  return v;
}

// Runs `fn` without the GIL and raises its error, if any, with it.
template <typename Fn>
auto Unlocked(Fn fn) {
  decltype(fn()) r = absl::UnknownError("not run");
  {
    py::gil_scoped_release release;
    r = fn();
  }
  return ValueOrThrow(std::move(r));
}

py::dict SpecDict(const NamespaceSpec& s) {
  py::dict d;
  d["model_id"] = s.model_id;
  d["layout"] = s.layout;
  d["tp_rank"] = s.tp_rank;
  d["tp_size"] = s.tp_size;
  d["tenant"] = s.tenant;
  d["hash"] = std::string(HashAlgorithmName(s.hash));
  d["segment_blocks"] = s.segment_blocks;
  return d;
}

}  // namespace

void RegisterClient(py::module_& m) {
  py::class_<Namespace>(m, "Namespace", "A registered namespace (Client.register_namespace).")
      .def_property_readonly("id", &Namespace::id)
      .def_property_readonly("spec", [](const Namespace& ns) { return SpecDict(ns.spec()); })
      .def_property_readonly("layout", [](const Namespace& ns) { return ns.spec().layout; })
      .def_property_readonly("layout_fingerprint", &Namespace::layout_fingerprint)
      .def(
          "block_bytes",
          [](const Namespace& ns, const std::string& codec) { return ns.BlockBytes(CodecFromName(codec)); },
          py::arg("codec") = "none")
      .def(
          "hash_tokens",
          [](const Namespace& ns, const py::object& tokens, const py::object& extra) {
            return HashTokens(tokens, ns.spec().layout.block_tokens, ns.spec().hash, extra,
                              BlockKey::Root());
          },
          py::arg("tokens"), py::arg("extra") = py::bytes())
      .def("__repr__", [](const Namespace& ns) {
        return absl::StrCat("Namespace(", ns.spec().DebugString(), ")");
      });

  py::class_<Client, std::unique_ptr<Client>>(m, "Client", "A connection to a kvfabric cluster.")
      .def(py::init([](const std::string& coordinator, const std::string& token,
                       const std::string& tls_ca_file, const std::string& data_listen_host,
                       const std::string& ucx_tls, double rpc_timeout, double data_timeout,
                       const std::string& ack, int worker_threads, const std::string& name) {
             ClientOptions o;
             o.coordinator = coordinator;
             o.token = token;
             o.tls_ca_file = tls_ca_file;
             o.data_listen_host = data_listen_host;
             o.ucx_tls = ucx_tls;
             o.rpc_timeout = absl::Seconds(rpc_timeout);
             o.data_timeout = absl::Seconds(data_timeout);
             o.ack = AckFromName(ack);
             o.worker_threads = worker_threads;
             o.name = name;
             return Unlocked([&] { return Client::Connect(o); });
           }),
           py::arg("coordinator"), py::arg("token") = "", py::kw_only(), py::arg("tls_ca_file") = "",
           py::arg("data_listen_host") = "", py::arg("ucx_tls") = "", py::arg("rpc_timeout") = 5.0,
           py::arg("data_timeout") = 5.0, py::arg("ack") = "primary", py::arg("worker_threads") = 4,
           py::arg("name") = "kvf-client")
      .def(
          "register_namespace",
          [](Client& c, const std::string& model_id, const KvLayout& layout, uint32_t tp_rank,
             uint32_t tp_size, const std::string& tenant, const std::string& hash,
             uint32_t segment_blocks) {
            NamespaceSpec s;
            s.model_id = model_id;
            s.layout = layout;
            s.tp_rank = tp_rank;
            s.tp_size = tp_size;
            s.tenant = tenant;
            s.hash = ValueOrThrow(ParseHashAlgorithm(hash));
            s.segment_blocks = segment_blocks;
            return ValueOrThrow(c.RegisterNamespace(s));
          },
          py::arg("model_id"), py::arg("layout"), py::kw_only(), py::arg("tp_rank") = 0,
          py::arg("tp_size") = 1, py::arg("tenant") = "", py::arg("hash") = "xxh3_128",
          py::arg("segment_blocks") = NamespaceSpec{}.segment_blocks)
      .def(
          "put",
          [](Client& c, const Namespace& ns, const Chain& chain, size_t index, py::handle buf,
             const std::string& codec, bool is_mutable, const py::object& ack) {
            HeldBuffer b(buf, false);
            const PutOptions o = MakePutOptions(codec, is_mutable, ack);
            return VersionTuple(
                Unlocked([&] { return c.Put(ns, chain.keys, index, b.data(), b.size(), o); }));
          },
          py::arg("ns"), py::arg("chain"), py::arg("index"), py::arg("buf"), py::kw_only(),
          py::arg("codec") = "none", py::arg("mutable") = false, py::arg("ack") = py::none())
      .def(
          "get",
          [](Client& c, const Namespace& ns, const Chain& chain, size_t index, py::handle out,
             const py::object& min_version) {
            HeldBuffer b(out, true);
            const GetOptions o = MakeGetOptions(min_version);
            BlockResult r =
                Unlocked([&] { return c.Get(ns, chain.keys, index, b.data(), b.size(), o); });
            OkOrThrow(r.status);
            return r;
          },
          py::arg("ns"), py::arg("chain"), py::arg("index"), py::arg("out"), py::kw_only(),
          py::arg("min_version") = py::none())
      .def(
          "batch_put",
          [](Client& c, const Namespace& ns, const Chain& chain, size_t begin,
             const py::sequence& bufs, const std::string& codec, bool is_mutable,
             const py::object& ack) {
            std::vector<HeldBuffer> held = HoldBuffers(bufs, false);
            const std::vector<ConstBlockBuffer> views = ConstViews(held);
            const PutOptions o = MakePutOptions(codec, is_mutable, ack);
            return Unlocked([&] { return c.BatchPut(ns, chain.keys, begin, views, o); }).blocks;
          },
          py::arg("ns"), py::arg("chain"), py::arg("begin"), py::arg("bufs"), py::kw_only(),
          py::arg("codec") = "none", py::arg("mutable") = false, py::arg("ack") = py::none())
      .def(
          "batch_get",
          [](Client& c, const Namespace& ns, const Chain& chain, size_t begin,
             const py::sequence& outs, const py::object& min_version) {
            std::vector<HeldBuffer> held = HoldBuffers(outs, true);
            const std::vector<BlockBuffer> views = MutableViews(held);
            const GetOptions o = MakeGetOptions(min_version);
            return Unlocked([&] { return c.BatchGet(ns, chain.keys, begin, views, o); }).blocks;
          },
          py::arg("ns"), py::arg("chain"), py::arg("begin"), py::arg("outs"), py::kw_only(),
          py::arg("min_version") = py::none())
      .def(
          "lookup",
          [](Client& c, const Namespace& ns, const Chain& chain, size_t begin, const py::object& end) {
            const size_t e = EndOf(chain, end);
            return Unlocked([&] { return c.Lookup(ns, chain.keys, begin, e); });
          },
          py::arg("ns"), py::arg("chain"), py::arg("begin") = 0, py::arg("end") = py::none())
      .def(
          "exists",
          [](Client& c, const Namespace& ns, const Chain& chain, size_t begin, const py::object& end) {
            const size_t e = EndOf(chain, end);
            return Unlocked([&] { return c.Exists(ns, chain.keys, begin, e); });
          },
          py::arg("ns"), py::arg("chain"), py::arg("begin") = 0, py::arg("end") = py::none())
      .def(
          "remove",
          [](Client& c, const Namespace& ns, const Chain& chain, size_t begin, const py::object& end) {
            const size_t e = EndOf(chain, end);
            return Unlocked([&] { return c.Remove(ns, chain.keys, begin, e); }).blocks;
          },
          py::arg("ns"), py::arg("chain"), py::arg("begin") = 0, py::arg("end") = py::none())
      .def_property_readonly("map_epoch", &Client::map_epoch)
      .def("nodes", [](const Client& c) {
        py::list out;
        for (const NodeInfo& n : c.cluster_map().nodes) {
          py::dict d;
          d["id"] = n.id;
          d["state"] = std::string(NodeStateName(n.state));
          d["domain"] = n.failure_domain;
          d["control_address"] = n.address;
          d["http_address"] = n.http_address;
          d["capacity_bytes"] = n.capacity_bytes;
          out.append(d);
        }
        return out;
      });

  py::class_<Sequence>(m, "Sequence", "A mutable, position-addressed list of blocks (docs/sequences.md).")
      .def_property_readonly("length", &Sequence::length)
      .def("version", [](const Sequence& s, size_t i) { return VersionTuple(s.version(i)); })
      .def(
          "append",
          [](Sequence& s, const py::sequence& bufs, const std::string& codec) {
            std::vector<HeldBuffer> held = HoldBuffers(bufs, false);
            const std::vector<ConstBlockBuffer> views = ConstViews(held);
            const PutOptions o = MakePutOptions(codec, true, py::none());
            return Unlocked([&] { return s.Append(views, o); }).blocks;
          },
          py::arg("bufs"), py::kw_only(), py::arg("codec") = "none")
      .def(
          "write",
          [](Sequence& s, size_t index, py::handle buf, const std::string& codec) {
            HeldBuffer b(buf, false);
            const PutOptions o = MakePutOptions(codec, true, py::none());
            return VersionTuple(Unlocked([&] { return s.Write(index, b.data(), b.size(), o); }));
          },
          py::arg("index"), py::arg("buf"), py::kw_only(), py::arg("codec") = "none")
      .def(
          "read",
          [](Sequence& s, size_t begin, size_t end, const py::sequence& outs) {
            std::vector<HeldBuffer> held = HoldBuffers(outs, true);
            const std::vector<BlockBuffer> views = MutableViews(held);
            return Unlocked([&] { return s.Read(begin, end, views); }).blocks;
          },
          py::arg("begin"), py::arg("end"), py::arg("outs"))
      .def("refresh", [](Sequence& s) {
        absl::Status st;
        {
          py::gil_scoped_release release;
          st = s.Refresh();
        }
        OkOrThrow(st);
      });

  m.def(
      "_open_sequence",
      [](Client& c, const Namespace& ns, const py::object& name_or_id, const std::string& hash) {
        SequenceId id;
        if (py::isinstance<py::str>(name_or_id)) {
          id = SequenceId::FromName(name_or_id.cast<std::string>(), ValueOrThrow(ParseHashAlgorithm(hash)));
        } else {
          auto t = name_or_id.cast<py::tuple>();
          id = SequenceId{t[0].cast<uint64_t>(), t[1].cast<uint64_t>()};
        }
        return Unlocked([&] { return Sequence::Open(c, ns, id); });
      },
      py::arg("client"), py::arg("ns"), py::arg("name_or_id"), py::arg("hash") = "xxh3_128",
      py::keep_alive<0, 1>());
}

}  // namespace kvf::python
