// Mixed precision of sequences (docs/sequences.md, "Mixed precision";
// NamespaceSpec::precision, Sequence::AppendBlocks / WriteBlock / ReadBlocks)
// against a real cluster on loopback: kvf-coordinator and three kvf-agent
// processes, one cluster per suite as in sequence_test.cc. Blocks are
// synthetic KV with outlier K channels (kernels/codec_quality.h), so codec
// errors are those of realistic data.
//
// SixtyFourBlocks... prints the table of docs/sequences.md: stored bytes and
// reconstruction error of a 64-block sequence, raw vs int8 vs mixed vs int4.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/sequence.h"
#include "common/placement.h"
#include "gtest/gtest.h"
#include "kernels/codec.h"
#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/kv_blocks.h"

namespace kvf::testing {
namespace {

PrecisionPolicy Mixed(uint32_t recent_blocks) {
  return {.recent_blocks = recent_blocks,
          .recent = static_cast<uint8_t>(CodecId::kInt8),
          .old = static_cast<uint8_t>(CodecId::kInt4)};
}

std::vector<ConstBlockBuffer> RawSources(const Blocks& blocks, size_t begin = 0,
                                         size_t end = SIZE_MAX) {
  std::vector<ConstBlockBuffer> out;
  for (size_t i = begin; i < std::min(end, blocks.size()); ++i) {
    out.push_back({blocks[i].data(), blocks[i].size()});
  }
  return out;
}
std::vector<BlockBuffer> RawSinks(Blocks& blocks) {
  std::vector<BlockBuffer> out;
  for (auto& b : blocks) out.push_back({b.data(), b.size()});
  return out;
}

class MixedPrecisionCluster : public SharedClusterTest {
 protected:
  static void TearDownTestSuite() { shared_.reset(); }
  std::unique_ptr<LocalCluster>& Shared() override { return shared_; }
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o;
    o.agents = 3;
    o.replication = 2;
    return o;
  }
  static inline std::unique_ptr<LocalCluster> shared_;

  SequenceId RandomId() { return SequenceId{rng_(), rng_()}; }

  void SixtyFourBlocks(uint32_t block_tokens);

  // What the owners hold for positions [0, n) of `seq`: codec, size, version.
  std::vector<BlockHolding> Held(const Sequence& seq, size_t n) {
    std::vector<BlockKey> keys;
    for (size_t i = 0; i < n; ++i)
      keys.push_back(SequenceBlockKey(seq.ns().spec().hash, seq.id(), i));
    auto r = client_->Lookup(seq.ns(), keys);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    EXPECT_EQ(r->prefix, n);
    return r->blocks;
  }

  // Reads [0, n) with ReadBlocks and expects each position to be the codec
  // round trip of want[i] with the codec the owners report.
  static void ExpectRoundTrips(Sequence& seq, const Blocks& want,
                               const std::vector<CodecId>& codecs) {
    const KvLayout& layout = seq.ns().spec().layout;
    Blocks out(want.size(), std::vector<std::byte>(layout.BytesPerBlock()));
    auto got = seq.ReadBlocks(0, want.size(), RawSinks(out));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(got->all_ok()) << got->FirstError();
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got->blocks[i].codec, codecs[i]) << "position " << i;
      EXPECT_EQ(got->blocks[i].size, layout.BytesPerBlock()) << "position " << i;
      EXPECT_TRUE(out[i] == RoundTrip(layout, codecs[i], want[i])) << "position " << i;
    }
  }
};

