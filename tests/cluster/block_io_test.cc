// In-place block I/O (client/block_io.h: Client::BatchPutWith/BatchGetWith)
// against real agents on this host: a writer fills the agents' own memory
// (their arenas are mapped here over shared memory) and a reader reads it
// there; over the two-sided lane the same calls go through client staging.
// A writer's or reader's error is that block's result and nothing else's.
#include <atomic>
#include <cstring>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "client/block_io.h"
#include "gtest/gtest.h"
#include "tests/cluster/cluster_fixture.h"

namespace kvf::testing {
namespace {

constexpr size_t kNone = SIZE_MAX;

// Block i's bytes: a pattern of its index.
std::byte PatternByte(size_t i, size_t k) { return static_cast<std::byte>((i * 131 + k * 7) & 0xff); }

class PatternWriter : public BlockWriter {
 public:
  explicit PatternWriter(size_t fail = kNone) : fail_(fail) {}
  std::vector<absl::Status> Write(absl::Span<const BlockSlot> slots) override {
    std::vector<absl::Status> out;
    for (const BlockSlot& s : slots) {
      (s.arena.empty() ? staged : in_place).fetch_add(1);
      if (!s.arena.empty()) {
        EXPECT_GE(s.bytes.data(), s.arena.data());
        EXPECT_LE(s.bytes.data() + s.bytes.size(), s.arena.data() + s.arena.size());
      }
      if (s.index == fail_) {
        out.push_back(absl::DataLossError("the writer refused this block"));
        continue;
      }
      for (size_t k = 0; k < s.bytes.size(); ++k) s.bytes[k] = PatternByte(s.index, k);
      out.push_back(absl::OkStatus());
    }
    return out;
  }
  std::atomic<int> in_place{0}, staged{0};

 private:
  const size_t fail_;
};

class CheckingReader : public BlockReader {
 public:
  explicit CheckingReader(size_t fail = kNone) : fail_(fail) {}
  std::vector<absl::Status> Read(absl::Span<const FoundBlock> blocks) override {
    std::vector<absl::Status> out;
    for (const FoundBlock& b : blocks) {
      (b.arena.empty() ? staged : in_place).fetch_add(1);
      if (b.index == fail_) {
        out.push_back(absl::AbortedError("the reader refused this block"));
        continue;
      }
      size_t wrong = 0;
      for (size_t k = 0; k < b.bytes.size(); ++k) wrong += b.bytes[k] != PatternByte(b.index, k);
      out.push_back(wrong == 0 ? absl::OkStatus()
                               : absl::DataLossError(absl::StrCat(wrong, " bytes differ")));
      EXPECT_EQ(b.codec, CodecId::kNone);
    }
    return out;
  }
  std::atomic<int> in_place{0}, staged{0};

 private:
  const size_t fail_;
};

class BlockIoTest : public ClusterTest {
 protected:
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o;
    o.agents = 2;
    o.replication = 1;
    o.ucx_tls = "posix,cma,self";  // shared memory: the arenas are mapped here
    return o;
  }
  void SetUp() override {
    ClusterTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto ns = client_->RegisterNamespace(Spec("block-io", 2, 2, 32, 16));
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = *ns;
  }
  Namespace ns_;
};

TEST_F(BlockIoTest, WritersAndReadersWorkInTheAgentsMemory) {
  const std::vector<BlockKey> chain = RandomChain(ns_, 8);
  PatternWriter writer;
  auto put = client_->BatchPutWith(ns_, chain, 0, chain.size(), writer);
  ASSERT_TRUE(put.ok() && put->all_ok()) << (put.ok() ? put->FirstError() : put.status());
  EXPECT_EQ(writer.in_place.load(), 8);
  EXPECT_EQ(writer.staged.load(), 0);
  CheckingReader reader;
  auto got = client_->BatchGetWith(ns_, chain, 0, chain.size(), ns_.BlockBytes(), reader);
  ASSERT_TRUE(got.ok() && got->all_ok()) << (got.ok() ? got->FirstError() : got.status());
  EXPECT_EQ(reader.in_place.load(), 8);
  for (const BlockResult& b : got->blocks) EXPECT_EQ(b.size, ns_.BlockBytes());
  // What a plain Get returns is what the writer wrote.
  std::vector<std::byte> plain(ns_.BlockBytes());
  auto one = client_->Get(ns_, chain, 5, plain.data(), plain.size());
  ASSERT_TRUE(one.ok() && one->status.ok());
  for (size_t k = 0; k < plain.size(); ++k) ASSERT_EQ(plain[k], PatternByte(5, k)) << k;
}

TEST_F(BlockIoTest, AFailingBlockFailsAloneAndIsNotStored) {
  const std::vector<BlockKey> chain = RandomChain(ns_, 5);
  PatternWriter writer(/*fail=*/2);
  auto put = client_->BatchPutWith(ns_, chain, 0, chain.size(), writer);
  ASSERT_TRUE(put.ok()) << put.status();
  for (size_t i = 0; i < chain.size(); ++i) {
    if (i == 2) {
      EXPECT_EQ(put->blocks[i].status.code(), absl::StatusCode::kDataLoss);
    } else {
      EXPECT_TRUE(put->blocks[i].status.ok()) << i << ": " << put->blocks[i].status;
    }
  }
  auto held = client_->Exists(ns_, chain);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, (std::vector<bool>{true, true, false, true, true}));

