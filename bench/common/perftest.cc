#include "bench/common/perftest.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace kvf::bench {

std::pair<double, double> Perftest(const std::string& tls, const std::string& test, size_t size,
                                   int outstanding, int iters) {
  static int port = 20000 + getpid() % 20000;
  ++port;
  const std::string env = absl::StrCat("UCX_TLS=", tls, " ");
  const std::string server = absl::StrCat(env, "ucx_perftest -p ", port, " >/dev/null 2>&1 &");
  if (std::system(server.c_str()) != 0) return {0, 0};
  const std::string client =
      absl::StrCat(env, "ucx_perftest 127.0.0.1 -p ", port, " -t ", test, " -s ", size, " -n ",
                   iters, " -w ", std::min(iters / 10, 1000), outstanding > 1 ? absl::StrCat(" -O ", outstanding) : "",
                   " -f 2>/dev/null");
  // The server needs a moment to listen: retry the client until it connects.
  for (int attempt = 0; attempt < 50; ++attempt) {
    FILE* f = popen(client.c_str(), "r");
    if (f == nullptr) return {0, 0};
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof(buf), f) != nullptr) out += buf;
    if (pclose(f) == 0) {
      std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipWhitespace());
      std::vector<std::string> v = absl::StrSplit(lines.back(), ' ', absl::SkipWhitespace());
      double lat = 0, bw = 0;
      if (v.size() >= 8 && absl::SimpleAtod(v[2], &lat) && absl::SimpleAtod(v[5], &bw)) {
        return {bw * 1.048576, lat};  // perftest's MB is MiB
      }
      return {0, 0};
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return {0, 0};
}

}  // namespace kvf::bench
