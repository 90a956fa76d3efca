// A peer that speaks UCX itself, not our protocol (docs/security.md, "A
// peer that speaks UCX itself"). Over TCP, UCX emulates one-sided access with
// active messages whose handlers copy from whatever address the peer names.
// This test plays such a peer with the raw UCP API, against a real agent of
// a TCP-only local cluster, and is handed the agent's real arena address and
// remote key (as if it had guessed them):
//  * against the agent's trusted worker (one-sided access on; agents and
//    cluster-token clients use it) the forged read succeeds: the control,
//    showing the attack works and why that worker belongs on a trusted
//    network;
//  * against the worker tenants use (created without UCP_FEATURE_RMA) it
//    gets nothing.
#include <ucp/api/ucp.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cluster_map.h"
#include "gtest/gtest.h"
#include "protocol/frames.h"
#include "protocol/reply.h"
#include "tests/cluster/wire_fixture.h"
#include "transport/internal/wire.h"

namespace kvf::testing {
namespace {

// One raw UCP context, worker and endpoint with one-sided access: the
// attacker's own UCX, not kvf::Transport.
class RawUcxPeer {
 public:
  ~RawUcxPeer() {
    if (ep_ != nullptr) {
      ucp_request_param_t p{};
      p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      p.flags = UCP_EP_CLOSE_FLAG_FORCE;
      ucs_status_ptr_t r = ucp_ep_close_nbx(ep_, &p);
      if (UCS_PTR_IS_PTR(r)) {
        while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(worker_);
        ucp_request_free(r);
      }
    }
    if (rkey_ != nullptr) ucp_rkey_destroy(rkey_);
    if (worker_ != nullptr) ucp_worker_destroy(worker_);
    if (context_ != nullptr) ucp_cleanup(context_);
  }

  // `sealed`: a kvf transport address (a UCX worker address in kvf's
  // checksummed envelope, transport/internal/wire.h).
  absl::Status Connect(const std::string& sealed) {
    // The UCX backend's tag in the envelope (transport/ucx/ucx_internal.h).
    constexpr uint8_t kUcxBackendTag = 1;
    auto opened = transport_internal::OpenAddress(kUcxBackendTag, sealed);
    if (!opened.ok()) return opened.status();
    const std::string worker_address(*opened);
    ucp_config_t* config = nullptr;
    if (ucp_config_read(nullptr, nullptr, &config) != UCS_OK) return absl::InternalError("config");
    ucp_config_modify(config, "TLS", "tcp,self");
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM;
    ucs_status_t st = ucp_init(&params, config, &context_);
    ucp_config_release(config);
    if (st != UCS_OK) return absl::InternalError(ucs_status_string(st));
    ucp_worker_params_t wp{};
    if ((st = ucp_worker_create(context_, &wp, &worker_)) != UCS_OK) {
      return absl::InternalError(ucs_status_string(st));
    }
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep.address = reinterpret_cast<const ucp_address_t*>(worker_address.data());
    if ((st = ucp_ep_create(worker_, &ep, &ep_)) != UCS_OK) {
      return absl::UnavailableError(absl::StrCat("ucp_ep_create: ", ucs_status_string(st)));
    }
    return absl::OkStatus();
  }

  // Reads `length` bytes at `address` of the peer with `rkey`, waiting up to
  // `timeout`. The bytes read, or why not.
  absl::StatusOr<std::string> Get(uint64_t address, const std::string& rkey, size_t length,
                                  absl::Duration timeout) {
    ucs_status_t st = ucp_ep_rkey_unpack(ep_, rkey.data(), &rkey_);
    if (st != UCS_OK) {
      return absl::PermissionDeniedError(absl::StrCat("ucp_ep_rkey_unpack: ", ucs_status_string(st)));
    }
    std::string out(length, '\0');
    ucp_request_param_t p{};
    ucs_status_ptr_t r = ucp_get_nbx(ep_, out.data(), length, address, rkey_, &p);
    if (UCS_PTR_IS_ERR(r)) {
      return absl::PermissionDeniedError(
          absl::StrCat("ucp_get_nbx: ", ucs_status_string(UCS_PTR_STATUS(r))));
    }
    if (r != nullptr) {
      const absl::Time deadline = absl::Now() + timeout;
      while ((st = ucp_request_check_status(r)) == UCS_INPROGRESS && absl::Now() < deadline) {
        ucp_worker_progress(worker_);
      }
      if (st == UCS_INPROGRESS) {
        // Leave the request with UCX; the endpoint is force-closed below.
        return absl::DeadlineExceededError("no answer: the peer does not serve one-sided reads");
      }
      ucp_request_free(r);
      if (st != UCS_OK) return absl::PermissionDeniedError(ucs_status_string(st));
    }
    return out;
  }

 private:
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_ep_h ep_ = nullptr;
  ucp_rkey_h rkey_ = nullptr;
};

class RawUcxAttack : public WireFixture {
 protected:
  // Over TCP, where UCX emulates one-sided access (on one host, shared
  // memory and CMA reach any process of the same user anyway).
  RawUcxAttack() { ucx_tls_ = "tcp,self"; }
};

TEST_F(RawUcxAttack, OnlyTheTrustedWorkerServesForgedOneSidedReads) {
  const NodeId node = map_.nodes[0].id;
  ASSERT_TRUE(Register(node, spec_).ok());
  const protocol::KeyRef k = KeyOwnedBy(node);
  const std::vector<char> block = Block(11);
  ASSERT_TRUE(PutBlock(node, k, block).ok());
  // What the attacker is assumed to know: the block's address and the key.
  protocol::GetRequest get;
  get.header = Header(spec_);
  get.keys = {k};
  auto got = Send<protocol::GetResponse>(node, get);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->entries[0].code, absl::StatusCode::kOk);
  const RemoteDescriptor& arena = got->descriptors.at(0);
  const uint64_t address = arena.address + got->entries[0].location.offset;
  const NodeInfo* info = map_.Find(node);
  ASSERT_NE(info, nullptr);
  ASSERT_FALSE(info->tenant_data_address.empty()) << "the map names no tenant worker";
  ASSERT_NE(info->tenant_data_address, info->data_address);

  // The control: the trusted worker hands the bytes to anyone speaking UCX.
  {
    auto worker = DecodeDataAddress(info->data_address);
    ASSERT_TRUE(worker.ok());
    RawUcxPeer attacker;
    ASSERT_TRUE(attacker.Connect(*worker).ok());
    auto bytes = attacker.Get(address, arena.rkey, 64, absl::Seconds(10));
    ASSERT_TRUE(bytes.ok()) << "the control read failed, so the test proves nothing: "
                            << bytes.status();
    EXPECT_EQ(*bytes, std::string(block.begin(), block.begin() + 64));
  }
  // The tenants' worker: the same read gets nothing.
  {
    auto worker = DecodeDataAddress(info->tenant_data_address);
    ASSERT_TRUE(worker.ok());
    RawUcxPeer attacker;
    absl::Status connected = attacker.Connect(*worker);
    if (connected.ok()) {
      auto bytes = attacker.Get(address, arena.rkey, 64, absl::Seconds(2));
      EXPECT_FALSE(bytes.ok()) << "the tenants' worker served a one-sided read";
      std::cout << "forged read from the tenants' worker: " << bytes.status() << "\n";
    } else {
      std::cout << "cannot even connect for one-sided access: " << connected << "\n";
    }
  }
  // The agent still serves (a wrong guess must not have hurt it).
  auto again = Send<protocol::GetResponse>(node, get);
  ASSERT_TRUE(again.ok()) << again.status();
}

}  // namespace
}  // namespace kvf::testing
