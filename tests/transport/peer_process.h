// A transport peer in a real second process: the test binary re-executes
// itself (KVF_SELF_PATH) with --gtest_filter=TransportPeer.Serve and talks to
// it over a socketpair with length-prefixed messages. The parent kills the
// child when the PeerProcess is destroyed, so a failing test never leaves one
// behind; the child also dies with its parent (launch::ChildProcess).
#ifndef KVF_TESTS_TRANSPORT_PEER_PROCESS_H_
#define KVF_TESTS_TRANSPORT_PEER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/launch/spawn.h"

namespace kvf::testing {

using Message = std::vector<std::string>;

absl::Status WriteMessage(int fd, const Message& m);
absl::StatusOr<Message> ReadMessage(int fd, absl::Time deadline);

// Deterministic contents for region `seed`: both processes compute them.
void FillPattern(uint64_t seed, uint64_t offset, char* out, size_t n);

class PeerProcess {
 public:
  // `backend` is "ucx" or "nccl"; `tls` the UCX_TLS the child's transport uses.
  static absl::StatusOr<std::unique_ptr<PeerProcess>> Start(const std::string& backend,
                                                            const std::string& tls);
  ~PeerProcess() { Kill(); }
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;

  // Sends a command and waits for its reply ({"ok", ...} or {"error", why}).
  absl::StatusOr<Message> Request(const Message& m, absl::Duration timeout = absl::Seconds(30));
  // SIGKILL and reap; idempotent.
  void Kill();
  const std::string& address() const { return address_; }
  pid_t pid() const { return child_.pid(); }

 private:
  PeerProcess() = default;
  launch::ChildProcess child_;
  int fd_ = -1;
  std::string address_;
};

// The child's side: serves commands on fd until "quit" or EOF.
void ServePeer(int fd, const std::string& backend, const std::string& tls);

}  // namespace kvf::testing

#endif  // KVF_TESTS_TRANSPORT_PEER_PROCESS_H_
