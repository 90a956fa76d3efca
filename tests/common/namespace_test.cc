#include "common/namespace.h"

#include "gtest/gtest.h"

namespace kvf {
namespace {

NamespaceSpec Llama() {
  NamespaceSpec s;
  s.model_id = "meta-llama/Meta-Llama-3-8B";
  s.layout = {.num_layers = 32, .num_kv_heads = 8, .head_dim = 128, .block_tokens = 16};
  s.tp_rank = 0;
  s.tp_size = 1;
  s.tenant = "default";
  return s;
}

TEST(Namespace, IdChangesWithEveryField) {
  const NamespaceSpec base = Llama();
  ASSERT_TRUE(base.Validate().ok());
  const NamespaceId id = base.Id();
  auto changed = [&](auto mutate) {
    NamespaceSpec s = base;
    mutate(s);
    return s.Id() != id;
  };
  EXPECT_TRUE(changed([](NamespaceSpec& s) { s.model_id += "-instruct"; }));
  EXPECT_TRUE(changed([](NamespaceSpec& s) { s.layout.dtype = DType::kBf16; }));
  EXPECT_TRUE(changed([](NamespaceSpec& s) { s.tp_size = 2; }));
  EXPECT_TRUE(changed([](NamespaceSpec& s) { s.tp_size = 2; s.tp_rank = 1; }));
  EXPECT_TRUE(changed([](NamespaceSpec& s) { s.tenant = "other"; }));
  EXPECT_TRUE(changed([](NamespaceSpec& s) { s.hash = HashAlgorithm::kSha256; }));
  EXPECT_TRUE(changed([](NamespaceSpec& s) { s.segment_blocks = 8; }));
  // Length-prefixed strings: moving bytes between fields changes the id.
  NamespaceSpec a = base, b = base;
  a.model_id = "ab";
  a.tenant = "c";
  b.model_id = "a";
  b.tenant = "bc";
  EXPECT_NE(a.Id(), b.Id());
}

TEST(Namespace, ValidateRejectsBadSpecs) {
  NamespaceSpec s = Llama();
  s.tp_rank = 1;
  EXPECT_EQ(s.Validate().code(), absl::StatusCode::kInvalidArgument);
  s = Llama();
  s.model_id.clear();
  EXPECT_FALSE(s.Validate().ok());
  s = Llama();
  s.layout.head_dim = 0;
  EXPECT_FALSE(s.Validate().ok());
  s = Llama();
  s.tenant.assign(1000, 'x');
  EXPECT_FALSE(s.Validate().ok());
  s = Llama();
  s.segment_blocks = 0;
  EXPECT_FALSE(s.Validate().ok());
}

}  // namespace
}  // namespace kvf
