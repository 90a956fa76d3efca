#include "common/internal/sha256.h"

#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace kvf::internal {
namespace {

std::string Hex(const std::string& input, size_t split = 0) {
  Sha256 sha;
  if (split > 0 && split < input.size()) {
    sha.Update(input.data(), split);
    sha.Update(input.data() + split, input.size() - split);
  } else {
    sha.Update(input.data(), input.size());
  }
  const auto d = sha.Finish();
  return absl::BytesToHexString(std::string(reinterpret_cast<const char*>(d.data()), d.size()));
}

// FIPS 180-4 / NIST CAVS example vectors.
TEST(Sha256, NistVectors) {
  EXPECT_EQ(Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, StreamingMatchesOneShot) {
  std::string input;
  for (int i = 0; i < 300; ++i) input.push_back(static_cast<char>(i * 7));
  const std::string whole = Hex(input);
  for (size_t split : {1, 55, 56, 63, 64, 65, 128, 299}) EXPECT_EQ(Hex(input, split), whole) << split;
}

TEST(Sha256, MovedDigestCarriesOn) {
  Sha256 a;
  a.Update("ab", 2);
  Sha256 b = std::move(a);
  b.Update("c", 1);
  b.Update(nullptr, 0);  // nothing, and no dereference
  const auto d = b.Finish();
  EXPECT_EQ(absl::BytesToHexString(std::string(reinterpret_cast<const char*>(d.data()), d.size())),
            Hex("abc"));
}

}  // namespace
}  // namespace kvf::internal
