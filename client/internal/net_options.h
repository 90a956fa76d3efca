// Where a client's UCX worker listens (ClientOptions::data_listen_host).
#ifndef KVF_CLIENT_INTERNAL_NET_OPTIONS_H_
#define KVF_CLIENT_INTERNAL_NET_OPTIONS_H_

#include <string>

#include "absl/status/statusor.h"
#include "client/client.h"

namespace kvf::client_internal {

// TransportConfig::net_devices for ClientOptions::data_listen_host: empty
// when $UCX_NET_DEVICES is set or nothing narrows it (every interface);
// loopback for a coordinator on loopback.
absl::StatusOr<std::string> ClientNetDevices(const ClientOptions& options);

}  // namespace kvf::client_internal

#endif  // KVF_CLIENT_INTERNAL_NET_OPTIONS_H_
