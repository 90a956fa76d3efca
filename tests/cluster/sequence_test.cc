// kvf::Sequence (client/sequence.h) against a real cluster on loopback:
// kvf-coordinator and three kvf-agent processes. One cluster per suite (the
// tests use their own namespaces and random sequence ids), so the suite stays
// fast; eviction is simulated with Client::Remove on a cluster without
// replicas, where nothing can race it.
#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "client/client.h"
#include "client/sequence.h"
#include "common/block_hash.h"
#include "gtest/gtest.h"
#include "tests/cluster/cluster_fixture.h"

namespace kvf::testing {
namespace {

// ---- Keys (no cluster) -------------------------------------------------------

TEST(SequenceKey, IsDeterministicAndNamesOnePositionOfOneSequence) {
  const SequenceId id{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  const BlockKey k = SequenceBlockKey(HashAlgorithm::kXxh3_128, id, 7);
  EXPECT_EQ(k, SequenceBlockKey(HashAlgorithm::kXxh3_128, id, 7));
  EXPECT_FALSE(k.IsRoot());
  std::set<BlockKey> keys;
  for (uint64_t i = 0; i < 1000; ++i) keys.insert(SequenceBlockKey(HashAlgorithm::kXxh3_128, id, i));
  keys.insert(SequenceBlockKey(HashAlgorithm::kXxh3_128, SequenceId{id.hi, id.lo ^ 1}, 7));
  keys.insert(SequenceBlockKey(HashAlgorithm::kXxh3_128, id, uint64_t{7} << 32));
  keys.insert(SequenceBlockKey(HashAlgorithm::kSha256, id, 7));
  EXPECT_EQ(keys.size(), 1003u);
  // Pinned: changing the derivation orphans every sequence in every cache.
  EXPECT_EQ(SequenceBlockKey(HashAlgorithm::kXxh3_128, SequenceId{1, 2}, 3).ToHex(),
            "8f59ff1c623d5615469522d4bcebeaa5");
}

TEST(SequenceKey, IsNotATokenChainKey) {
  // The same words hashed as tokens from the root, with or without the tag,
  // give other keys: the reserved parent separates them.
  const std::vector<uint32_t> words{5, 0, 6, 0, 0, 0};  // id.hi, id.lo, index as u32 pairs
  const BlockKey k = SequenceBlockKey(HashAlgorithm::kXxh3_128, SequenceId{5, 6}, 0);
  const BlockKey parent{0x757165732e66766bULL, 0x0031762e65636e65ULL};  // "kvf.sequence.v1\0"
  EXPECT_EQ(k, HashBlock(HashAlgorithm::kXxh3_128, parent, words, "kvf.sequence.v1"));
  EXPECT_NE(k, HashBlock(HashAlgorithm::kXxh3_128, BlockKey::Root(), words));
  EXPECT_NE(k, HashBlock(HashAlgorithm::kXxh3_128, BlockKey::Root(), words, "kvf.sequence.v1"));
  EXPECT_EQ(SequenceId::FromName("req-1"), SequenceId::FromName("req-1"));
  EXPECT_NE(SequenceId::FromName("req-1"), SequenceId::FromName("req-2"));
  EXPECT_NE(SequenceId::FromName("req-1"), SequenceId::FromName("req-1", HashAlgorithm::kSha256));
}

// ---- Against a cluster -----------------------------------------------------

// Sequence helpers over a cluster shared by the suite (cluster_fixture.h).
class SequenceTestBase : public SharedClusterTest {
 protected:
  SequenceId RandomId() { return SequenceId{rng_(), rng_()}; }

  // The sequence keys of positions [0, n).
  static std::vector<BlockKey> Keys(const Sequence& seq, size_t n) {
    std::vector<BlockKey> out;
    for (size_t i = 0; i < n; ++i) out.push_back(SequenceBlockKey(seq.ns().spec().hash, seq.id(), i));
    return out;
  }

  // Reads [begin, end) of `seq` and expects every block OK and equal to
  // want[begin ...].
  static void ExpectReads(Sequence& seq, size_t begin, size_t end,
                          const std::vector<std::vector<uint8_t>>& want) {
    std::vector<std::vector<uint8_t>> out(end - begin,
                                          std::vector<uint8_t>(seq.ns().BlockBytes(), 0));
    auto got = seq.Read(begin, end, Sinks(out));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(got->all_ok()) << got->FirstError();
    for (size_t i = begin; i < end; ++i) {
      EXPECT_EQ(out[i - begin], want[i]) << "position " << i;
      EXPECT_GE(got->blocks[i - begin].version, seq.version(i)) << "position " << i;
    }
  }
};

// One 3-agent cluster per suite, shared by its tests, with `R` copies.
template <uint32_t R>
class SequenceClusterWith : public SequenceTestBase {
 protected:
  static void TearDownTestSuite() { shared_.reset(); }
  std::unique_ptr<LocalCluster>& Shared() override { return shared_; }
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o;
    o.agents = 3;
    o.replication = R;
    return o;
  }
  static inline std::unique_ptr<LocalCluster> shared_;
};
using SequenceCluster = SequenceClusterWith<2>;

TEST_F(SequenceCluster, AppendsAcrossSegmentsAndReadsBackByteExact) {
  auto ns = client_->RegisterNamespace(Spec("seq-append", 2, 2, 32, 16, 4));
  ASSERT_TRUE(ns.ok());
  auto seq = Sequence::Open(*client_, *ns, RandomId());
  ASSERT_TRUE(seq.ok()) << seq.status();
  EXPECT_EQ(seq->length(), 0u);
  const size_t n = 50;  // 13 segments of 4 over 3 agents
  auto data = RandomBlocks(n, ns->BlockBytes());
  auto src = Sources(data);
  std::set<NodeId> writers;
  auto first = seq->Append(absl::MakeConstSpan(src).subspan(0, 20));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->all_ok()) << first->FirstError();
  EXPECT_EQ(seq->length(), 20u);
  auto v20 = seq->Write(20, data[20].data(), data[20].size());  // == length: appends
  ASSERT_TRUE(v20.ok()) << v20.status();
  auto rest = seq->Append(absl::MakeConstSpan(src).subspan(21));
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_TRUE(rest->all_ok()) << rest->FirstError();
  ASSERT_EQ(seq->length(), n);
  for (const auto* r : {&*first, &*rest}) {
    for (const BlockResult& b : r->blocks) {
      writers.insert(b.node);
      EXPECT_GE(b.version.counter, 1u) << "mutable entries are versioned from 1";
    }
  }
  EXPECT_GE(writers.size(), 2u) << "segments land on their own owners";
  for (size_t i = 0; i < n; ++i) EXPECT_NE(seq->version(i), Version{}) << i;