// Appends 64 blocks of L=4 H=8 D=128 T=`block_tokens` with recent_blocks=8,
// checks what each position holds and reads back, and prints the report.
void MixedPrecisionCluster::SixtyFourBlocks(uint32_t block_tokens) {
  NamespaceSpec spec = Spec(absl::StrCat("mp-64-t", block_tokens), 4, 8, 128, block_tokens, 4);
  spec.precision = Mixed(8);
  auto ns = client_->RegisterNamespace(spec);
  ASSERT_TRUE(ns.ok()) << ns.status();
  const KvLayout& layout = spec.layout;
  const size_t n = 64, recent = 8;
  const Blocks data = KvBlocks(layout, n, 7);
  auto seq = Sequence::Open(*client_, *ns, RandomId());
  ASSERT_TRUE(seq.ok()) << seq.status();

  // A prefill of 20 blocks (12 go straight to int4), then a decode that
  // appends one block at a time and so ages one position per append.
  auto first = seq->AppendBlocks(RawSources(data, 0, 20));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->appended.all_ok()) << first->appended.FirstError();
  EXPECT_EQ(first->aged, 0u);
  EXPECT_TRUE(first->aging.ok()) << first->aging;
  for (size_t i = 20; i < n; ++i) {
    auto r = seq->AppendBlocks(RawSources(data, i, i + 1));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->appended.all_ok()) << i << ": " << r->appended.FirstError();
    EXPECT_EQ(r->aged, 1u) << "append " << i << " moves position " << i - recent << " out";
    EXPECT_TRUE(r->aging.ok()) << r->aging;
  }
  ASSERT_EQ(seq->length(), n);

  std::vector<CodecId> codecs(n);
  const std::vector<BlockHolding> held = Held(*seq, n);
  ASSERT_EQ(held.size(), n);
  size_t stored = 0;
  for (size_t i = 0; i < n; ++i) {
    codecs[i] = i + recent < n ? CodecId::kInt4 : CodecId::kInt8;
    EXPECT_EQ(held[i].codec, codecs[i]) << "position " << i;
    EXPECT_EQ(held[i].size, ns->BlockBytes(codecs[i])) << "position " << i;
    EXPECT_EQ(held[i].version, seq->version(i)) << "position " << i;
    // Aged positions were written twice (int8, then int4): one version bump.
    const bool aged = i >= 12 && i + recent < n;
    EXPECT_EQ(held[i].version.counter, aged ? 2u : 1u) << "position " << i;
    stored += held[i].size;
  }
  ExpectRoundTrips(*seq, data, codecs);

  // A reader needs no policy: a namespace without one has the same id (the
  // bytes are self-describing), and its handle decodes what it finds.
  NamespaceSpec plain = spec;
  plain.precision = {};
  ASSERT_EQ(plain.Id(), spec.Id());
  auto other = Client::Connect(MakeClientOptions());
  ASSERT_TRUE(other.ok()) << other.status();
  auto plain_ns = (*other)->RegisterNamespace(plain);
  ASSERT_TRUE(plain_ns.ok());
  auto reader = Sequence::Open(**other, *plain_ns, seq->id());
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(reader->length(), n);
  ExpectRoundTrips(*reader, data, codecs);

  // The report: bytes per copy and reconstruction error, fp16 / int8 /
  // mixed / int4. `mixed` is what the cluster holds and ReadBlocks returned.
  Blocks mixed(n, std::vector<std::byte>(layout.BytesPerBlock()));
  auto got = seq->ReadBlocks(0, n, RawSinks(mixed));
  ASSERT_TRUE(got.ok() && got->all_ok());
  Blocks all_int8, all_int4;
  for (const auto& b : data) {
    all_int8.push_back(RoundTrip(layout, CodecId::kInt8, b));
    all_int4.push_back(RoundTrip(layout, CodecId::kInt4, b));
  }
  const std::vector<float> original = Floats(layout, data);
  struct Row {
    const char* name;
    size_t bytes;
    const Blocks* blocks;
    double kv = 0;
    double kv_recent = 0;  // over the last `recent` blocks only
    AttentionError attention;
  };
  Row rows[] = {
      {"fp16 (raw)", n * ns->BlockBytes(CodecId::kNone), &data, 0, 0, {}},
      {"all int8", n * ns->BlockBytes(CodecId::kInt8), &all_int8, 0, 0, {}},
      {"mixed: 8 int8 + 56 int4", stored, &mixed, 0, 0, {}},
      {"all int4", n * ns->BlockBytes(CodecId::kInt4), &all_int4, 0, 0, {}},
  };
  EXPECT_EQ(stored, recent * ns->BlockBytes(CodecId::kInt8) +
                        (n - recent) * ns->BlockBytes(CodecId::kInt4));
  std::printf(
      "\n%zu blocks of L=%u H=%u D=%u T=%u fp16 (%zu tokens), recent_blocks=%zu; bytes "
      "per copy; attention over the whole sequence, 8 queries per (layer, head)\n\n",
      n, layout.num_layers, layout.num_kv_heads, layout.head_dim, layout.block_tokens,
      n * layout.block_tokens, recent);
  std::printf(
      "| stored as | bytes | vs fp16 | vs all int8 | KV rel L2 | KV rel L2, last %zu | "
      "attention rel L2 | attention cosine |\n"
      "| --- | --- | --- | --- | --- | --- | --- | --- |\n",
      recent);
  const size_t recent_from = (n - recent) * layout.ElementsPerBlock();
  const std::vector<float> original_recent(original.begin() + recent_from, original.end());
  for (Row& r : rows) {
    const std::vector<float> decoded = Floats(layout, *r.blocks);
    r.kv = RelL2(original, decoded);
    r.kv_recent =
        RelL2(original_recent, std::vector<float>(decoded.begin() + recent_from, decoded.end()));
    r.attention = SequenceAttentionError(layout, original, decoded, n, 8);
    std::printf("| %s | %zu (%.2f MiB) | %.3fx | %.3fx | %.2f%% | %.2f%% | %.2f%% | %.6f |\n",
                r.name, r.bytes, r.bytes / 1048576.0, double(rows[0].bytes) / r.bytes,
                double(rows[1].bytes) / r.bytes, 100 * r.kv, 100 * r.kv_recent,
                100 * r.attention.rel_l2, r.attention.cosine);
  }
  std::printf("\nwriter's raw copies: %zu bytes (%zu x %zu)\n\n", recent * layout.BytesPerBlock(),
              recent, layout.BytesPerBlock());
  EXPECT_EQ(rows[0].kv, 0);
  // Mixed sits between its two codecs, in bytes and in error.
  EXPECT_LT(rows[2].bytes, rows[1].bytes * 0.65);
  EXPECT_GT(rows[2].bytes, rows[3].bytes);
  EXPECT_GT(rows[2].kv, rows[1].kv);
  EXPECT_LT(rows[2].kv, rows[3].kv);
  EXPECT_EQ(rows[2].kv_recent, rows[1].kv_recent) << "the recent window is int8, bit for bit";
  EXPECT_LT(rows[2].attention.rel_l2, rows[3].attention.rel_l2);
  EXPECT_GT(rows[2].attention.cosine, 0.98);
}

