// kvfabric.advise_codec: which codec to store a model's KV blocks with
// (client/codec_advisor.h; docs/codecs.md, "Choosing a codec").
#include <pybind11/stl.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "client/codec_advisor.h"
#include "python/src/bindings.h"

namespace kvf::python {
namespace {

// A typed array's element type, when it names one of the block dtypes
// ("torch.float16", "float32", ...); "" for bytes-likes and other types.
std::string ArrayDType(const py::object& sample) {
  if (!py::hasattr(sample, "dtype")) return "";
  std::string name = py::str(sample.attr("dtype"));
  if (name.rfind("torch.", 0) == 0) name = name.substr(6);
  if (name == "float16") return "fp16";
  if (name == "bfloat16") return "bf16";
  if (name == "float32") return "fp32";
  return "";
}

py::dict AdviseCodecPy(const py::object& sample, double budget, uint32_t num_layers,
                       uint32_t num_kv_heads, uint32_t head_dim, uint32_t block_tokens,
                       const std::string& dtype, int queries_per_head, uint32_t seed) {
  KvLayout layout{num_layers, num_kv_heads, head_dim, block_tokens,
                  ValueOrThrow(ParseDType(dtype))};
  // A float32 tensor handed in for an fp16 layout would be measured as
  // garbage fp16 bits; catch the likely mistake, allow raw bytes of any kind.
  if (const std::string got = ArrayDType(sample); !got.empty() && got != dtype) {
    ThrowStatus(absl::InvalidArgumentError(
        absl::StrCat("the sample's elements are ", got, " but the layout's dtype is ", dtype)));
  }
  HeldBuffer held(sample, /*writable=*/false);
  QualityOptions options;
  options.queries_per_head = queries_per_head;
  options.seed = seed;
  absl::StatusOr<CodecAdvice> advice;
  {
    py::gil_scoped_release release;  // seconds of arithmetic on a large sample
    advice = AdviseCodec(layout, {static_cast<const std::byte*>(held.data()), held.size()}, budget,
                         options);
  }
  OkOrThrow(advice.status());
  py::dict codecs;
  for (const CodecQuality& q : advice->codecs) {
    py::dict c;
    c["rel_l2"] = q.rel_l2;
    c["cosine"] = q.cosine;
    c["kl"] = q.kl;
    c["k_only_rel_l2"] = q.k_only_rel_l2;
    c["v_only_rel_l2"] = q.v_only_rel_l2;
    c["size_ratio"] = q.size_ratio;
    c["encoded_bytes"] = q.encoded_bytes;
    codecs[py::str(std::string(CodecName(q.codec)))] = c;
  }
  py::dict out;
  out["recommended"] = std::string(CodecName(advice->recommended));
  out["reason"] = advice->reason;
  out["budget"] = budget;
  out["blocks"] = held.size() / layout.BytesPerBlock();
  out["codecs"] = codecs;
  return out;
}

}  // namespace

void RegisterAdvisor(py::module_& m) {
  m.def("advise_codec", &AdviseCodecPy, py::arg("sample"), py::arg("budget") = 0.01, py::kw_only(),
        py::arg("num_layers"), py::arg("num_kv_heads"), py::arg("head_dim"),
        py::arg("block_tokens"), py::arg("dtype") = "fp16", py::arg("queries_per_head") = 8,
        py::arg("seed") = 99,
        "Measures every codec on `sample` (whole unencoded blocks in canonical order\n"
        "[L][2][T][H][D]: bytes-like, NumPy array or CPU torch tensor) on attention outputs\n"
        "and recommends the smallest whose relative error is <= `budget` (0.01 = 1%).\n"
        "Returns {'recommended', 'reason', 'budget', 'blocks', 'codecs': {name: {'rel_l2',\n"
        "'cosine', 'kl', 'k_only_rel_l2', 'v_only_rel_l2', 'size_ratio', 'encoded_bytes'}}}.\n"
        "Releases the GIL while measuring.");
}

}  // namespace kvf::python
