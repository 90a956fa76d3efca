// The gRPC channel every kvfabric process opens to a coordinator or an agent,
// and the TLS credentials of both ends.
//
// gRPC's default reconnect backoff grows to two minutes, so a process that
// kept getting "connection refused" while a coordinator was down would find
// it back only minutes after its restart, long after every lease ran out. Ours
// retries after 100 ms at first and at least every half second (plus gRPC's
// 20% jitter), so a restarted daemon is found again well within a lease
// (docs/faults.md).
//
// TLS (docs/operating.md, "TLS and listen addresses"): a server given a PEM
// certificate and key serves over TLS; a client given a PEM CA file verifies
// the server's certificate against it, including that the certificate names
// the address dialled (a subjectAltName IP entry for "127.0.0.1:7700", a DNS
// entry for "coord.example:7700"). No client certificates: callers still
// prove themselves with the cluster token (proto/auth.h), which TLS now keeps
// off the wire.
#ifndef KVF_PROTO_CHANNEL_H_
#define KVF_PROTO_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace kvf {

// A channel to `address` (host:port); insecure credentials unless given.
std::shared_ptr<grpc::Channel> OpenChannel(
    const std::string& address, std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

// Credentials for a channel: TLS verifying the server against the PEM
// certificates in `tls_ca_file`, or plaintext when it is empty. NOT_FOUND if
// the file cannot be read, INVALID_ARGUMENT if it holds no PEM certificate;
// both name the file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const std::string& tls_ca_file);

// Credentials for a server: TLS with the PEM certificate (chain) and private
// key in the two files, or plaintext when both are empty. INVALID_ARGUMENT
// when only one is given or a file holds no PEM of its kind, NOT_FOUND when
// one cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const std::string& tls_cert_file, const std::string& tls_key_file);

}  // namespace kvf

#endif  // KVF_PROTO_CHANNEL_H_