// T=16: a vLLM page as the block (docs/codecs.md), int8 in format v1.
TEST_F(MixedPrecisionCluster, SixtyFourBlocksKeepTheLastEightInInt8AndTheRestInInt4) {
  SixtyFourBlocks(16);
}

// T=64: int8 in format v2 (K centred per channel), far more precise than int4.
TEST_F(MixedPrecisionCluster, SixtyFourLargerBlocksKeepTheLastEightInInt8AndTheRestInInt4) {
  SixtyFourBlocks(64);
}

TEST_F(MixedPrecisionCluster, PolicyOffStoresRawBlocksAndReadBlocksDecodesAnyCodec) {
  auto ns = client_->RegisterNamespace(Spec("mp-off", 2, 2, 64, 16, 4));
  ASSERT_TRUE(ns.ok());
  const KvLayout& layout = ns->spec().layout;
  Blocks data = KvBlocks(layout, 12, 8);
  auto seq = Sequence::Open(*client_, *ns, RandomId());
  ASSERT_TRUE(seq.ok()) << seq.status();
  auto r = seq->AppendBlocks(RawSources(data));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->appended.all_ok()) << r->appended.FirstError();
  EXPECT_EQ(r->aged, 0u);
  for (const BlockHolding& h : Held(*seq, 12)) {
    EXPECT_EQ(h.codec, CodecId::kNone);
    EXPECT_EQ(h.size, layout.BytesPerBlock());
  }
  ExpectRoundTrips(*seq, data, std::vector<CodecId>(12, CodecId::kNone));
  // The encoded Read sees the same raw bytes.
  Blocks out(12, std::vector<std::byte>(layout.BytesPerBlock()));
  auto plain = seq->Read(0, 12, RawSinks(out));
  ASSERT_TRUE(plain.ok() && plain->all_ok());
  EXPECT_TRUE(out == data);

  // A position some caller stored encoded, through the encoded calls, is
  // decoded by ReadBlocks all the same.
  std::vector<std::byte> blob(ns->BlockBytes(CodecId::kInt4));
  ASSERT_TRUE(CpuCodec(CodecId::kInt4).Encode(layout, data[3], absl::MakeSpan(blob)).ok());
  PutOptions int4;
  int4.codec = CodecId::kInt4;
  ASSERT_TRUE(seq->Write(3, blob.data(), blob.size(), int4).ok());
  std::vector<CodecId> codecs(12, CodecId::kNone);
  codecs[3] = CodecId::kInt4;
  ExpectRoundTrips(*seq, data, codecs);
}

