#include "common/namespace.h"

#include <string>

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

TEST(Namespace, PrecisionPolicyDoesNotChangeTheId) {
  // Blocks are self-describing: engines with different policies share bytes,
  // so they must land in the same namespace.
  const NamespaceSpec base = Llama();
  NamespaceSpec mixed = base;
  mixed.precision = {.recent_blocks = 8, .recent = 2, .old = 3};
  ASSERT_TRUE(mixed.Validate().ok()) << mixed.Validate();
  EXPECT_EQ(mixed.Id(), base.Id());
  mixed.precision = {.recent_blocks = 64, .recent = 0, .old = 3};
  ASSERT_TRUE(mixed.Validate().ok()) << mixed.Validate();
  EXPECT_EQ(mixed.Id(), base.Id());
}

TEST(Namespace, ValidateRejectsNonsensePrecisionPolicies) {
  auto error = [](PrecisionPolicy p) {
    NamespaceSpec s = Llama();
    s.precision = p;
    return s.Validate();
  };
  // Accepted: off (whatever the pair), int8 -> int4, fp8 -> int4, none -> int4,
  // none -> int8.
  EXPECT_TRUE(error({}).ok());
  EXPECT_TRUE(error({.recent_blocks = 0, .recent = 3, .old = 2}).ok());
  EXPECT_TRUE(error({.recent_blocks = 8, .recent = 2, .old = 3}).ok());
  EXPECT_TRUE(error({.recent_blocks = 8, .recent = 1, .old = 3}).ok());
  EXPECT_TRUE(error({.recent_blocks = 8, .recent = 0, .old = 3}).ok());
  EXPECT_TRUE(error({.recent_blocks = 8, .recent = 0, .old = 2}).ok());
  EXPECT_TRUE(error({.recent_blocks = PrecisionPolicy::kMaxRecentBlocks}).ok());

  struct Case {
    PrecisionPolicy policy;
    const char* field;
  };
  const Case bad[] = {
      {{.recent_blocks = 8, .recent = 4, .old = 3}, "precision.recent"},   // unknown codec
      {{.recent_blocks = 0, .recent = 2, .old = 200}, "precision.old"},    // unknown, even off
      {{.recent_blocks = 8, .recent = 2, .old = 2}, "precision.old"},      // nothing to age
      {{.recent_blocks = 8, .recent = 2, .old = 0}, "precision.old"},      // aging to raw
      {{.recent_blocks = 8, .recent = 3, .old = 2}, "precision.old"},      // int4 -> int8
      {{.recent_blocks = 8, .recent = 2, .old = 1}, "precision.old"},      // int8 -> fp8: same size
      {{.recent_blocks = 8, .recent = 0, .old = 0}, "precision.old"},      // none -> none
      {{.recent_blocks = PrecisionPolicy::kMaxRecentBlocks + 1}, "precision.recent_blocks"},
  };
  for (const Case& c : bad) {
    const absl::Status s = error(c.policy);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument)
        << c.policy.recent_blocks << " " << int{c.policy.recent} << " " << int{c.policy.old};
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace kvf
