// The gRPC channel every kvfabric process opens to a coordinator or an agent.
//
// gRPC's default reconnect backoff grows to two minutes, so a process that
// kept getting "connection refused" while a coordinator was down would find
// it back only minutes after its restart, long after every lease ran out. Ours
// retries after 100 ms at first and at least every half second (plus gRPC's
// 20% jitter), so a restarted daemon is found again well within a lease
// (docs/faults.md).
#ifndef KVF_PROTO_CHANNEL_H_
#define KVF_PROTO_CHANNEL_H_

#include <memory>
#include <string>

#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"

namespace kvf {

// A channel to `address` (host:port); insecure credentials unless given.
std::shared_ptr<grpc::Channel> OpenChannel(
    const std::string& address, std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

}  // namespace kvf

#endif  // KVF_PROTO_CHANNEL_H_
