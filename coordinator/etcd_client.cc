#include "coordinator/etcd_client.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "grpcpp/client_context.h"
#include "proto/channel.h"

namespace kvf {

struct EtcdClient::Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
};

namespace {

// "a" -> "b", "a\xff" -> "b": the end of the range of keys starting with
// `prefix` (etcd's prefix convention).
std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char c = static_cast<unsigned char>(end.back());
    if (c < 0xff) {
      end.back() = static_cast<char>(c + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

EtcdKeyValue FromProto(const mvccpb::KeyValue& kv) {
  EtcdKeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(const std::string& endpoints,
                                                               absl::Duration timeout) {
  std::vector<std::string> list;
  for (absl::string_view e : absl::StrSplit(endpoints, ',', absl::SkipWhitespace())) {
    e = absl::StripAsciiWhitespace(e);
    absl::ConsumePrefix(&e, "http://");
    while (absl::ConsumeSuffix(&e, "/")) {
    }
    if (absl::StartsWith(e, "https://")) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint '", std::string(e), "': TLS to etcd is not supported"));
    }
    if (!e.empty()) list.emplace_back(e);
  }
  if (list.empty()) return absl::InvalidArgumentError("no etcd endpoints given");
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd call timeout must be positive");
  }
  return std::unique_ptr<EtcdClient>(new EtcdClient(std::move(list), timeout));
}

EtcdClient::EtcdClient(std::vector<std::string> endpoints, absl::Duration timeout)
    : endpoints_(std::move(endpoints)), timeout_(timeout) {
  for (const std::string& address : endpoints_) {
    auto ep = std::make_shared<Endpoint>();
    ep->address = address;
    ep->channel = OpenChannel(address);  // short reconnect backoff (proto/channel.h)
    ep->kv = etcdserverpb::KV::NewStub(ep->channel);
    ep->lease = etcdserverpb::Lease::NewStub(ep->channel);
    ep->watch = etcdserverpb::Watch::NewStub(ep->channel);
    ep->maintenance = etcdserverpb::Maintenance::NewStub(ep->channel);
    channels_.push_back(std::move(ep));
  }
  health_.endpoint = endpoints_[0];
}

EtcdClient::~EtcdClient() = default;

std::shared_ptr<EtcdClient::Endpoint> EtcdClient::Current() const {
  absl::MutexLock lock(&mu_);
  return channels_[current_];
}

void EtcdClient::SetDeadline(grpc::ClientContext* ctx) const {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::microseconds(absl::ToInt64Microseconds(timeout_)));
}

absl::Status EtcdClient::Finish(const Endpoint& ep, const char* call, const grpc::Status& s,
                                int64_t revision) {
  absl::MutexLock lock(&mu_);
  if (s.ok()) {
    health_.ok = true;
    health_.error.clear();
    health_.revision = std::max(health_.revision, revision);
    return absl::OkStatus();
  }
  const std::string message = absl::StrCat("etcd ", ep.address, " ", call, ": ",
                                           s.error_message());
  health_.ok = false;
  health_.error = message;
  if ((s.error_code() == grpc::StatusCode::UNAVAILABLE ||
       s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) &&
      channels_[current_].get() == &ep && channels_.size() > 1) {
    current_ = (current_ + 1) % channels_.size();
    health_.endpoint = endpoints_[current_];
  }
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), message);
}

absl::StatusOr<std::optional<EtcdKeyValue>> EtcdClient::Get(const std::string& key,
                                                            int64_t* revision) {
  std::shared_ptr<Endpoint> ep = Current();
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  etcdserverpb::RangeResponse response;
  grpc::Status s = ep->kv->Range(&ctx, request, &response);
  if (absl::Status st = Finish(*ep, "Range", s, response.header().revision()); !st.ok()) return st;
  if (revision != nullptr) *revision = response.header().revision();
  if (response.kvs_size() == 0) return std::optional<EtcdKeyValue>();
  return std::optional<EtcdKeyValue>(FromProto(response.kvs(0)));
}

absl::StatusOr<int64_t> EtcdClient::Put(const std::string& key, const std::string& value,
                                        int64_t lease) {
  std::shared_ptr<Endpoint> ep = Current();
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  etcdserverpb::PutResponse response;
  grpc::Status s = ep->kv->Put(&ctx, request, &response);
  if (absl::Status st = Finish(*ep, "Put", s, response.header().revision()); !st.ok()) return st;
  return response.header().revision();
}

absl::StatusOr<int64_t> EtcdClient::DeletePrefix(const std::string& prefix) {
  std::shared_ptr<Endpoint> ep = Current();
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixEnd(prefix));
  etcdserverpb::DeleteRangeResponse response;
  grpc::Status s = ep->kv->DeleteRange(&ctx, request, &response);
  if (absl::Status st = Finish(*ep, "DeleteRange", s, response.header().revision()); !st.ok()) {
    return st;
  }
  return response.deleted();
}

absl::StatusOr<etcdserverpb::TxnResponse> EtcdClient::Txn(const etcdserverpb::TxnRequest& request) {
  std::shared_ptr<Endpoint> ep = Current();
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  etcdserverpb::TxnResponse response;
  grpc::Status s = ep->kv->Txn(&ctx, request, &response);
  if (absl::Status st = Finish(*ep, "Txn", s, response.header().revision()); !st.ok()) return st;
  return response;
}

absl::StatusOr<int64_t> EtcdClient::GrantLease(absl::Duration ttl) {
  std::shared_ptr<Endpoint> ep = Current();
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1)))));
  etcdserverpb::LeaseGrantResponse response;
  grpc::Status s = ep->lease->LeaseGrant(&ctx, request, &response);
  if (absl::Status st = Finish(*ep, "LeaseGrant", s, response.header().revision()); !st.ok()) {
    return st;
  }
  if (!response.error().empty()) {
    return absl::UnavailableError(absl::StrCat("etcd LeaseGrant: ", response.error()));
  }
  return response.id();
}

