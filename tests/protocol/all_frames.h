// Every frame type of protocol/frames.h, for tests that treat them alike.
#ifndef KVF_TESTS_PROTOCOL_ALL_FRAMES_H_
#define KVF_TESTS_PROTOCOL_ALL_FRAMES_H_

#include <string>
#include <string_view>

#include "protocol/frames.h"

namespace kvf::protocol::testing {

template <typename... Ts>
struct TypeList {};

using AllFrames =
    TypeList<LookupRequest, LookupResponse, GetRequest, GetResponse, ReleaseRequest,
             ReserveRequest, ReserveResponse, CommitRequest, CommitResponse, RemoveRequest,
             RemoveResponse, InvalidateRequest, AckResponse, ErrorResponse,
             RegisterNamespaceRequest, HelloRequest, HelloResponse, ReadRequest, ReadResponse,
             WriteRequest, FetchRequest, StoreRequest>;

// Calls f.template operator()<T>() for each frame type T.
template <typename F, typename... Ts>
void ForEachFrame(F&& f, TypeList<Ts...>) {
  (f.template operator()<Ts>(), ...);
}
template <typename F>
void ForEachFrame(F&& f) {
  ForEachFrame(f, AllFrames{});
}

// Decodes `bytes` as T; when it decodes, it must re-encode to `bytes`.
// Returns false on a re-encode mismatch (a bug), true otherwise.
template <typename T>
bool DecodeReencodes(std::string_view bytes, bool* decoded = nullptr) {
  auto m = T::Decode(bytes);
  if (decoded != nullptr) *decoded = m.ok();
  if (!m.ok()) return true;
  auto again = m->Encode();
  return again.ok() && *again == bytes;
}

}  // namespace kvf::protocol::testing

#endif  // KVF_TESTS_PROTOCOL_ALL_FRAMES_H_
