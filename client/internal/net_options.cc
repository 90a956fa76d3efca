#include "client/internal/net_options.h"

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "transport/net_devices.h"

namespace kvf::client_internal {

absl::StatusOr<std::string> ClientNetDevices(const ClientOptions& options) {
  if (const char* env = std::getenv("UCX_NET_DEVICES"); env != nullptr && *env != '\0') {
    return std::string();
  }
  std::string host = options.data_listen_host;
  if (host.empty()) {
    // The (first) coordinator's host: "127.0.0.1:7700", "[::1]:7700",
    // "localhost:7700"; several coordinators are separated by commas.
    const std::string c = options.coordinator.substr(0, options.coordinator.find(','));
    const size_t colon = c.rfind(':');
    std::string coordinator_host = c.substr(0, colon == std::string::npos ? c.size() : colon);
    if (coordinator_host.size() >= 2 && coordinator_host.front() == '[') {
      coordinator_host = coordinator_host.substr(1, coordinator_host.size() - 2);
    }
    if (coordinator_host == "localhost" || coordinator_host == "::1" ||
        coordinator_host.rfind("127.", 0) == 0) {
      host = coordinator_host;
    }
  }
  if (host.empty()) return std::string();
  absl::StatusOr<std::string> devices = NetDevicesForHost(host);
  if (!devices.ok()) {
    return absl::Status(devices.status().code(),
                        absl::StrCat("kvf client: data listen host ", host, ": ",
                                     std::string(devices.status().message())));
  }
  return devices;
}


}  // namespace kvf::client_internal
