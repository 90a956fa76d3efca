// kvf-codec-advisor (tools/codec_advisor/main.cc) as an operator runs it: on
// synthetic data, on a sample file, and on files it must refuse.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "kernels/codec_quality.h"
#include "tools/launch/spawn.h"

#ifndef KVF_CODEC_ADVISOR_BIN
#error "KVF_CODEC_ADVISOR_BIN must name the kvf-codec-advisor binary"
#endif

namespace kvf {
namespace {

struct ToolRun {
  int code = -1;  // -1: did not exit in time, or was killed
  std::string out, err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Dir() { return ::testing::TempDir(); }

ToolRun Advisor(std::vector<std::string> args) {
  static int serial = 0;
  const std::string prefix = absl::StrCat(Dir(), "/advisor-", ::getpid(), "-", serial++);
  launch::SpawnOptions options;
  options.argv = std::move(args);
  options.argv.insert(options.argv.begin(), KVF_CODEC_ADVISOR_BIN);
  options.out = launch::Stdio::File(prefix + ".out");
  options.err = launch::Stdio::File(prefix + ".err");
  ToolRun r;
  absl::StatusOr<launch::ChildProcess> child = launch::ChildProcess::Spawn(options);
  if (!child.ok()) {
    r.err = child.status().ToString();
    return r;
  }
  if (std::optional<launch::ExitStatus> exit = child->Wait(absl::Seconds(120)); exit.has_value()) {
    r.code = exit->signal == 0 ? exit->code : -1;
  }
  child->Kill();
  r.out = ReadAll(prefix + ".out");
  r.err = ReadAll(prefix + ".err");
  return r;
}

std::string Describe(const ToolRun& r) {
  return absl::StrCat("exit ", r.code, "\n--- stdout\n", r.out, "--- stderr\n", r.err);
}

KvLayout SmallLayout() {
  KvLayout l;
  l.num_layers = 2;
  l.num_kv_heads = 4;
  l.head_dim = 64;
  l.block_tokens = 32;
  return l;
}

const char kLayoutFlag[] = "--layout=2,4,64,32";

std::string WriteFile(const std::string& name, const std::vector<std::byte>& bytes) {
  const std::string path = absl::StrCat(Dir(), "/", ::getpid(), "-", name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return path;
}

TEST(CodecAdvisorTool, SyntheticSamplePrintsTableAndRecommendation) {
  const ToolRun r = Advisor({kLayoutFlag, "--synthetic=outliers", "--blocks=2", "--budget=0.5"});
  ASSERT_EQ(r.code, 0) << Describe(r);
  for (const char* word : {"attention error", "KL", "K-only", "V-only", "size ratio", "none",
                           "fp8_e4m3", "int8", "int4"}) {
    EXPECT_NE(r.out.find(word), std::string::npos) << word << "\n" << Describe(r);
  }
  // A 50% budget admits every codec: the smallest wins.
  EXPECT_NE(r.out.find("recommended: int4 (budget 50%)"), std::string::npos) << Describe(r);
}

TEST(CodecAdvisorTool, JsonHasEveryCodecAndTheRecommendation) {
  const ToolRun r =
      Advisor({kLayoutFlag, "--synthetic=gaussian", "--blocks=1", "--budget=0", "--json"});
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_EQ(r.out.rfind("{\"layout\":{", 0), 0u) << Describe(r);
  EXPECT_NE(r.out.find("\"recommended\":\"none\""), std::string::npos) << Describe(r);
  for (const char* codec : {"\"none\"", "\"fp8_e4m3\"", "\"int8\"", "\"int4\""}) {
    EXPECT_NE(r.out.find(absl::StrCat("\"codec\":", codec)), std::string::npos) << Describe(r);
  }
}

TEST(CodecAdvisorTool, ReadsWholeBlocksFromASampleFile) {
  auto blocks = SyntheticKvBlocks(SmallLayout(), SyntheticKvKind::kOutliers, 3, 5);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  const std::string path = WriteFile("three-blocks.kv", *blocks);
  const ToolRun r = Advisor({kLayoutFlag, "--dtype=fp16", absl::StrCat("--sample=", path)});
  std::remove(path.c_str());
  ASSERT_EQ(r.code, 0) << Describe(r);
  EXPECT_NE(r.out.find("3 blocks of L=2 H=4 D=64 T=32 fp16"), std::string::npos) << Describe(r);
  EXPECT_NE(r.out.find("recommended: "), std::string::npos) << Describe(r);
}

TEST(CodecAdvisorTool, RefusesAMissingOrPartialSampleFile) {
  const ToolRun missing = Advisor({kLayoutFlag, absl::StrCat("--sample=", Dir(), "/no-such-file")});
  EXPECT_EQ(missing.code, 1) << Describe(missing);
  EXPECT_NE(missing.err.find("cannot read --sample="), std::string::npos) << Describe(missing);
  EXPECT_EQ(missing.out, "");

  std::vector<std::byte> partial(SmallLayout().BytesPerBlock() + 3);
  const std::string path = WriteFile("partial.kv", partial);
  const ToolRun bad = Advisor({kLayoutFlag, absl::StrCat("--sample=", path)});
  std::remove(path.c_str());
  EXPECT_EQ(bad.code, 1) << Describe(bad);
  EXPECT_NE(bad.err.find(absl::StrCat(partial.size(), " bytes: want one or more whole blocks of ",
                                      SmallLayout().BytesPerBlock(), " bytes")),
            std::string::npos)
      << Describe(bad);
}

TEST(CodecAdvisorTool, BadCommandLinesAreUsageErrors) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--synthetic=outliers"},                                  // no layout
           {"--layout=2,4,64", "--synthetic=outliers"},               // three numbers
           {kLayoutFlag},                                             // no data
           {kLayoutFlag, "--synthetic=outliers", "--sample=x"},       // both
           {kLayoutFlag, "--synthetic=uniform"},                      // unknown kind
           {kLayoutFlag, "--synthetic=outliers", "--budget=-1"},      // negative budget
           {kLayoutFlag, "--synthetic=outliers", "--dtype=int8"}}) {  // not a dtype
    const ToolRun r = Advisor(args);
    EXPECT_EQ(r.code, 2) << args.back() << "\n" << Describe(r);
    EXPECT_NE(r.err.find("kvf-codec-advisor: "), std::string::npos) << Describe(r);
  }
}

}  // namespace
}  // namespace kvf
