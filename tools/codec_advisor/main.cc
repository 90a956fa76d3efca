// kvf-codec-advisor: which codec should a model's KV blocks be stored with?
// Measures every codec on a sample of blocks, on attention outputs (what the
// model would feel), and recommends the smallest within an error budget
// (client/codec_advisor.h, docs/codecs.md "Choosing a codec").
//
//   kvf-codec-advisor --layout=L,H,D,T [--dtype=fp16] --sample=FILE [--budget=0.01] [--json]
//   kvf-codec-advisor --layout=L,H,D,T --synthetic=outliers|gaussian [--blocks=4] ...
//
// Exit status: 0 advice printed, 1 the sample could not be read or measured,
// 2 usage.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/codec_advisor.h"
#include "common/kv_layout.h"
#include "common/status_macros.h"
#include "kernels/codec_quality.h"
#include "tools/kvfctl/output.h"

ABSL_FLAG(std::string, layout, "", "block shape L,H,D,T: layers, KV heads, head dim, tokens");
ABSL_FLAG(std::string, dtype, "fp16", "element type of the unencoded blocks: fp16, bf16 or fp32");
ABSL_FLAG(std::string, sample, "",
          "file of whole unencoded blocks, canonical order [L][2 (K,V)][T][H][D], concatenated");
ABSL_FLAG(std::string, synthetic, "",
          "instead of --sample: outliers (K with outlier channels, like real caches) or gaussian");
ABSL_FLAG(int, blocks, 4, "--synthetic: how many blocks of one sequence to generate");
ABSL_FLAG(double, budget, 0.01, "error budget: relative L2 error of attention outputs (0.01 = 1%)");
ABSL_FLAG(int, queries, 8, "random N(0, 1) queries per (layer, head)");
ABSL_FLAG(uint32_t, seed, 99, "seed of the random queries");
ABSL_FLAG(bool, json, false, "print one JSON object instead of text");

namespace kvf {
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
// The synthetic data of kvf_codec_accuracy_test, so one block here reproduces
// its tables.
constexpr uint32_t kSyntheticSeed = 2024;

constexpr char kUsage[] =
    "measure every KV codec on a sample and recommend one (docs/codecs.md)\n"
    "  kvf-codec-advisor --layout=L,H,D,T [--dtype=fp16] --sample=FILE [--budget=0.01] [--json]\n"
    "  kvf-codec-advisor --layout=L,H,D,T --synthetic=outliers|gaussian [--blocks=4] ...";

int Usage(const std::string& message) {
  std::fprintf(stderr, "kvf-codec-advisor: %s\n  (`kvf-codec-advisor --help` lists the flags)\n",
               message.c_str());
  return kExitUsage;
}

int Failed(const std::string& message) {
  std::fprintf(stderr, "kvf-codec-advisor: %s\n", message.c_str());
  return kExitFailed;
}

absl::StatusOr<KvLayout> ParseLayout(const std::string& text, const std::string& dtype) {
  const std::vector<std::string> parts = absl::StrSplit(text, ',');
  uint32_t v[4];
  if (parts.size() != 4 || !absl::SimpleAtoi(parts[0], &v[0]) ||
      !absl::SimpleAtoi(parts[1], &v[1]) || !absl::SimpleAtoi(parts[2], &v[2]) ||
      !absl::SimpleAtoi(parts[3], &v[3])) {
    return absl::InvalidArgumentError(
        absl::StrCat("--layout=", text,
                     ": want L,H,D,T (layers, KV heads, head dim, block tokens), e.g. "
                     "32,8,128,16"));
  }
  KvLayout l;
  l.num_layers = v[0];
  l.num_kv_heads = v[1];
  l.head_dim = v[2];
  l.block_tokens = v[3];
  KVF_ASSIGN_OR_RETURN(l.dtype, ParseDType(dtype));
  KVF_RETURN_IF_ERROR(l.Validate());
  return l;
}

absl::StatusOr<std::vector<std::byte>> ReadSample(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read --sample=", path));
  std::vector<std::byte> out(static_cast<size_t>(in.tellg()));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()))) {
    return absl::DataLossError(absl::StrCat("error reading --sample=", path));
  }
  return out;
}

std::string Pct(double fraction) { return absl::StrFormat("%.3f%%", 100 * fraction); }

void PrintText(const KvLayout& l, const std::string& source, size_t blocks, double budget,
               int queries, const CodecAdvice& a) {
  std::printf("%s, %zu block%s of %s, %d random queries per (layer, head)\n\n", source.c_str(),
              blocks, blocks == 1 ? "" : "s", l.DebugString().c_str(), queries);
  ctl::Table table({"codec", "attention error", "cosine", "KL", "K-only", "V-only", "size ratio"},
                   {false, true, true, true, true, true, true});
  for (const CodecQuality& q : a.codecs) {
    table.AddRow({std::string(CodecName(q.codec)), Pct(q.rel_l2), absl::StrFormat("%.6f", q.cosine),
                  absl::StrFormat("%.3g", q.kl), Pct(q.k_only_rel_l2), Pct(q.v_only_rel_l2),
                  absl::StrFormat("%.2fx", q.size_ratio)});
  }
  table.Print(stdout);
  std::printf("\nrecommended: %s (budget %s)\n  %s\n",
              std::string(CodecName(a.recommended)).c_str(),
              absl::StrFormat("%g%%", 100 * budget).c_str(), a.reason.c_str());
}

