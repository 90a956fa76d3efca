#include "bench/common/perftest.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tools/launch/spawn.h"

namespace kvf::bench {

PerftestResult RunPerftest(const PerftestOptions& o) {
  PerftestResult result;
  // A port per call: a server from an earlier call that has not exited yet
  // must not answer this one's client.
  static int port = 20000 + getpid() % 20000;
  ++port;
  launch::SpawnOptions server;
  server.argv = {"ucx_perftest", "-p", std::to_string(port)};
  server.search_path = true;
  server.set_env = {{"UCX_TLS", o.tls}};
  server.in = server.out = server.err = launch::Stdio::Null();
  server.netns = o.server_netns;
  absl::StatusOr<launch::ChildProcess> child = launch::ChildProcess::Spawn(server);
  if (!child.ok()) {
    result.error = absl::StrCat("ucx_perftest server: ", child.status().ToString());
    return result;
  }
  const std::string client =
      absl::StrCat("UCX_TLS=", o.tls, " ucx_perftest ", o.server_address, " -p ", port, " -t ",
                   o.test, " -s ", o.size, " -n ", o.iters, " -w ", std::min(o.iters / 10, 1000),
                   o.outstanding > 1 ? absl::StrCat(" -O ", o.outstanding) : "", " -f 2>&1");
  // The server needs a moment to listen: retry the client until it connects.
  std::string out;
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (child->Poll().has_value()) {
      result.error = "ucx_perftest server exited before the client connected";
      return result;
    }
    FILE* f = popen(client.c_str(), "r");
    if (f == nullptr) {
      result.error = "popen ucx_perftest";
      return result;
    }
    out.clear();
    char buf[512];
    while (fgets(buf, sizeof(buf), f) != nullptr) out += buf;
    if (pclose(f) == 0) {
      std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipWhitespace());
      std::vector<std::string> v =
          absl::StrSplit(lines.empty() ? "" : lines.back(), ' ', absl::SkipWhitespace());
      double lat = 0, bw = 0;
      if (v.size() >= 8 && absl::SimpleAtod(v[2], &lat) && absl::SimpleAtod(v[5], &bw)) {
        result.mbps = bw * 1.048576;  // perftest's MB is MiB
        result.latency_us = lat;
      } else {
        result.error = absl::StrCat("unexpected ucx_perftest output: ", out);
      }
      child->Wait(absl::Seconds(5));  // the server exits after one test
      return result;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  result.error = absl::StrCat("ucx_perftest client never connected to ", o.server_address, ":",
                              port, ": ", out);
  return result;  // ~ChildProcess kills the server
}

std::pair<double, double> Perftest(const std::string& tls, const std::string& test, size_t size,
                                   int outstanding, int iters) {
  PerftestOptions o;
  o.tls = tls;
  o.test = test;
  o.size = size;
  o.outstanding = outstanding;
  o.iters = iters;
  const PerftestResult r = RunPerftest(o);
  return {r.mbps, r.latency_us};
}

}  // namespace kvf::bench
