#include "proto/channel.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace kvf {
namespace {

// The file's text if it holds a PEM block of `kind` ("CERTIFICATE",
// "PRIVATE KEY": the latter also matches "EC PRIVATE KEY" and "RSA PRIVATE
// KEY"). gRPC would otherwise take anything and fail later, at the first
// handshake, with an error that names neither the file nor the flag.
absl::StatusOr<std::string> ReadPem(const std::string& path, const char* kind, const char* what) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat("cannot read the TLS ", what, " ", path));
  }
  if (!absl::StrContains(*text, "-----BEGIN ") || !absl::StrContains(*text, kind)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TLS ", what, " ", path, " holds no PEM ", kind));
  }
  return text;
}

}  // namespace

std::shared_ptr<grpc::Channel> OpenChannel(const std::string& address,
                                           std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: it is also the connect timeout,
  // and a handshake on a loaded machine can take longer than a backoff step.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  return grpc::CreateCustomChannel(address, credentials, args);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const std::string& tls_ca_file) {
  if (tls_ca_file.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  KVF_ASSIGN_OR_RETURN(options.pem_root_certs, ReadPem(tls_ca_file, "CERTIFICATE", "CA file"));
  return grpc::SslCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const std::string& tls_cert_file, const std::string& tls_key_file) {
  if (tls_cert_file.empty() && tls_key_file.empty()) return grpc::InsecureServerCredentials();
  if (tls_cert_file.empty() || tls_key_file.empty()) {
    return absl::InvalidArgumentError("a TLS certificate and its key go together");
  }
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  KVF_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(tls_cert_file, "CERTIFICATE", "certificate"));
  KVF_ASSIGN_OR_RETURN(pair.private_key, ReadPem(tls_key_file, "PRIVATE KEY", "key"));
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back(std::move(pair));
  return grpc::SslServerCredentials(options);
}

}  // namespace kvf