  ExpectReads(*seq, 0, n, data);
  ExpectReads(*seq, 13, 29, data);
  std::vector<BlockBuffer> none;
  auto empty = seq->Read(n, n, none);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->blocks.empty());
}

TEST_F(SequenceCluster, OverwriteIsReadBackNewFromThisHandleAndFromAnotherClient) {
  const NamespaceSpec spec = Spec("seq-overwrite", 2, 2, 32, 16, 4);
  auto ns = client_->RegisterNamespace(spec);
  ASSERT_TRUE(ns.ok());
  const SequenceId id = RandomId();
  auto seq = Sequence::Open(*client_, *ns, id);
  ASSERT_TRUE(seq.ok()) << seq.status();
  auto data = RandomBlocks(12, ns->BlockBytes());
  auto put = seq->Append(Sources(data));
  ASSERT_TRUE(put.ok() && put->all_ok());

  const Version before = seq->version(5);
  data[5] = RandomBlocks(1, ns->BlockBytes())[0];
  auto v = seq->Write(5, data[5].data(), data[5].size());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_GT(*v, before);
  EXPECT_EQ(seq->version(5), *v);
  ExpectReads(*seq, 0, 12, data);

  // A second client, connected after the write, opens and reads the new bytes.
  auto other = Client::Connect(MakeClientOptions());
  ASSERT_TRUE(other.ok()) << other.status();
  auto ons = (*other)->RegisterNamespace(spec);
  ASSERT_TRUE(ons.ok());
  auto reader = Sequence::Open(**other, *ons, id);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->length(), 12u);
  EXPECT_EQ(reader->version(5), *v);
  ExpectReads(*reader, 0, 12, data);

  // Writes after the reader opened: its remembered versions are a floor,
  // never a ceiling.
  for (int w = 0; w < 2; ++w) {
    data[5] = RandomBlocks(1, ns->BlockBytes())[0];
    auto again = seq->Write(5, data[5].data(), data[5].size());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_GT(*again, *v);
    v = again;
  }
  ExpectReads(*reader, 5, 6, data);
  EXPECT_EQ(reader->version(5), *v) << "reads raise the remembered version";
}

