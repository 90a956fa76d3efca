// Reading one value from an agent's /metrics page in tests.
#ifndef KVF_TESTS_CLUSTER_SCRAPE_H_
#define KVF_TESTS_CLUSTER_SCRAPE_H_

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "httplib.h"

namespace kvf::testing {

// The value of an unlabelled series `name` at http://`http`/metrics; -1 when
// the page or the series is missing.
inline double Metric(const std::string& http, const std::string& name) {
  const size_t colon = http.rfind(':');
  httplib::Client cli(http.substr(0, colon), std::stoi(http.substr(colon + 1)));
  auto res = cli.Get("/metrics");
  if (!res || res->status != 200) return -1;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (absl::StartsWith(line, name + " ")) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &v)) return v;
    }
  }
  return -1;
}

}  // namespace kvf::testing

#endif  // KVF_TESTS_CLUSTER_SCRAPE_H_