  CheckingReader reader(/*fail=*/3);
  auto got = client_->BatchGetWith(ns_, chain, 0, chain.size(), ns_.BlockBytes(), reader);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->blocks[0].status.ok());
  EXPECT_TRUE(got->blocks[1].status.ok());
  EXPECT_EQ(got->blocks[2].status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got->blocks[3].status.code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(got->blocks[4].status.ok());

  // A capacity below the stored size is refused per block, unread.
  CheckingReader small;
  auto refused = client_->BatchGetWith(ns_, chain, 0, 2, ns_.BlockBytes() - 1, small);
  ASSERT_TRUE(refused.ok());
  for (const BlockResult& b : refused->blocks) {
    EXPECT_EQ(b.status.code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(small.in_place.load() + small.staged.load(), 0);
}

TEST_F(BlockIoTest, TheTwoSidedLaneStagesTheSameBytes) {
  ClientOptions o = MakeClientOptions();
  o.data_lane = DataLane::kTwoSided;
  auto two_sided = Client::Connect(o);
  ASSERT_TRUE(two_sided.ok()) << two_sided.status();
  auto ns = (*two_sided)->RegisterNamespace(ns_.spec());
  ASSERT_TRUE(ns.ok());
  const std::vector<BlockKey> chain = RandomChain(*ns, 6);
  PatternWriter writer;
  auto put = (*two_sided)->BatchPutWith(*ns, chain, 0, chain.size(), writer);
  ASSERT_TRUE(put.ok() && put->all_ok()) << (put.ok() ? put->FirstError() : put.status());
  EXPECT_EQ(writer.staged.load(), 6);
  EXPECT_EQ(writer.in_place.load(), 0);
  CheckingReader reader;
  auto got = (*two_sided)->BatchGetWith(*ns, chain, 0, chain.size(), ns_.BlockBytes(), reader);
  ASSERT_TRUE(got.ok() && got->all_ok()) << (got.ok() ? got->FirstError() : got.status());
  EXPECT_EQ(reader.staged.load(), 6);
  // ... and a one-sided client reads them in place.
  CheckingReader local;
  auto again = client_->BatchGetWith(ns_, chain, 0, chain.size(), ns_.BlockBytes(), local);
  ASSERT_TRUE(again.ok() && again->all_ok());
  EXPECT_EQ(local.in_place.load(), 6);
}

TEST_F(BlockIoTest, BadArgumentsAreRefused) {
  const std::vector<BlockKey> chain = RandomChain(ns_, 2);
  PatternWriter writer;
  CheckingReader reader;
  EXPECT_EQ(client_->BatchPutWith(ns_, chain, 1, 2, writer).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->BatchGetWith(ns_, chain, 0, 2, 0, reader).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->BatchGetWith(Namespace(), chain, 0, 2, 64, reader).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvf::testing
