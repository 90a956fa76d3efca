#include "proto/auth.h"

#include <string_view>

#include "common/credentials.h"

namespace kvf {
namespace {

// Compares without an early exit, so timing does not reveal a token prefix.
bool SameSecret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

constexpr std::string_view kBearer = "Bearer ";

// Whether any secret the call presents (in either header) passes `accept`.
template <typename Accept>
bool AnyPresented(const grpc::ServerContext& ctx, Accept accept) {
  const auto& md = ctx.client_metadata();
  for (auto it = md.find("authorization"); it != md.end() && it->first == "authorization"; ++it) {
    std::string_view v(it->second.data(), it->second.size());
    if (v.substr(0, kBearer.size()) == kBearer && accept(v.substr(kBearer.size()))) return true;
  }
  for (auto it = md.find("x-kvf-token"); it != md.end() && it->first == "x-kvf-token"; ++it) {
    if (accept(std::string_view(it->second.data(), it->second.size()))) return true;
  }
  return false;
}

}  // namespace

bool HasClusterToken(const grpc::ServerContext& ctx, const std::string& token) {
  if (token.empty()) return false;
  return AnyPresented(ctx, [&](std::string_view v) { return SameSecret(v, token); });
}

bool HasCredential(const grpc::ServerContext& ctx, const std::string& token) {
  return AnyPresented(ctx, [&](std::string_view v) { return VerifyCredential(v, token).ok(); });
}

bool HasClusterToken(const grpc::ServerContext& ctx, std::span<const std::string> tokens) {
  for (const std::string& t : tokens) {
    if (HasClusterToken(ctx, t)) return true;
  }
  return false;
}

bool HasCredential(const grpc::ServerContext& ctx, std::span<const std::string> tokens) {
  return AnyPresented(ctx, [&](std::string_view v) { return VerifyCredential(v, tokens).ok(); });
}

void AddClusterToken(grpc::ClientContext* ctx, const std::string& token) {
  ctx->AddMetadata("authorization", "Bearer " + token);
}

}  // namespace kvf
