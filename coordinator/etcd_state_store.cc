#include "coordinator/etcd_state_store.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kvf {

std::string EtcdEpochKey(const std::string& prefix) { return prefix + "/epoch"; }
std::string EtcdStateKey(const std::string& prefix) { return prefix + "/state"; }
std::string EtcdLeaderKey(const std::string& prefix) { return prefix + "/leader"; }

EtcdStateStore::EtcdStateStore(EtcdClient* etcd, std::string prefix, int64_t term,
                               std::function<void(const absl::Status&)> on_fenced)
    : etcd_(etcd), prefix_(std::move(prefix)), term_(term), on_fenced_(std::move(on_fenced)) {}

absl::StatusOr<uint64_t> EtcdStateStore::Load() const {
  absl::StatusOr<std::optional<EtcdKeyValue>> kv = etcd_->Get(EtcdEpochKey(prefix_));
  if (!kv.ok()) return kv.status();
  if (!*kv) {
    epoch_revision_ = 0;  // absent: etcd compares it as revision 0
    return uint64_t{0};
  }
  uint64_t epoch = 0;
  if (!absl::SimpleAtoi((*kv)->value, &epoch)) {
    return absl::DataLossError(absl::StrCat("etcd ", EtcdEpochKey(prefix_),
                                            ": not an epoch number: '",
                                            (*kv)->value.substr(0, 40), "'"));
  }
  epoch_revision_ = (*kv)->mod_revision;
  return epoch;
}

absl::Status EtcdStateStore::Fenced(const etcdserverpb::TxnResponse& response, const char* what) {
  int64_t leader_term = 0;
  std::string leader;
  int64_t epoch_revision = 0;
  for (const etcdserverpb::ResponseOp& op : response.responses()) {
    if (!op.has_response_range() || op.response_range().kvs_size() == 0) continue;
    const mvccpb::KeyValue& kv = op.response_range().kvs(0);
    if (kv.key() == EtcdLeaderKey(prefix_)) {
      leader_term = kv.create_revision();
      leader = kv.value();
    } else {
      epoch_revision = kv.mod_revision();
    }
  }
  absl::Status s;
  if (leader_term != term_) {
    s = absl::UnavailableError(absl::StrCat(
        "not the leader any more, ", what, " refused: the leader key is ",
        leader_term == 0 ? std::string("gone")
                         : absl::StrCat("held by ", leader, " (term ", leader_term, ")"),
        ", this coordinator's term was ", term_));
  } else {
    s = absl::UnavailableError(
        absl::StrCat(what, " refused: ", EtcdEpochKey(prefix_), " changed under this leader ",
                     "(mod revision ", epoch_revision, ", expected ", epoch_revision_, ")"));
  }
  if (!fenced_) {
    fenced_ = true;
    KVF_LOG(WARNING) << "coordinator: " << s.message();
    if (on_fenced_) on_fenced_(s);
  }
  return s;
}

absl::Status EtcdStateStore::Save(uint64_t epoch) {
  if (epoch_revision_ < 0) {
    absl::StatusOr<uint64_t> loaded = Load();
    if (!loaded.ok()) return loaded.status();
  }
  etcdserverpb::TxnRequest txn;
  *txn.add_compare() = EtcdClient::ModRevisionIs(EtcdEpochKey(prefix_), epoch_revision_);
  *txn.add_compare() = EtcdClient::CreateRevisionIs(EtcdLeaderKey(prefix_), term_);
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(EtcdEpochKey(prefix_));
  put->set_value(absl::StrCat(epoch));
  txn.add_failure()->mutable_request_range()->set_key(EtcdLeaderKey(prefix_));
  txn.add_failure()->mutable_request_range()->set_key(EtcdEpochKey(prefix_));
  absl::StatusOr<etcdserverpb::TxnResponse> r = etcd_->Txn(txn);
  if (!r.ok()) return r.status();
  if (!r->succeeded()) return Fenced(*r, absl::StrCat("epoch ", epoch).c_str());
  epoch_revision_ = r->header().revision();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> EtcdStateStore::LoadRoster() const {
  absl::StatusOr<std::optional<EtcdKeyValue>> kv = etcd_->Get(EtcdStateKey(prefix_));
  if (!kv.ok()) return kv.status();
  if (!*kv) return std::optional<std::string>();
  return std::optional<std::string>((*kv)->value);
}

absl::Status EtcdStateStore::SaveRoster(const std::string& bytes) {
  etcdserverpb::TxnRequest txn;
  *txn.add_compare() = EtcdClient::CreateRevisionIs(EtcdLeaderKey(prefix_), term_);
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(EtcdStateKey(prefix_));
  put->set_value(bytes);
  txn.add_failure()->mutable_request_range()->set_key(EtcdLeaderKey(prefix_));
  absl::StatusOr<etcdserverpb::TxnResponse> r = etcd_->Txn(txn);
  if (!r.ok()) return r.status();
  if (!r->succeeded()) return Fenced(*r, "roster write");
  return absl::OkStatus();
}

}  // namespace kvf