TEST_F(MixedPrecisionCluster, OverwritesFollowAgeAndPositionsWithoutACopyStayAsTheyAre) {
  NamespaceSpec spec = Spec("mp-write", 2, 2, 64, 16, 2);
  spec.precision = Mixed(4);
  auto ns = client_->RegisterNamespace(spec);
  ASSERT_TRUE(ns.ok());
  const KvLayout& layout = spec.layout;
  Blocks data = KvBlocks(layout, 12, 9);
  const SequenceId id = RandomId();
  auto seq = Sequence::Open(*client_, *ns, id);
  ASSERT_TRUE(seq.ok()) << seq.status();
  ASSERT_TRUE(seq->AppendBlocks(RawSources(data, 0, 6))->appended.all_ok());  // 0-1 int4, 2-5 int8

  // WriteBlock encodes by age: position 5 (recent) in int8, 0 (old) in int4.
  const Blocks fresh = KvBlocks(layout, 2, 10);
  data[5] = fresh[0];
  data[0] = fresh[1];
  const Version before = seq->version(5);
  auto v5 = seq->WriteBlock(5, data[5].data(), data[5].size());
  ASSERT_TRUE(v5.ok()) << v5.status();
  EXPECT_GT(*v5, before);
  ASSERT_TRUE(seq->WriteBlock(0, data[0].data(), data[0].size()).ok());
  // An encoded Write of position 4 replaces the handle's copy of it.
  std::vector<std::byte> blob(ns->BlockBytes(CodecId::kInt8));
  ASSERT_TRUE(CpuCodec(CodecId::kInt8).Encode(layout, data[4], absl::MakeSpan(blob)).ok());
  PutOptions int8;
  int8.codec = CodecId::kInt8;
  ASSERT_TRUE(seq->Write(4, blob.data(), blob.size(), int8).ok());

  auto r = seq->AppendBlocks(RawSources(data, 6, 8));  // window [4, 8): 2 and 3 age
  ASSERT_TRUE(r.ok() && r->appended.all_ok());
  EXPECT_EQ(r->aged, 2u);
  r = seq->AppendBlocks(RawSources(data, 8, 9));  // window [5, 9): 4 has no copy
  ASSERT_TRUE(r.ok() && r->appended.all_ok());
  EXPECT_EQ(r->aged, 0u);

  // A writer that reopens the sequence (a restart) holds no copies: the
  // positions that leave the window under it stay int8.
  auto reopened = Sequence::Open(*client_, *ns, id);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  ASSERT_EQ(reopened->length(), 9u);
  r = reopened->AppendBlocks(RawSources(data, 9, 10));  // window [6, 10): 5 has no copy here
  ASSERT_TRUE(r.ok() && r->appended.all_ok());
  EXPECT_EQ(r->aged, 0u);
  r = reopened->AppendBlocks(RawSources(data, 10, 12));  // window [8, 12): 9 was appended here
  ASSERT_TRUE(r.ok() && r->appended.all_ok());
  EXPECT_EQ(r->aged, 0u) << "position 9 is still in the window";

  const CodecId i4 = CodecId::kInt4, i8 = CodecId::kInt8;
  const std::vector<CodecId> codecs{i4, i4, i4, i4, i8, i8, i8, i8, i8, i8, i8, i8};
  const std::vector<BlockHolding> held = Held(*reopened, 12);
  ASSERT_EQ(held.size(), 12u);
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(held[i].codec, codecs[i]) << "position " << i;
  ExpectRoundTrips(*reopened, data, codecs);
  ExpectRoundTrips(*seq, Blocks(data.begin(), data.begin() + 9),
                   std::vector<CodecId>(codecs.begin(), codecs.begin() + 9));
}

