// The cluster token on gRPC calls: every Coordinator and AgentControl RPC
// carries it as 'authorization: Bearer <token>' (or 'x-kvf-token'); the two
// map-reading RPCs also take a tenant credential in its place.
#ifndef KVF_PROTO_AUTH_H_
#define KVF_PROTO_AUTH_H_

#include <span>
#include <string>

#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"

namespace kvf {

// True when `ctx` carries `token` in either accepted header. An empty
// `token` never matches. Compares in constant time.
bool HasClusterToken(const grpc::ServerContext& ctx, const std::string& token);

// True when `ctx` carries `token` or a tenant credential derived from it
// (common/credentials.h): what a client may read the cluster map with.
bool HasCredential(const grpc::ServerContext& ctx, const std::string& token);

// The same against any of `tokens` (the current and previous ones of a
// token file, common/credentials.h ParseTokenFile).
bool HasClusterToken(const grpc::ServerContext& ctx, std::span<const std::string> tokens);
bool HasCredential(const grpc::ServerContext& ctx, std::span<const std::string> tokens);

// Adds `token` to an outgoing call.
void AddClusterToken(grpc::ClientContext* ctx, const std::string& token);

}  // namespace kvf

#endif  // KVF_PROTO_AUTH_H_
