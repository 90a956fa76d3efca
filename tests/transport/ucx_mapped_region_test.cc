// The UCX backend's mapped regions (docs/transport.md, "Mapped regions"):
// ImportRemote of a peer's AllocateMemory region on this host maps it here
// and populates the whole mapping in the background. Transfers during that
// populate move the right bytes, the populate finishes, and destroying the
// region while it runs is safe (run it under the asan preset too).
//
// The region's owner is a second transport in this process, with its own UCX
// context and worker, reached over shared memory as a peer process would be:
// the importer's mapping is a second mapping of the owner's segment. These
// tests look inside the backend (UcxRemoteRegion), so they are not part of
// the conformance suite.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "transport/transport.h"
#include "transport/ucx/ucx_internal.h"

namespace kvf {
namespace {

using transport_internal::ucx::UcxRemoteRegion;

constexpr uint64_t kMiB = 1 << 20;

absl::Time Soon(int seconds = 30) { return absl::Now() + absl::Seconds(seconds); }

std::string Pattern(uint64_t seed, size_t n) {
  std::string s(n, '\0');
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&s[i], &v, std::min<size_t>(8, n - i));
  }
  return s;
}

// The first differing byte, not megabytes of diff.
::testing::AssertionResult SameBytes(const std::string& want, const char* got) {
  if (std::memcmp(want.data(), got, want.size()) == 0) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (want[i] == got[i]) ++i;
  return ::testing::AssertionFailure() << "first difference at byte " << i << " of " << want.size();
}