TEST_F(MixedPrecisionCluster, ReadersDecodeEveryPositionWhileTheWriterAgesIt) {
  NamespaceSpec spec = Spec("mp-threads", 1, 2, 64, 16, 2);
  spec.precision = Mixed(4);
  auto ns = client_->RegisterNamespace(spec);
  ASSERT_TRUE(ns.ok());
  const KvLayout& layout = spec.layout;
  const size_t n = 40;
  const Blocks data = KvBlocks(layout, n, 13);
  Blocks as_int8, as_int4;
  for (const auto& b : data) {
    as_int8.push_back(RoundTrip(layout, CodecId::kInt8, b));
    as_int4.push_back(RoundTrip(layout, CodecId::kInt4, b));
  }
  auto seq = Sequence::Open(*client_, *ns, RandomId());
  ASSERT_TRUE(seq.ok()) << seq.status();
  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  // A position is int8 until the writer ages it; a reader racing the
  // re-encode gets one or the other, each decoded to its exact round trip.
  auto reader = [&] {
    Blocks out(n, std::vector<std::byte>(layout.BytesPerBlock()));
    const std::vector<BlockBuffer> sinks = RawSinks(out);
    while (!done.load()) {
      const size_t len = seq->length();
      auto got = seq->ReadBlocks(0, len, absl::MakeConstSpan(sinks).subspan(0, len));
      if (!got.ok() || !got->all_ok()) {
        ADD_FAILURE() << (got.ok() ? got->FirstError() : got.status());
        return;
      }
      for (size_t i = 0; i < len; ++i) {
        const CodecId c = got->blocks[i].codec;
        if (!(c == CodecId::kInt8 ? out[i] == as_int8[i]
                                  : c == CodecId::kInt4 && out[i] == as_int4[i])) {
          ADD_FAILURE() << "position " << i << " of " << len << " read as " << CodecName(c);
          return;
        }
      }
      ++reads;
    }
  };
  std::thread r1(reader), r2(reader);
  for (size_t i = 0; i < n; ++i) {
    auto r = seq->AppendBlocks(RawSources(data, i, i + 1));
    if (!r.ok() || !r->appended.all_ok() || !r->aging.ok()) {
      ADD_FAILURE() << "append " << i << ": "
                    << (r.ok() ? (r->aging.ok() ? r->appended.FirstError() : r->aging)
                               : r.status());
      break;
    }
  }
  done = true;
  r1.join();
  r2.join();
  EXPECT_EQ(seq->length(), n);
  EXPECT_GT(reads.load(), 0);
  std::vector<CodecId> codecs(n, CodecId::kInt4);
  for (size_t i = n - 4; i < n; ++i) codecs[i] = CodecId::kInt8;
  ExpectRoundTrips(*seq, data, codecs);
}

