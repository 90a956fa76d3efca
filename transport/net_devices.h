// Which network devices UCX may use so that its listeners stay on one
// address.
//
// UCX's TCP transport (with worker-address connections, as kvfabric uses it)
// opens a listening socket on every network device in UCX_NET_DEVICES, by
// default all of them, so an agent started on 127.0.0.1 would also listen on
// the external interface. NetDevicesForHost maps the address a process means
// to listen on to the UCX_NET_DEVICES value (TransportConfig::net_devices)
// that keeps UCX's TCP on the interface(s) owning it:
//   "127.0.0.1", "::1", "localhost"  -> the loopback interface ("lo")
//   "192.0.2.2"                      -> the interface that has it ("eth0")
//   "", "0.0.0.0", "::", "*"         -> "" (every device: UCX's choice)
// RDMA ports (/sys/class/infiniband/<dev>/ports/<n>, "mlx5_0:1") are always
// kept: verbs transports open no TCP listener, and leaving them out would
// silently turn RDMA off. Shared memory, self and CUDA transports are not
// network devices, so UCX_NET_DEVICES does not touch them.
//
// Thread-safe (no state).
#ifndef KVF_TRANSPORT_NET_DEVICES_H_
#define KVF_TRANSPORT_NET_DEVICES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvf {

// One address of a network interface, as getifaddrs(3) reports it.
struct InterfaceAddress {
  std::string name;       // "eth0" (an IPv4 alias label "eth0:1" is reported as "eth0")
  std::string address;    // numeric: "192.0.2.2", "fd00::2"
  bool loopback = false;  // IFF_LOOPBACK
};

// This machine's (this network namespace's) interface addresses, IPv4 and
// IPv6. INTERNAL if getifaddrs fails.
absl::StatusOr<std::vector<InterfaceAddress>> LocalInterfaceAddresses();

// This machine's RDMA ports in UCX_NET_DEVICES syntax ("mlx5_0:1"); empty
// where there are none.
std::vector<std::string> LocalRdmaPorts();

// The UCX_NET_DEVICES value for listening on `host`, from the given
// interfaces and RDMA ports: the names of the interfaces owning `host`
// (sorted, each once), then `rdma_ports`. `host` is an IPv4 or IPv6 literal
// (brackets allowed, "%scope" names the interface of a link-local address),
// "localhost", or a wildcard ("", "0.0.0.0", "::", "*": returns ""). Any
// 127.0.0.0/8 address and ::1 map to the loopback interface(s).
// INVALID_ARGUMENT for a host that is none of these, NOT_FOUND when no
// interface owns the address.
absl::StatusOr<std::string> NetDevicesFor(const std::string& host,
                                          const std::vector<InterfaceAddress>& interfaces,
                                          const std::vector<std::string>& rdma_ports);

// The same for this machine; `host` may also be a name, resolved with
// getaddrinfo (the interfaces owning any of its addresses).
absl::StatusOr<std::string> NetDevicesForHost(const std::string& host);

}  // namespace kvf

#endif  // KVF_TRANSPORT_NET_DEVICES_H_