void PrintJson(const KvLayout& l, const std::string& sample, const std::string& synthetic,
               size_t blocks, double budget, int queries, const CodecAdvice& a) {
  ctl::JsonArray codecs;
  for (const CodecQuality& q : a.codecs) {
    codecs.Raw(ctl::JsonObject()
                   .Str("codec", CodecName(q.codec))
                   .Num("rel_l2", q.rel_l2)
                   .Num("cosine", q.cosine)
                   .Num("kl", q.kl)
                   .Num("k_only_rel_l2", q.k_only_rel_l2)
                   .Num("v_only_rel_l2", q.v_only_rel_l2)
                   .Num("size_ratio", q.size_ratio)
                   .Uint("encoded_bytes", q.encoded_bytes)
                   .Done());
  }
  ctl::JsonObject layout;
  layout.Uint("num_layers", l.num_layers)
      .Uint("num_kv_heads", l.num_kv_heads)
      .Uint("head_dim", l.head_dim)
      .Uint("block_tokens", l.block_tokens)
      .Str("dtype", DTypeName(l.dtype))
      .Uint("bytes_per_block", l.BytesPerBlock());
  ctl::JsonObject out;
  out.Raw("layout", layout.Done());
  if (sample.empty()) {
    out.Str("synthetic", synthetic);
  } else {
    out.Str("sample", sample);
  }
  out.Uint("blocks", blocks)
      .Int("queries_per_head", queries)
      .Num("budget", budget)
      .Raw("codecs", codecs.Done())
      .Str("recommended", CodecName(a.recommended))
      .Str("reason", a.reason);
  std::printf("%s\n", out.Done().c_str());
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  // --help lists this file's flags (absl matches the binary's name by
  // default, and kvf-codec-advisor is not main.cc).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "codec_advisor");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  const std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) return Usage(absl::StrCat("unexpected argument '", rest[1], "'"));
  if (absl::GetFlag(FLAGS_layout).empty()) return Usage("--layout=L,H,D,T is required");
  absl::StatusOr<KvLayout> layout =
      ParseLayout(absl::GetFlag(FLAGS_layout), absl::GetFlag(FLAGS_dtype));
  if (!layout.ok()) return Usage(std::string(layout.status().message()));
  const std::string sample_path = absl::GetFlag(FLAGS_sample);
  const std::string synthetic = absl::GetFlag(FLAGS_synthetic);
  if (sample_path.empty() == synthetic.empty()) {
    return Usage("give one of --sample=FILE or --synthetic=outliers|gaussian");
  }
  const double budget = absl::GetFlag(FLAGS_budget);
  if (!(budget >= 0)) return Usage("--budget must be a fraction >= 0, e.g. 0.01 for 1%");
  QualityOptions options;
  options.queries_per_head = absl::GetFlag(FLAGS_queries);
  options.seed = absl::GetFlag(FLAGS_seed);
  if (options.queries_per_head < 1) return Usage("--queries must be at least 1");

  std::vector<std::byte> sample;
  std::string source;
  if (!sample_path.empty()) {
    absl::StatusOr<std::vector<std::byte>> read = ReadSample(sample_path);
    if (!read.ok()) return Failed(std::string(read.status().message()));
    sample = *std::move(read);
    source = sample_path;
  } else {
    absl::StatusOr<SyntheticKvKind> kind = ParseSyntheticKvKind(synthetic);
    if (!kind.ok()) return Usage(absl::StrCat("--synthetic: ", kind.status().message()));
    const int blocks = absl::GetFlag(FLAGS_blocks);
    if (blocks < 1) return Usage("--blocks must be at least 1");
    absl::StatusOr<std::vector<std::byte>> made =
        SyntheticKvBlocks(*layout, *kind, static_cast<size_t>(blocks), kSyntheticSeed);
    if (!made.ok()) return Failed(std::string(made.status().message()));
    sample = *std::move(made);
    source = absl::StrCat("synthetic ", synthetic, " data");
  }

  absl::StatusOr<CodecAdvice> advice = AdviseCodec(*layout, sample, budget, options);
  if (!advice.ok()) return Failed(absl::StrCat(source, ": ", advice.status().message()));
  const size_t blocks = sample.size() / layout->BytesPerBlock();
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(*layout, sample_path, synthetic, blocks, budget, options.queries_per_head, *advice);
  } else {
    PrintText(*layout, source, blocks, budget, options.queries_per_head, *advice);
  }
  return 0;
}

}  // namespace
}  // namespace kvf

int main(int argc, char** argv) { return kvf::Main(argc, argv); }