TEST_F(MixedPrecisionCluster, BadArgumentsAreErrorsAndWriteNothing) {
  NamespaceSpec spec = Spec("mp-errors", 1, 2, 64, 16, 4);
  spec.precision = Mixed(2);
  NamespaceSpec bad = spec;
  bad.precision.old = bad.precision.recent;
  auto refused = client_->RegisterNamespace(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("precision.old"), std::string::npos)
      << refused.status();

  auto ns = client_->RegisterNamespace(spec);
  ASSERT_TRUE(ns.ok());
  const KvLayout& layout = spec.layout;
  const size_t bytes = layout.BytesPerBlock();
  Blocks data = KvBlocks(layout, 3, 11);
  auto seq = Sequence::Open(*client_, *ns, RandomId());
  ASSERT_TRUE(seq.ok()) << seq.status();

  PutOptions encoded;
  encoded.codec = CodecId::kInt8;
  EXPECT_EQ(seq->AppendBlocks(RawSources(data), encoded).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<std::byte> short_block(bytes - 2);
  const ConstBlockBuffer wrong{short_block.data(), short_block.size()};
  EXPECT_EQ(seq->AppendBlocks(absl::MakeConstSpan(&wrong, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  const ConstBlockBuffer null_block{nullptr, bytes};
  EXPECT_EQ(seq->AppendBlocks(absl::MakeConstSpan(&null_block, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // An infinity cannot be quantised: the whole call fails before storing.
  Blocks with_inf = data;
  const uint16_t inf = 0x7c00;  // fp16 +inf
  std::memcpy(with_inf[2].data() + 10, &inf, 2);
  auto r = seq->AppendBlocks(RawSources(with_inf));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("position 2"), std::string::npos) << r.status();
  EXPECT_EQ(seq->length(), 0u);
  const BlockKey k0 = SequenceBlockKey(spec.hash, seq->id(), 0);
  auto held = client_->Exists(*ns, absl::MakeConstSpan(&k0, 1));
  ASSERT_TRUE(held.ok());
  EXPECT_FALSE((*held)[0]) << "nothing was stored";

  ASSERT_TRUE(seq->AppendBlocks(RawSources(data))->appended.all_ok());
  EXPECT_EQ(seq->WriteBlock(3, data[0].data(), bytes).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(seq->WriteBlock(0, data[0].data(), bytes - 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq->WriteBlock(0, data[0].data(), bytes, encoded).status().code(),
            absl::StatusCode::kInvalidArgument);
  Blocks out(3, std::vector<std::byte>(bytes));
  std::vector<BlockBuffer> sinks = RawSinks(out);
  EXPECT_EQ(seq->ReadBlocks(0, 4, sinks).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(seq->ReadBlocks(0, 2, sinks).status().code(), absl::StatusCode::kInvalidArgument);
  sinks[1].size = bytes - 1;  // smaller than a raw block, though larger than its blob
  EXPECT_EQ(seq->ReadBlocks(0, 3, sinks).status().code(), absl::StatusCode::kInvalidArgument);

  Sequence moved = *std::move(seq);
  EXPECT_EQ(seq->AppendBlocks(RawSources(data)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(seq->ReadBlocks(0, 0, {}).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(moved.length(), 3u);
}

// ---- A re-encode that cannot be written (own cluster: it kills an agent) -----

class MixedPrecisionAgingFailure : public ClusterTest {
 protected:
  LocalClusterOptions ClusterOptions() override {
    LocalClusterOptions o;
    o.agents = 3;
    o.replication = 1;  // a killed owner leaves its positions without a copy
    // Long enough that the killed node stays in the map (and keeps owning
    // its positions) for the whole test, whatever the machine's speed.
    o.lease_ms = 120000;
    return o;
  }
};

TEST_F(MixedPrecisionAgingFailure, LeavesTheRecentBlockAndDoesNotFailTheAppend) {
  NamespaceSpec spec = Spec("mp-aging-fails", 1, 2, 64, 16, 1);
  spec.precision = Mixed(1);
  auto ns = client_->RegisterNamespace(spec);
  ASSERT_TRUE(ns.ok());
  // A sequence whose position 0 lives on a node that owns neither 1 nor 2.
  auto placement =
      Placement::Build(Placement::ReadMembers(client_->cluster_map()), client_->cluster_map().ring);
  ASSERT_TRUE(placement.ok()) << placement.status();
  auto owner = [&](const SequenceId& id, size_t i) {
    return placement->Owners(PlacementHash(ns->id(), SequenceBlockKey(spec.hash, id, i)))[0];
  };
  SequenceId id;
  do {
    id = SequenceId{rng_(), rng_()};
  } while (owner(id, 0) == owner(id, 1) || owner(id, 0) == owner(id, 2));
  int victim = -1;
  for (size_t a = 0; a < cluster_->agents().size(); ++a) {
    if (cluster_->agents()[a].node == owner(id, 0)) victim = static_cast<int>(a);
  }
  ASSERT_GE(victim, 0);

  const Blocks data = KvBlocks(spec.layout, 3, 12);
  auto seq = Sequence::Open(*client_, *ns, id);
  ASSERT_TRUE(seq.ok()) << seq.status();
  ASSERT_TRUE(seq->AppendBlocks(RawSources(data, 0, 1))->appended.all_ok());  // 0: int8, kept
  ASSERT_TRUE(cluster_->KillAgent(victim).ok());

  auto r = seq->AppendBlocks(RawSources(data, 1, 2));  // 0 ages, its owner is gone
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->appended.all_ok()) << r->appended.FirstError();
  EXPECT_EQ(seq->length(), 2u);
  EXPECT_EQ(r->aged, 0u);
  EXPECT_FALSE(r->aging.ok());
  EXPECT_NE(r->aging.message().find("position 0"), std::string::npos) << r->aging;

  // The next append ages position 1 and does not retry 0 (no copy left).
  r = seq->AppendBlocks(RawSources(data, 2, 3));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->appended.all_ok()) << r->appended.FirstError();
  EXPECT_EQ(r->aged, 1u);
  EXPECT_TRUE(r->aging.ok()) << r->aging;
  Blocks out(2, std::vector<std::byte>(spec.layout.BytesPerBlock()));
  auto got = seq->ReadBlocks(1, 3, RawSinks(out));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->all_ok()) << got->FirstError();
  EXPECT_EQ(got->blocks[0].codec, CodecId::kInt4);
  EXPECT_EQ(got->blocks[1].codec, CodecId::kInt8);
  EXPECT_TRUE(out[0] == RoundTrip(spec.layout, CodecId::kInt4, data[1]));
  EXPECT_TRUE(out[1] == RoundTrip(spec.layout, CodecId::kInt8, data[2]));
}

}  // namespace
}  // namespace kvf::testing
