#include "common/block_hash.h"

#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvf {
namespace {

std::vector<uint32_t> Iota(size_t n, uint32_t start = 0) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

std::string KeysAsText(HashAlgorithm algorithm) {
  auto keys = HashSequence(algorithm, Iota(64, 1000), 16, "lora:7");
  std::string out;
  for (const BlockKey& k : *keys) absl::StrAppend(&out, k.ToHex(), "\n");
  return out;
}

// Golden values: the hash encoding is a wire format shared with every engine
// and every deployed cache. If this test fails, keys changed for everyone.
TEST(BlockHash, GoldenValuesXxh3) {
  const std::vector<uint32_t> tokens = Iota(16);
  EXPECT_EQ(HashBlock(HashAlgorithm::kXxh3_128, BlockKey::Root(), tokens).ToHex(),
            "cd5245c316ff53362495622119a5f146");
  EXPECT_EQ(HashBlock(HashAlgorithm::kXxh3_128, BlockKey{1, 2}, tokens, "x").ToHex(),
            "6be26b360966efff6b867799295ebbbf");
}

TEST(BlockHash, GoldenValuesSha256) {
  const std::vector<uint32_t> tokens = Iota(16);
  EXPECT_EQ(HashBlock(HashAlgorithm::kSha256, BlockKey::Root(), tokens).ToHex(),
            "a395b2cf4edf8c3ad342638f2bd24dff");
}

// Run by CrossProcessDeterminism in a child process.
TEST(BlockHash, PrintKeysForParent) {
  if (std::getenv("KVF_PRINT_KEYS") == nullptr) GTEST_SKIP() << "only run as a child process";
  std::printf("BEGIN\n%s%sEND\n", KeysAsText(HashAlgorithm::kXxh3_128).c_str(),
              KeysAsText(HashAlgorithm::kSha256).c_str());
}

TEST(BlockHash, CrossProcessDeterminism) {
  const std::string cmd = absl::StrCat("KVF_PRINT_KEYS=1 ", KVF_SELF_PATH,
                                       " --gtest_filter=BlockHash.PrintKeysForParent");
  FILE* child = popen(cmd.c_str(), "r");
  ASSERT_NE(child, nullptr);
  std::string output;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), child)) > 0) output.append(buf, n);
  ASSERT_EQ(pclose(child), 0) << output;
  const size_t begin = output.find("BEGIN\n");
  const size_t end = output.find("END\n");
  ASSERT_NE(begin, std::string::npos) << output;
  ASSERT_NE(end, std::string::npos) << output;
  EXPECT_EQ(output.substr(begin + 6, end - begin - 6),
            KeysAsText(HashAlgorithm::kXxh3_128) + KeysAsText(HashAlgorithm::kSha256));
}

class BlockHashSensitivity : public ::testing::TestWithParam<HashAlgorithm> {};

TEST_P(BlockHashSensitivity, EveryInputChangesTheKey) {
  const HashAlgorithm alg = GetParam();
  const std::vector<uint32_t> tokens = Iota(16, 5);
  const BlockKey parent{11, 22};
  const BlockKey base = HashBlock(alg, parent, tokens, "extra");
  EXPECT_EQ(HashBlock(alg, parent, tokens, "extra"), base);  // deterministic

  for (size_t i = 0; i < tokens.size(); ++i) {  // any single token
    std::vector<uint32_t> t = tokens;
    t[i] ^= 1;
    EXPECT_NE(HashBlock(alg, parent, t, "extra"), base) << "token " << i;
  }
  std::vector<uint32_t> swapped = tokens;  // order
  std::swap(swapped[3], swapped[4]);
  EXPECT_NE(HashBlock(alg, parent, swapped, "extra"), base);
  EXPECT_NE(HashBlock(alg, BlockKey{11, 23}, tokens, "extra"), base);  // parent
  EXPECT_NE(HashBlock(alg, BlockKey::Root(), tokens, "extra"), base);
  EXPECT_NE(HashBlock(alg, parent, tokens, "extrb"), base);  // extra keys
  EXPECT_NE(HashBlock(alg, parent, tokens, ""), base);
  // Length is encoded: moving a boundary between tokens and extra changes it.
  EXPECT_NE(HashBlock(alg, parent, absl::MakeConstSpan(tokens).first(15), "extra"), base);
}

TEST_P(BlockHashSensitivity, SequenceIsChained) {
  const HashAlgorithm alg = GetParam();
  const std::vector<uint32_t> tokens = Iota(50);
  auto keys = HashSequence(alg, tokens, 16);
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 3u);  // the partial 4th block has no key
  BlockKey prev = BlockKey::Root();
  for (size_t i = 0; i < keys->size(); ++i) {
    prev = HashBlock(alg, prev, absl::MakeConstSpan(tokens).subspan(16 * i, 16));
    EXPECT_EQ((*keys)[i], prev);
  }
  // Equal keys mean equal prefixes: a change in block 0 changes every later key.
  std::vector<uint32_t> changed = tokens;
  changed[0] = 999;
  auto keys2 = HashSequence(alg, changed, 16);
  for (size_t i = 0; i < keys->size(); ++i) EXPECT_NE((*keys)[i], (*keys2)[i]);
  // A change in block 2 leaves blocks 0 and 1 alone.
  changed = tokens;
  changed[40] = 999;
  keys2 = HashSequence(alg, changed, 16);
  EXPECT_EQ((*keys)[0], (*keys2)[0]);
  EXPECT_EQ((*keys)[1], (*keys2)[1]);
  EXPECT_NE((*keys)[2], (*keys2)[2]);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, BlockHashSensitivity,
                         ::testing::Values(HashAlgorithm::kXxh3_128, HashAlgorithm::kSha256));

TEST(BlockHash, SequenceRejectsZeroBlockTokens) {
  EXPECT_EQ(HashSequence(HashAlgorithm::kXxh3_128, Iota(4), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BlockHash, AlgorithmsDiffer) {
  const std::vector<uint32_t> tokens = Iota(16);
  EXPECT_NE(HashBlock(HashAlgorithm::kXxh3_128, BlockKey::Root(), tokens),
            HashBlock(HashAlgorithm::kSha256, BlockKey::Root(), tokens));
  EXPECT_EQ(*ParseHashAlgorithm("sha256"), HashAlgorithm::kSha256);
  EXPECT_FALSE(ParseHashAlgorithm("md5").ok());
}

}  // namespace
}  // namespace kvf