absl::Status EtcdClient::RevokeLease(int64_t id) {
  std::shared_ptr<Endpoint> ep = Current();
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(id);
  etcdserverpb::LeaseRevokeResponse response;
  grpc::Status s = ep->lease->LeaseRevoke(&ctx, request, &response);
  // A lease that already expired is gone: what revoking wanted.
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) return absl::OkStatus();
  return Finish(*ep, "LeaseRevoke", s, response.header().revision());
}

absl::StatusOr<int64_t> EtcdClient::KeepAliveOnce(int64_t id) {
  std::shared_ptr<Endpoint> ep = Current();
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto stream = ep->lease->LeaseKeepAlive(&ctx);
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(id);
  etcdserverpb::LeaseKeepAliveResponse response;
  bool got = stream->Write(request) && stream->Read(&response);
  stream->WritesDone();
  if (got) {
    ctx.TryCancel();  // one exchange is all we wanted
    stream->Finish();
    absl::Status st = Finish(*ep, "LeaseKeepAlive", grpc::Status::OK, response.header().revision());
    if (!st.ok()) return st;
    return response.ttl();
  }
  grpc::Status s = stream->Finish();
  if (s.ok()) s = grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream closed without a reply");
  return Finish(*ep, "LeaseKeepAlive", s);
}

absl::StatusOr<etcdserverpb::StatusResponse> EtcdClient::Status() {
  std::shared_ptr<Endpoint> ep = Current();
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  etcdserverpb::StatusResponse response;
  grpc::Status s = ep->maintenance->Status(&ctx, etcdserverpb::StatusRequest(), &response);
  if (absl::Status st = Finish(*ep, "Status", s, response.header().revision()); !st.ok()) {
    return st;
  }
  return response;
}

EtcdHealth EtcdClient::health() const {
  absl::MutexLock lock(&mu_);
  return health_;
}

etcdserverpb::Compare EtcdClient::CreateRevisionIs(const std::string& key, int64_t revision) {
  etcdserverpb::Compare c;
  c.set_key(key);
  c.set_target(etcdserverpb::Compare::CREATE);
  c.set_result(etcdserverpb::Compare::EQUAL);
  c.set_create_revision(revision);
  return c;
}

etcdserverpb::Compare EtcdClient::ModRevisionIs(const std::string& key, int64_t revision) {
  etcdserverpb::Compare c;
  c.set_key(key);
  c.set_target(etcdserverpb::Compare::MOD);
  c.set_result(etcdserverpb::Compare::EQUAL);
  c.set_mod_revision(revision);
  return c;
}

std::unique_ptr<EtcdWatch> EtcdClient::Watch(const std::string& key, int64_t start_revision,
                                             std::function<void(const mvccpb::Event&)> on_event) {
  return std::unique_ptr<EtcdWatch>(new EtcdWatch(this, key, start_revision, std::move(on_event)));
}

EtcdWatch::EtcdWatch(EtcdClient* client, std::string key, int64_t start_revision,
                     std::function<void(const mvccpb::Event&)> on_event)
    : client_(client),
      key_(std::move(key)),
      on_event_(std::move(on_event)),
      next_revision_(start_revision) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kvf-etcd-watch");
    Loop();
  });
}

EtcdWatch::~EtcdWatch() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (ctx_ != nullptr) ctx_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

int64_t EtcdWatch::Resync() {
  int64_t revision = 0;
  absl::StatusOr<std::optional<EtcdKeyValue>> kv = client_->Get(key_, &revision);
  if (!kv.ok()) return next_revision_;  // tried again after the pause
  mvccpb::Event event;
  event.mutable_kv()->set_key(key_);
  if (*kv) {
    event.set_type(mvccpb::Event::PUT);
    event.mutable_kv()->set_value((*kv)->value);
    event.mutable_kv()->set_create_revision((*kv)->create_revision);
    event.mutable_kv()->set_mod_revision((*kv)->mod_revision);
    event.mutable_kv()->set_version((*kv)->version);
  } else {
    event.set_type(mvccpb::Event::DELETE);
    event.mutable_kv()->set_mod_revision(revision);
  }
  on_event_(event);
  return revision + 1;
}

void EtcdWatch::Loop() {
  for (;;) {
    std::shared_ptr<EtcdClient::Endpoint> ep = client_->Current();
    grpc::ClientContext ctx;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      ctx_ = &ctx;
    }
    auto stream = ep->watch->Watch(&ctx);
    etcdserverpb::WatchRequest request;
    request.mutable_create_request()->set_key(key_);
    request.mutable_create_request()->set_start_revision(next_revision_);
    bool compacted = false;
    if (stream->Write(request)) {
      etcdserverpb::WatchResponse response;
      while (stream->Read(&response)) {
        if (response.compact_revision() > 0) {
          compacted = true;
          break;
        }
        for (const mvccpb::Event& e : response.events()) {
          if (e.kv().mod_revision() < next_revision_) continue;
          next_revision_ = e.kv().mod_revision() + 1;
          on_event_(e);
        }
        if (response.canceled()) break;
      }
    }
    ctx.TryCancel();
    grpc::Status s = stream->Finish();
    {
      absl::MutexLock lock(&mu_);
      ctx_ = nullptr;
      if (stop_) return;
    }
    if (compacted) {
      next_revision_ = Resync();
      continue;
    }
    // Counts against health and moves to the next endpoint when it broke.
    if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) {
      (void)client_->Finish(*ep, "Watch", s);
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(200));
    if (stop_) return;
  }
}

}  // namespace kvf
