#include "transport/net_devices.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvf {
namespace {

// A parsed IP address: 4 or 16 bytes, and a link-local scope if one was given.
struct Ip {
  int family = AF_UNSPEC;
  unsigned char bytes[16] = {};
  std::string scope;

  bool operator==(const Ip& o) const {
    return family == o.family && std::memcmp(bytes, o.bytes, family == AF_INET ? 4 : 16) == 0;
  }
  bool loopback() const {
    static constexpr unsigned char kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                                      0, 0, 0, 0, 0, 0, 0, 1};
    return family == AF_INET ? bytes[0] == 127
                             : std::memcmp(bytes, kV6Loopback, sizeof(kV6Loopback)) == 0;
  }
};

std::optional<Ip> ParseIp(std::string s) {
  if (s.size() > 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  Ip ip;
  if (const size_t pct = s.find('%'); pct != std::string::npos) {
    ip.scope = s.substr(pct + 1);
    s.resize(pct);
  }
  if (inet_pton(AF_INET, s.c_str(), ip.bytes) == 1) {
    ip.family = AF_INET;
    return ip;
  }
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes) != 1) return std::nullopt;
  ip.family = AF_INET6;
  // ::ffff:a.b.c.d is the IPv4 address a.b.c.d.
  static constexpr unsigned char kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(ip.bytes, kV4Mapped, sizeof(kV4Mapped)) == 0) {
    std::memmove(ip.bytes, ip.bytes + 12, 4);
    std::memset(ip.bytes + 4, 0, 12);
    ip.family = AF_INET;
  }
  return ip;
}

bool IsWildcard(const std::string& host) {
  return host.empty() || host == "*" || host == "0.0.0.0" || host == "::" || host == "[::]";
}

bool IsLocalhost(const std::string& host) { return absl::AsciiStrToLower(host) == "localhost"; }

// Appends to `names` the interfaces owning `ip`.
absl::Status AddOwners(const Ip& ip, const std::string& text,
                       const std::vector<InterfaceAddress>& interfaces,
                       std::vector<std::string>* names) {
  const size_t before = names->size();
  for (const InterfaceAddress& i : interfaces) {
    bool owns = false;
    if (ip.loopback()) {
      owns = i.loopback;
    } else if (!ip.scope.empty()) {
      owns = i.name == ip.scope;
    } else {
      std::optional<Ip> other = ParseIp(i.address);
      owns = other && *other == ip;
    }
    if (owns) names->push_back(i.name);
  }
  if (names->size() == before) {
    return absl::NotFoundError(
        absl::StrCat("no network interface of this host has address ", text,
                     ip.loopback() ? " (no loopback interface)" : "",
                     "; listen on an address of this host, or on 0.0.0.0 for every interface"));
  }
  return absl::OkStatus();
}

std::string Join(std::vector<std::string> names, const std::vector<std::string>& rdma_ports) {
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  names.insert(names.end(), rdma_ports.begin(), rdma_ports.end());
  return absl::StrJoin(names, ",");
}

}  // namespace

absl::StatusOr<std::vector<InterfaceAddress>> LocalInterfaceAddresses() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    return absl::InternalError(absl::StrCat("getifaddrs: ", std::strerror(errno)));
  }
  std::vector<InterfaceAddress> out;
  for (const ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_name == nullptr) continue;
    const int family = a->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    char text[INET6_ADDRSTRLEN] = {};
    const void* raw =
        family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr)
            : static_cast<const void*>(
                  &reinterpret_cast<const sockaddr_in6*>(a->ifa_addr)->sin6_addr);
    if (inet_ntop(family, raw, text, sizeof(text)) == nullptr) continue;
    InterfaceAddress i;
    i.name = a->ifa_name;
    // IPv4 aliases carry labels ("eth0:1"); UCX knows the device ("eth0").
    if (const size_t colon = i.name.find(':'); colon != std::string::npos) i.name.resize(colon);
    i.address = text;
    i.loopback = (a->ifa_flags & IFF_LOOPBACK) != 0;
    out.push_back(std::move(i));
  }
  freeifaddrs(list);
  return out;
}

std::vector<std::string> LocalRdmaPorts() {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  std::error_code ec;
  for (const fs::directory_entry& dev : fs::directory_iterator("/sys/class/infiniband", ec)) {
    std::error_code port_ec;
    for (const fs::directory_entry& port : fs::directory_iterator(dev.path() / "ports", port_ec)) {
      out.push_back(
          absl::StrCat(dev.path().filename().string(), ":", port.path().filename().string()));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::string> NetDevicesFor(const std::string& host,
                                          const std::vector<InterfaceAddress>& interfaces,
                                          const std::vector<std::string>& rdma_ports) {
  if (IsWildcard(host)) return std::string();
  std::optional<Ip> ip = IsLocalhost(host) ? ParseIp("127.0.0.1") : ParseIp(host);
  if (!ip) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", host, "' is not an IP address, localhost or a wildcard"));
  }
  std::vector<std::string> names;
  if (absl::Status s = AddOwners(*ip, host, interfaces, &names); !s.ok()) return s;
  return Join(std::move(names), rdma_ports);
}

absl::StatusOr<std::string> NetDevicesForHost(const std::string& host) {
  if (IsWildcard(host)) return std::string();
  absl::StatusOr<std::vector<InterfaceAddress>> interfaces = LocalInterfaceAddresses();
  if (!interfaces.ok()) return interfaces.status();
  if (IsLocalhost(host) || ParseIp(host)) {
    return NetDevicesFor(host, *interfaces, LocalRdmaPorts());
  }
  // A host name: the interfaces owning any of its addresses.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc)));
  }
  std::vector<std::string> names;
  std::vector<std::string> addresses;
  for (const addrinfo* r = res; r != nullptr; r = r->ai_next) {
    char text[NI_MAXHOST] = {};
    if (getnameinfo(r->ai_addr, r->ai_addrlen, text, sizeof(text), nullptr, 0, NI_NUMERICHOST) !=
        0) {
      continue;
    }
    addresses.push_back(text);
    if (std::optional<Ip> ip = ParseIp(text)) {
      (void)AddOwners(*ip, text, *interfaces, &names);  // another address may be local
    }
  }
  freeaddrinfo(res);
  if (names.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no network interface of this host has an address of '", host, "' (",
                     absl::StrJoin(addresses, ", "),
                     "); listen on an address of this host, or on 0.0.0.0 for every interface"));
  }
  return Join(std::move(names), LocalRdmaPorts());
}

}  // namespace kvf
