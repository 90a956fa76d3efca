// The C++ side of kvfabric.bench: the same batch get/put loop as the Python
// callers, run by C++ threads on the same Client, so the Python-vs-C++ ratio
// is measured in one process, one cluster, one run.
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "python/src/bindings.h"

namespace kvf::python {

void RegisterBench(py::module_& m) {
  m.def(
      "_cxx_batch_loop",
      [](Client& c, const Namespace& ns, const Chain& chain, const std::string& op, int callers,
         size_t batch, double seconds) {
        if (op != "get" && op != "put") ThrowStatus(absl::InvalidArgumentError("op is get or put"));
        if (callers <= 0 || batch == 0 || chain.keys.size() < batch * static_cast<size_t>(callers)) {
          ThrowStatus(absl::InvalidArgumentError(absl::StrCat(
              "need callers * batch <= len(chain): ", callers, " * ", batch, " > ", chain.keys.size())));
        }
        const size_t block = ns.BlockBytes();
        std::atomic<uint64_t> blocks_done{0}, failed{0};
        std::atomic<bool> stop{false};
        double elapsed = 0;
        {
          py::gil_scoped_release release;
          std::vector<std::thread> threads;
          const auto start = std::chrono::steady_clock::now();
          for (int t = 0; t < callers; ++t) {
            threads.emplace_back([&, t] {
              std::vector<std::byte> mem(batch * block, std::byte{static_cast<unsigned char>(t)});
              std::vector<BlockBuffer> dst(batch);
              std::vector<ConstBlockBuffer> src(batch);
              for (size_t i = 0; i < batch; ++i) {
                dst[i] = {mem.data() + i * block, block};
                src[i] = {mem.data() + i * block, block};
              }
              const size_t begin = static_cast<size_t>(t) * batch;
              PutOptions mutable_put;  // a new version each time: bytes move
              mutable_put.is_mutable = true;
              while (!stop.load(std::memory_order_relaxed)) {
                absl::StatusOr<BatchResult> r = op == "get" ? c.BatchGet(ns, chain.keys, begin, dst)
                                                            : c.BatchPut(ns, chain.keys, begin, src, mutable_put);
                const size_t ok = r.ok() ? r->ok_count() : 0;
                blocks_done += ok;
                failed += batch - ok;
              }
            });
          }
          std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
          stop = true;
          for (auto& th : threads) th.join();
          elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        }
        py::dict out;
        out["blocks"] = blocks_done.load();
        out["failed"] = failed.load();
        out["seconds"] = elapsed;
        out["bytes"] = blocks_done.load() * block;
        return out;
      },
      py::arg("client"), py::arg("ns"), py::arg("chain"), py::arg("op"), py::arg("callers"),
      py::arg("batch"), py::arg("seconds"));
}

}  // namespace kvf::python