TEST_F(SequenceCluster, SecondHandleSeesTheLengthAndRefreshSeesLaterAppends) {
  auto ns = client_->RegisterNamespace(Spec("seq-length", 1, 1, 32, 16, 8));
  ASSERT_TRUE(ns.ok());
  const SequenceId id = RandomId();
  auto writer = Sequence::Open(*client_, *ns, id);
  ASSERT_TRUE(writer.ok()) << writer.status();
  auto data = RandomBlocks(270, ns->BlockBytes());
  auto src = Sources(data);
  ASSERT_TRUE(writer->Append(absl::MakeConstSpan(src).subspan(0, 70))->all_ok());

  // 70 positions: past the first probe window of 64.
  auto reader = Sequence::Open(*client_, *ns, id);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->length(), 70u);
  for (size_t i = 0; i < 70; ++i) EXPECT_EQ(reader->version(i), writer->version(i)) << i;

  ASSERT_TRUE(writer->Append(absl::MakeConstSpan(src).subspan(70))->all_ok());
  EXPECT_EQ(writer->length(), 270u);
  EXPECT_EQ(reader->length(), 70u) << "a handle's length changes only by its own calls";
  std::vector<std::vector<uint8_t>> out(1, std::vector<uint8_t>(ns->BlockBytes()));
  auto past = reader->Read(70, 71, Sinks(out));
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange) << past.status();
  ASSERT_TRUE(reader->Refresh().ok());
  EXPECT_EQ(reader->length(), 270u);
  ExpectReads(*reader, 250, 270, data);

  // One-block windows: many round trips, the same answer.
  SequenceOptions tiny;
  tiny.first_window = 1;
  auto slow = Sequence::Open(*client_, *ns, id, tiny);
  ASSERT_TRUE(slow.ok()) << slow.status();
  EXPECT_EQ(slow->length(), 270u);
  SequenceOptions huge;
  huge.first_window = SIZE_MAX;  // one window of max_length
  huge.max_length = 1024;
  auto fast = Sequence::Open(*client_, *ns, id, huge);
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_EQ(fast->length(), 270u);
  // A bounded handle stops at its max length.
  SequenceOptions bounded;
  bounded.max_length = 100;
  auto capped = Sequence::Open(*client_, *ns, id, bounded);
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_EQ(capped->length(), 100u);
  EXPECT_EQ(capped->Append(absl::MakeConstSpan(src).subspan(0, 1)).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST_F(SequenceCluster, OutOfRangeAndBadBuffersAreErrorsNeverCrashes) {
  auto ns = client_->RegisterNamespace(Spec("seq-errors", 1, 1, 64, 16, 4));
  ASSERT_TRUE(ns.ok());
  const size_t bytes = ns->BlockBytes();
  auto seq = Sequence::Open(*client_, *ns, RandomId());
  ASSERT_TRUE(seq.ok()) << seq.status();
  std::vector<std::vector<uint8_t>> out(3, std::vector<uint8_t>(bytes));
  const std::vector<BlockBuffer> sinks = Sinks(out);
  const absl::Span<const BlockBuffer> three(sinks), one = three.subspan(0, 1);
  std::vector<uint8_t> block(bytes, 7), big(bytes + 1, 7);

  EXPECT_EQ(seq->Read(0, 1, one).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(seq->Write(1, block.data(), block.size()).status().code(),
            absl::StatusCode::kOutOfRange);
  const ConstBlockBuffer wrong{big.data(), big.size()};
  EXPECT_EQ(seq->Append(absl::MakeConstSpan(&wrong, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  const ConstBlockBuffer null_buffer{nullptr, bytes};
  EXPECT_EQ(seq->Append(absl::MakeConstSpan(&null_buffer, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq->length(), 0u) << "a refused append writes nothing";

  auto data = RandomBlocks(3, bytes);
  ASSERT_TRUE(seq->Append(Sources(data))->all_ok());
  EXPECT_EQ(seq->Read(2, 1, three.subspan(0, 0)).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(seq->Read(0, 4, three).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(seq->Read(0, 2, three).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq->Write(4, block.data(), block.size()).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(seq->Write(0, big.data(), big.size()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq->Write(0, nullptr, bytes).status().code(), absl::StatusCode::kInvalidArgument);
  // A buffer smaller than the block: that block's error, nothing written.
  std::vector<uint8_t> small(bytes - 1, 0xee);
  const BlockBuffer small_sink{small.data(), small.size()};
  auto r = seq->Read(1, 2, absl::MakeConstSpan(&small_sink, 1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->blocks[0].status.code(), absl::StatusCode::kInvalidArgument) << r->blocks[0].status;
  EXPECT_TRUE(std::all_of(small.begin(), small.end(), [](uint8_t b) { return b == 0xee; }));
  // A caller's min_version past every write.
  GetOptions future;
  future.has_min_version = true;
  future.min_version = Version{seq->version(0).epoch + 1, 0};
  auto f = seq->Read(0, 1, one, future);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->blocks[0].status.code(), absl::StatusCode::kFailedPrecondition) << f->blocks[0].status;
  ExpectReads(*seq, 0, 3, data);

  // Bad Open arguments.
  SequenceOptions o;
  o.max_length = 0;
  EXPECT_EQ(Sequence::Open(*client_, *ns, RandomId(), o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.max_length = kMaxSequenceLength + 1;
  EXPECT_EQ(Sequence::Open(*client_, *ns, RandomId(), o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = SequenceOptions{};
  o.first_window = 0;
  EXPECT_EQ(Sequence::Open(*client_, *ns, RandomId(), o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Sequence::Open(*client_, Namespace{}, RandomId()).status().code(),
            absl::StatusCode::kInvalidArgument);

  // A moved-from handle answers, it does not crash.
  Sequence moved = *std::move(seq);
  EXPECT_EQ(moved.length(), 3u);
  EXPECT_EQ(seq->length(), 0u);
  EXPECT_EQ(seq->Read(0, 0, {}).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(seq->Write(0, block.data(), block.size()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(seq->Refresh().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SequenceCluster, SequenceAndTokenChainOfOneNamespaceDoNotCollide) {
  auto ns = client_->RegisterNamespace(Spec("seq-vs-chain", 2, 1, 32, 16, 4));
  ASSERT_TRUE(ns.ok());
  const size_t n = 12;
  std::vector<BlockKey> chain = RandomChain(*ns, n);
  auto content = RandomBlocks(n, ns->BlockBytes());
  ASSERT_TRUE(client_->BatchPut(*ns, chain, 0, Sources(content))->all_ok());

  // Two sequences, one of them with an id made of a chain key.
  auto a = Sequence::Open(*client_, *ns, RandomId());
  auto b = Sequence::Open(*client_, *ns, SequenceId{chain[0].hi, chain[0].lo});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(b->length(), 0u) << "a chain key is not a sequence position";
  auto da = RandomBlocks(n, ns->BlockBytes());
  auto db = RandomBlocks(n, ns->BlockBytes());
  ASSERT_TRUE(a->Append(Sources(da))->all_ok());
  ASSERT_TRUE(b->Append(Sources(db))->all_ok());
  da[0] = RandomBlocks(1, ns->BlockBytes())[0];
  ASSERT_TRUE(a->Write(0, da[0].data(), da[0].size()).ok());

  std::set<BlockKey> keys(chain.begin(), chain.end());
  for (const Sequence* s : {&*a, &*b}) {
    for (const BlockKey& k : Keys(*s, n)) EXPECT_TRUE(keys.insert(k).second) << k.ToHex();
  }
  std::vector<std::vector<uint8_t>> out(n, std::vector<uint8_t>(ns->BlockBytes()));
  auto got = client_->BatchGet(*ns, chain, 0, Sinks(out));
  ASSERT_TRUE(got.ok() && got->all_ok());
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(out[i], content[i]) << "chain block " << i;
    EXPECT_EQ(got->blocks[i].version.counter, 0u) << "content blocks stay immutable";
  }
  ExpectReads(*a, 0, n, da);
  ExpectReads(*b, 0, n, db);
}

TEST_F(SequenceCluster, AckAllAppendIsHeldByEveryOwner) {
  auto ns = client_->RegisterNamespace(Spec("seq-ack-all", 1, 2, 32, 16, 4));
  ASSERT_TRUE(ns.ok());
  auto seq = Sequence::Open(*client_, *ns, RandomId());
  ASSERT_TRUE(seq.ok()) << seq.status();
  const size_t n = 24;
  auto data = RandomBlocks(n, ns->BlockBytes());
  PutOptions all;
  all.has_ack = true;
  all.ack = AckMode::kAll;
  auto put = seq->Append(Sources(data), all);
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE(put->all_ok()) << put->FirstError();
  data[3] = RandomBlocks(1, ns->BlockBytes())[0];
  auto v3 = seq->Write(3, data[3].data(), data[3].size(), all);
  ASSERT_TRUE(v3.ok()) << v3.status();

  const std::vector<BlockKey> keys = Keys(*seq, n);
  auto lookup = client_->Lookup(*ns, keys);
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->prefix, n);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(lookup->blocks[i].nodes.size(), Shared()->options().replication) << "position " << i;
    EXPECT_EQ(lookup->blocks[i].version, seq->version(i)) << "position " << i;
  }
  EXPECT_EQ(lookup->blocks[3].version, *v3);
  ExpectReads(*seq, 0, n, data);
}

TEST_F(SequenceCluster, ReadersShareTheWritersHandleWhileItAppends) {
  auto ns = client_->RegisterNamespace(Spec("seq-threads", 1, 1, 32, 16, 8));
  ASSERT_TRUE(ns.ok());
  auto seq = Sequence::Open(*client_, *ns, RandomId());
  ASSERT_TRUE(seq.ok()) << seq.status();
  // Past the 64 keys Open cached: the key buffer grows under the readers.
  const size_t n = 100;
  const auto data = RandomBlocks(n, ns->BlockBytes());
  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  auto reader = [&] {
    std::vector<std::vector<uint8_t>> out(n, std::vector<uint8_t>(ns->BlockBytes()));
    const std::vector<BlockBuffer> sinks = Sinks(out);
    while (!done.load()) {
      const size_t len = seq->length();
      auto got = seq->Read(0, len, absl::MakeConstSpan(sinks).subspan(0, len));
      if (!got.ok() || !got->all_ok()) {
        ADD_FAILURE() << (got.ok() ? got->FirstError() : got.status());
        return;
      }
      for (size_t i = 0; i < len; ++i) {
        if (out[i] != data[i]) {
          ADD_FAILURE() << "position " << i << " of " << len;
          return;
        }
      }
      ++reads;
    }
  };
  std::thread r1(reader), r2(reader);
  for (size_t i = 0; i < n; ++i) {
    auto v = seq->Write(i, data[i].data(), data[i].size());
    if (!v.ok()) {
      ADD_FAILURE() << "append " << i << ": " << v.status();
      break;
    }
  }
  done = true;
  r1.join();
  r2.join();
  EXPECT_EQ(seq->length(), n);
  EXPECT_GT(reads.load(), 0);
  ExpectReads(*seq, 0, n, data);
}

// ---- Eviction (one copy per block, so Client::Remove stands in for it) -------

using EvictedSequenceCluster = SequenceClusterWith<1>;

TEST_F(EvictedSequenceCluster, EvictedMiddleBlockReadsNotFoundAndOpensShorter) {
  auto ns = client_->RegisterNamespace(Spec("seq-evict", 1, 1, 32, 16, 4));
  ASSERT_TRUE(ns.ok());
  const SequenceId id = RandomId();
  auto seq = Sequence::Open(*client_, *ns, id);
  ASSERT_TRUE(seq.ok()) << seq.status();
  const size_t n = 20;
  auto data = RandomBlocks(n, ns->BlockBytes());
  ASSERT_TRUE(seq->Append(Sources(data))->all_ok());
  const std::vector<BlockKey> keys = Keys(*seq, n);
  auto rm = client_->Remove(*ns, keys, 9, 10);
  ASSERT_TRUE(rm.ok() && rm->all_ok());

  std::vector<std::vector<uint8_t>> out(n, std::vector<uint8_t>(ns->BlockBytes()));
  auto got = seq->Read(0, n, Sinks(out));
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < n; ++i) {
    if (i == 9) {
      EXPECT_EQ(got->blocks[i].status.code(), absl::StatusCode::kNotFound) << got->blocks[i].status;
    } else {
      EXPECT_TRUE(got->blocks[i].status.ok()) << i << ": " << got->blocks[i].status;
      EXPECT_EQ(out[i], data[i]) << i;
    }
  }
  auto reopened = Sequence::Open(*client_, *ns, id);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(reopened->length(), 9u) << "the hole ends the sequence for Open";

  // The engine recomputes the block and writes it back.
  ASSERT_TRUE(seq->Write(9, data[9].data(), data[9].size()).ok());
  ExpectReads(*seq, 0, n, data);
  ASSERT_TRUE(reopened->Refresh().ok());
  EXPECT_EQ(reopened->length(), n);
}

TEST_F(EvictedSequenceCluster, ReadYourWritesRefusesAnOlderVersionUntilRefresh) {
  auto ns = client_->RegisterNamespace(Spec("seq-ryw", 1, 1, 32, 16, 4));
  ASSERT_TRUE(ns.ok());
  const SequenceId id = RandomId();
  auto writer = Sequence::Open(*client_, *ns, id);
  ASSERT_TRUE(writer.ok()) << writer.status();
  auto data = RandomBlocks(4, ns->BlockBytes());
  ASSERT_TRUE(writer->Append(Sources(data))->all_ok());
  for (int w = 0; w < 2; ++w) ASSERT_TRUE(writer->Write(2, data[2].data(), data[2].size()).ok());
  auto reader = Sequence::Open(*client_, *ns, id);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const Version learned = reader->version(2);
  EXPECT_EQ(learned, writer->version(2));
  EXPECT_EQ(learned.counter, 3u);

  // Evicted, then recomputed: the store starts the entry again at counter 1,
  // below what the reader learned.
  ASSERT_TRUE(client_->Remove(*ns, Keys(*writer, 4), 2, 3)->all_ok());
  data[2] = RandomBlocks(1, ns->BlockBytes())[0];
  auto rewritten = writer->Write(2, data[2].data(), data[2].size());
  ASSERT_TRUE(rewritten.ok()) << rewritten.status();
  ASSERT_LT(*rewritten, learned);
  ExpectReads(*writer, 0, 4, data);  // the writer knows the version it wrote

  std::vector<std::vector<uint8_t>> out(4, std::vector<uint8_t>(ns->BlockBytes()));
  auto got = reader->Read(0, 4, Sinks(out));
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < 4; ++i) {
    if (i == 2) {
      EXPECT_EQ(got->blocks[i].status.code(), absl::StatusCode::kFailedPrecondition)
          << got->blocks[i].status;
    } else {
      EXPECT_TRUE(got->blocks[i].status.ok()) << got->blocks[i].status;
      EXPECT_EQ(out[i], data[i]);
    }
  }
  EXPECT_EQ(reader->version(2), learned) << "a refused read does not lower the floor";
  ASSERT_TRUE(reader->Refresh().ok());
  EXPECT_EQ(reader->version(2), *rewritten);
  ExpectReads(*reader, 0, 4, data);
}

}  // namespace
}  // namespace kvf::testing
