// The UCX backend's two-sided lane (transport/ucx/ucx_tagged.cc) against a
// peer in a second process: tagged sends and receives, a data handler's
// reply sends landing in receives posted before the call, cancelling
// receives, a message longer than its receive, and which connections report
// native one-sided access (shared memory) or emulated (TCP). Runs over
// shared memory and over TCP (ctest entries kvf_transport_tagged_*).
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/transport/peer_process.h"
#include "transport/transport.h"

namespace kvf {
namespace {

using testing::PeerProcess;

struct TaggedConfig {
  std::string name;
  std::string tls;
  bool native_one_sided;  // what NativeOneSided should report to the peer
};

std::string Pattern(uint64_t seed, size_t n) {
  std::string s(n, '\0');
  testing::FillPattern(seed, 0, s.data(), n);
  return s;
}

absl::Time Soon() { return absl::Now() + absl::Seconds(30); }

class TransportTagged : public ::testing::TestWithParam<TaggedConfig> {
 protected:
  void SetUp() override {
    TransportConfig c;
    c.name = "parent";
    c.ucx_tls = GetParam().tls;
    auto t = CreateTransport(c);
    ASSERT_TRUE(t.ok()) << t.status();
    t_ = std::move(*t);
    auto p = PeerProcess::Start("ucx", GetParam().tls);
    ASSERT_TRUE(p.ok()) << p.status();
    peer_ = std::move(*p);
    auto id = t_->Connect(peer_->address());
    ASSERT_TRUE(id.ok()) << id.status();
    id_ = *id;
  }

  // Posts one receive per block (tags tag0 + i), asks the peer's data
  // handler to send `count` blocks of `len` bytes of Pattern(seed).
  absl::Status Fetch(uint64_t seed, size_t len, size_t capacity, uint64_t tag0, size_t count,
                     std::string* out) {
    out->assign(capacity * count, '\0');
    TransferBatch b;
    b.kind = TransferKind::kRecv;
    for (size_t i = 0; i < count; ++i) b.ops.push_back({out->data() + i * capacity, capacity, 0, tag0 + i});
    auto req = t_->Post(std::move(b));
    if (!req.ok()) return req.status();
    auto answer = t_->Call(id_, 6, absl::StrCat(seed, " ", len, " ", tag0, " ", count), Soon());
    if (!answer.ok()) return answer.status();
    EXPECT_EQ(*answer, "sent");
    return (*req)->Wait(Soon());
  }

  std::unique_ptr<Transport> t_;
  std::unique_ptr<PeerProcess> peer_;
  PeerId id_ = 0;
};

TEST_P(TransportTagged, ReportsTheLaneItsOneSidedAccessTakes) {
  EXPECT_TRUE(t_->capabilities().two_sided);
  EXPECT_EQ(t_->NativeOneSided(id_), GetParam().native_one_sided);
  EXPECT_FALSE(t_->NativeOneSided(id_ + 1000));  // unknown peer
}

TEST_P(TransportTagged, ReplySendsLandInReceivesPostedBeforeTheCall) {
  // Small (eager) and large (rendezvous) messages, several in flight.
  for (size_t len : {size_t{100}, size_t{8192}, size_t{256} << 10, size_t{2} << 20}) {
    SCOPED_TRACE(len);
    std::string got;
    ASSERT_TRUE(Fetch(len, len, len, 1000 + len, 8, &got).ok());
    const std::string want = Pattern(len, len * 8);
    EXPECT_TRUE(got == want) << "bytes differ";
  }
}

TEST_P(TransportTagged, AReceiveMayBeLargerThanItsMessage) {
  std::string got;
  ASSERT_TRUE(Fetch(7, 3000, 4096, 50, 2, &got).ok());
  const std::string want = Pattern(7, 6000);
  EXPECT_EQ(got.substr(0, 3000), want.substr(0, 3000));
  EXPECT_EQ(got.substr(4096, 3000), want.substr(3000, 3000));
}

TEST_P(TransportTagged, AMessageLongerThanItsReceiveFailsIt) {
  std::string got;
  EXPECT_FALSE(Fetch(8, 1 << 20, 1000, 60, 1, &got).ok());
  // Nothing else is harmed.
  ASSERT_TRUE(Fetch(9, 1000, 1000, 61, 1, &got).ok());
  EXPECT_EQ(got, Pattern(9, 1000));
  EXPECT_TRUE(t_->Call(id_, 1, "still here", Soon()).ok());
}

TEST_P(TransportTagged, SendReachesAReceivePostedLater) {
  constexpr size_t kLen = 1 << 20;
  const std::string bytes = Pattern(5, kLen);
  TransferBatch b;
  b.kind = TransferKind::kSend;
  b.peer = id_;
  b.ops = {{const_cast<char*>(bytes.data()), kLen, 0, 99}};
  auto req = t_->Post(std::move(b));
  ASSERT_TRUE(req.ok()) << req.status();
  // The peer posts its receive only now: the message waits for it.
  auto r = peer_->Request({"trecv", "99", absl::StrCat(kLen), "5"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[1], "same");
  EXPECT_TRUE((*req)->Wait(Soon()).ok());
}

TEST_P(TransportTagged, CancelWithdrawsReceivesAndLeavesTheConnection) {
  std::string buf(4096, '\0');
  TransferBatch b;
  b.kind = TransferKind::kRecv;
  b.ops = {{buf.data(), 2048, 0, 7777}, {buf.data() + 2048, 2048, 0, 7778}};
  auto req = t_->Post(std::move(b));
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ((*req)->Wait(absl::Now() + absl::Milliseconds(50)).code(),
            absl::StatusCode::kDeadlineExceeded);
  (*req)->Cancel();
  EXPECT_EQ((*req)->Wait(Soon()).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ((*req)->state(), TransferState::kCancelled);
  EXPECT_TRUE(t_->PeerHealth(id_).ok());
  // The same tags work again afterwards.
  std::string got;
  ASSERT_TRUE(Fetch(11, 2048, 2048, 7777, 2, &got).ok());
  EXPECT_EQ(got, Pattern(11, 4096));
}

TEST_P(TransportTagged, DestroyingAPendingReceiveCancelsIt) {
  std::string buf(1024, '\0');
  TransferBatch b;
  b.kind = TransferKind::kRecv;
  b.ops = {{buf.data(), buf.size(), 0, 31337}};
  auto req = t_->Post(std::move(b));
  ASSERT_TRUE(req.ok()) << req.status();
  req->reset();  // must not wait for a message that never comes
  std::string got;
  ASSERT_TRUE(Fetch(12, 1024, 1024, 31337, 1, &got).ok());
  EXPECT_EQ(got, Pattern(12, 1024));
}

TEST_P(TransportTagged, MessagesOnlyTransportsHaveNoTaggedLane) {
  TransportConfig c;
  c.name = "messages-only";
  c.ucx_tls = GetParam().tls;
  c.one_sided = false;
  auto t = CreateTransport(c);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FALSE((*t)->capabilities().two_sided);
  EXPECT_EQ((*t)->RegisterDataHandler(6, [](std::string_view, ReplySends*) {
                  return absl::StatusOr<std::string>("");
                }).code(),
            absl::StatusCode::kUnimplemented);
}

INSTANTIATE_TEST_SUITE_P(Fabrics, TransportTagged,
                         ::testing::Values(TaggedConfig{"UcxSharedMemory", "posix,cma,self", true},
                                           TaggedConfig{"UcxTcp", "tcp,self", false}),
                         [](const ::testing::TestParamInfo<TaggedConfig>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace kvf