std::unique_ptr<Transport> MakeTransport(const std::string& name, const std::string& tls) {
  TransportConfig c;
  c.name = name;
  c.ucx_tls = tls;
  auto t = CreateTransport(c);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

class MappedRegion : public ::testing::Test {
 protected:
  void SetUp() override {
    owner_ = MakeTransport("owner", "posix,cma,self");
    ASSERT_NE(owner_, nullptr);
    importer_ = MakeTransport("importer", "posix,cma,self");
    ASSERT_NE(importer_, nullptr);
    auto id = importer_->Connect(owner_->address());
    ASSERT_TRUE(id.ok()) << id.status();
    peer_id_ = *id;
  }

  // The owner allocates `size` bytes (AllocateMemory) holding Pattern(seed).
  std::unique_ptr<MemoryRegion> OwnerAlloc(uint64_t size, uint64_t seed) {
    auto r = owner_->AllocateMemory(size, MemoryType::kHost);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return nullptr;
    const std::string p = Pattern(seed, size);
    std::memcpy((*r)->data(), p.data(), size);
    return std::move(*r);
  }

  absl::StatusOr<std::unique_ptr<RemoteRegion>> Import(const MemoryRegion& region) {
    return importer_->ImportRemote(peer_id_, region.descriptor(), Soon());
  }

  absl::Status Transfer(TransferKind kind, const RemoteRegion& remote, char* local, size_t length,
                        uint64_t offset) {
    TransferBatch b;
    b.kind = kind;
    b.remote = &remote;
    b.ops.push_back({local, length, offset});
    auto req = importer_->Post(std::move(b));
    if (!req.ok()) return req.status();
    return (*req)->Wait(Soon());
  }

  std::unique_ptr<Transport> owner_;
  std::unique_ptr<Transport> importer_;
  PeerId peer_id_ = 0;
};

// Puts and gets from two threads while the background populate runs, over
// the whole region: every get returns what the model says (the owner's
// pattern, or the last put), the populate completes, and the owner's bytes
// are the model's at the end (MADV_POPULATE_WRITE changed nothing).
TEST_F(MappedRegion, TransfersDuringBackgroundPopulateKeepTheirBytes) {
  constexpr uint64_t kRegion = 256 * kMiB + 4096;  // a partial last granule
  constexpr uint64_t kSeed = 77;
  std::unique_ptr<MemoryRegion> region = OwnerAlloc(kRegion, kSeed);
  ASSERT_NE(region, nullptr);
  std::string model = Pattern(kSeed, kRegion);

  auto remote = Import(*region);
  ASSERT_TRUE(remote.ok()) << remote.status();
  const auto* ucx = dynamic_cast<const UcxRemoteRegion*>(remote->get());
  ASSERT_NE(ucx, nullptr);
  if (ucx->mapped() == nullptr) GTEST_SKIP() << "UCX did not map the owner's segment here";
  ASSERT_EQ(ucx->granules(), kRegion / kMiB + 1);
  const uint64_t at_start = ucx->populated_granules();

  // Each thread owns every other 256 KiB block (no two threads touch one)
  // and walks its blocks from the end of the region towards the populate.
  // An op starts up to 384 bytes into its block (unaligned) and stays in it.
  constexpr int kThreads = 2;
  constexpr size_t kBlock = 256 << 10, kLength = kBlock - 512;
  const int64_t blocks = kRegion / kBlock;
  std::atomic<int> failures{0};
  std::atomic<uint64_t> during_populate{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::string buf(kLength, '\0'), data(kLength, '\0');
      for (int64_t b = blocks - 1 - t; b >= 0; b -= kThreads) {
        const uint64_t offset = b * kBlock + (b % 7) * 64;
        if (!ucx->background_populate_done()) during_populate.fetch_add(1);
        // Get: the owner's pattern. Then put new bytes and get them back.
        if (!Transfer(TransferKind::kGet, **remote, buf.data(), kLength, offset).ok() ||
            std::memcmp(buf.data(), model.data() + offset, kLength) != 0) {
          failures.fetch_add(1);
          continue;
        }
        for (size_t i = 0; i < kLength; i += 8) {
          const uint64_t v = rng();
          std::memcpy(&data[i], &v, 8);
        }
        if (!Transfer(TransferKind::kPut, **remote, data.data(), kLength, offset).ok() ||
            !Transfer(TransferKind::kGet, **remote, buf.data(), kLength, offset).ok() ||
            std::memcmp(buf.data(), data.data(), kLength) != 0) {
          failures.fetch_add(1);
          continue;
        }
        std::memcpy(model.data() + offset, data.data(), kLength);  // disjoint per thread
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);

  const absl::Time deadline = Soon(60);
  while (!ucx->background_populate_done() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(ucx->background_populate_done()) << "the background populate did not finish";
  EXPECT_EQ(ucx->populated_granules(), ucx->granules());
  // How much the two overlapped depends on the machine: shown, not asserted.
  std::printf("populated at import: %lu of %lu granules; %lu of %ld blocks moved during populate\n",
              at_start, ucx->granules(), during_populate.load(), blocks);
  EXPECT_TRUE(SameBytes(model, static_cast<const char*>(region->data())));
  remote->reset();
}

// Destroying regions whose populate has just started (or is midway) waits
// for the thread and frees nothing it still uses (ASan would say so); each
// destruction returns within a granule's madvise, not a whole region's.
TEST_F(MappedRegion, DestroyDuringBackgroundPopulateIsSafe) {
  constexpr uint64_t kRegion = 512 * kMiB;
  std::unique_ptr<MemoryRegion> region = OwnerAlloc(kRegion, 5);
  ASSERT_NE(region, nullptr);
  int interrupted = 0;
  for (int i = 0; i < 20; ++i) {
    auto remote = Import(*region);
    ASSERT_TRUE(remote.ok()) << remote.status();
    const auto* ucx = dynamic_cast<const UcxRemoteRegion*>(remote->get());
    ASSERT_NE(ucx, nullptr);
    if (ucx->mapped() == nullptr) GTEST_SKIP() << "UCX did not map the owner's segment here";
    if (i % 2 == 1) absl::SleepFor(absl::Microseconds(200 * i));  // midway, some of the time
    const bool running = !ucx->background_populate_done();
    const absl::Time start = absl::Now();
    remote->reset();
    EXPECT_LT(absl::Now() - start, absl::Milliseconds(500))
        << "the destructor waited for the whole populate";
    interrupted += running ? 1 : 0;
  }
  std::printf("%d of 20 regions destroyed while their populate ran\n", interrupted);
  EXPECT_GT(interrupted, 0) << "no destruction overlapped a populate (512 MiB each)";
  EXPECT_TRUE(SameBytes(Pattern(5, kRegion), static_cast<const char*>(region->data())));
}

// MappedAddress hands out the mapping itself: what is written there is the
// owner's, ranges outside the region are refused, and an attachment is made
// once per key and destroyed before the mapping goes (its destructor can
// still read the mapped bytes).
TEST_F(MappedRegion, MappedAddressesAndAttachments) {
  constexpr uint64_t kRegion = 4 * kMiB;
  std::unique_ptr<MemoryRegion> region = OwnerAlloc(kRegion, 9);
  ASSERT_NE(region, nullptr);
  auto remote = Import(*region);
  ASSERT_TRUE(remote.ok()) << remote.status();
  std::byte* at = importer_->MappedAddress(**remote, kMiB, 4096);
  if (at == nullptr) GTEST_SKIP() << "UCX did not map the owner's segment here";
  std::memset(at, 0x5a, 4096);
  EXPECT_EQ(static_cast<const unsigned char*>(region->data())[kMiB + 100], 0x5a);
  EXPECT_EQ(importer_->MappedAddress(**remote, kRegion - 10, 11), nullptr);
  EXPECT_EQ(importer_->MappedAddress(**remote, 0, 0), nullptr);

  // Reads the first mapped byte when destroyed: a use after unmap would
  // fault (and ASan would name it).
  struct Reader {
    const volatile std::byte* at;
    std::atomic<int>* seen;
    ~Reader() { seen->store(static_cast<int>(*at)); }
  };
  std::atomic<int> seen{-1};
  int made = 0;
  const char key = 0;
  auto make = [&]() -> std::shared_ptr<void> {
    ++made;
    return std::make_shared<Reader>(Reader{at, &seen});
  };
  std::shared_ptr<void> first = (*remote)->Attachment(&key, make);
  EXPECT_EQ((*remote)->Attachment(&key, make), first);
  EXPECT_EQ(made, 1);
  const char other = 0;
  EXPECT_EQ((*remote)->Attachment(&other, [] { return std::shared_ptr<void>(); }), nullptr);
  EXPECT_EQ((*remote)->Attachment(&other, [&] { return make(); }), nullptr) << "a null is kept";
  first.reset();
  remote->reset();
  EXPECT_EQ(seen.load(), 0x5a);
}

// A region that is not mapped (TCP only) has no granules and no thread.
TEST(UnmappedRegion, HasNothingToPopulate) {
  auto owner = MakeTransport("owner", "tcp,self");
  auto importer = MakeTransport("importer", "tcp,self");
  ASSERT_TRUE(owner != nullptr && importer != nullptr);
  auto id = importer->Connect(owner->address());
  ASSERT_TRUE(id.ok()) << id.status();
  auto region = owner->AllocateMemory(4 * kMiB, MemoryType::kHost);
  ASSERT_TRUE(region.ok()) << region.status();
  auto remote = importer->ImportRemote(*id, (*region)->descriptor(), Soon());
  ASSERT_TRUE(remote.ok()) << remote.status();
  const auto* ucx = dynamic_cast<const UcxRemoteRegion*>(remote->get());
  ASSERT_NE(ucx, nullptr);
  EXPECT_EQ(ucx->mapped(), nullptr);
  EXPECT_EQ(ucx->granules(), 0u);
  EXPECT_EQ(ucx->populated_granules(), 0u);
  EXPECT_FALSE(ucx->background_populate_done()) << "no populate was started";
}

}  // namespace
}  // namespace kvf
