// A real etcd server for a test: free client and peer ports on 127.0.0.1,
// data in a fresh temporary directory, stopped by pid (SIGKILL) and the
// directory removed when the object goes, whatever the test did. Tests skip
// when etcd is not installed (Start() is NOT_FOUND; Debian: etcd-server).
#ifndef KVF_TESTS_COORDINATOR_ETCD_SERVER_H_
#define KVF_TESTS_COORDINATOR_ETCD_SERVER_H_

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "coordinator/etcd_client.h"
#include "tools/launch/local_cluster.h"
#include "tools/launch/spawn.h"

namespace kvf::testing {

inline constexpr char kNoEtcd[] = "etcd is not installed (Debian: apt-get install etcd-server)";

class EtcdServer {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Start() {
    KVF_ASSIGN_OR_RETURN(std::string bin, launch::FindEtcd());
    std::unique_ptr<EtcdServer> s(new EtcdServer());
    s->bin_ = bin;
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvf-etcd-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
    s->dir_ = tmpl;
    KVF_ASSIGN_OR_RETURN(int client, launch::FreePort("127.0.0.1"));
    KVF_ASSIGN_OR_RETURN(s->peer_port_, launch::FreePort("127.0.0.1"));
    s->endpoint_ = absl::StrCat("127.0.0.1:", client);
    KVF_RETURN_IF_ERROR(s->Run());
    return s;
  }

  ~EtcdServer() {
    process_.Kill();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  const std::string& endpoint() const { return endpoint_; }
  pid_t pid() const { return process_.pid(); }

  void Kill() { process_.Kill(); }
  // Starts it again on the same ports and data.
  absl::Status Restart() {
    process_.Kill();
    return Run();
  }

 private:
  EtcdServer() = default;

  absl::Status Run() {
    const std::string client_url = absl::StrCat("http://", endpoint_);
    const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
    launch::SpawnOptions so;
    so.argv = {bin_,
               "--name=test",
               absl::StrCat("--data-dir=", dir_, "/data"),
               absl::StrCat("--listen-client-urls=", client_url),
               absl::StrCat("--advertise-client-urls=", client_url),
               absl::StrCat("--listen-peer-urls=", peer_url),
               absl::StrCat("--initial-advertise-peer-urls=", peer_url),
               absl::StrCat("--initial-cluster=test=", peer_url)};
    so.in = launch::Stdio::Null();
    so.out = launch::Stdio::File(dir_ + "/etcd.out");
    so.err = launch::Stdio::File(dir_ + "/etcd.err");
    so.close_other_fds = true;
    KVF_ASSIGN_OR_RETURN(process_, launch::ChildProcess::Spawn(so));
    // Wait until the port is open before the first gRPC call: a channel that
    // met "connection refused" first backs off for seconds.
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    for (;;) {
      if (process_.Poll()) return absl::InternalError("etcd exited before it was ready");
      if (absl::Now() > deadline) return absl::DeadlineExceededError("etcd not ready in 30 s");
      if (launch::PortOpen(endpoint_)) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    KVF_ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> client,
                         EtcdClient::Create(endpoint_, absl::Seconds(1)));
    for (;;) {
      absl::StatusOr<etcdserverpb::StatusResponse> st = client->Status();
      if (st.ok() && st->leader() != 0) return absl::OkStatus();
      if (process_.Poll()) return absl::InternalError("etcd exited before it was ready");
      if (absl::Now() > deadline) return absl::DeadlineExceededError("etcd not ready in 30 s");
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  std::string bin_;
  std::string dir_;
  std::string endpoint_;
  int peer_port_ = 0;
  launch::ChildProcess process_;
};

}  // namespace kvf::testing

#endif  // KVF_TESTS_COORDINATOR_ETCD_SERVER_H_
