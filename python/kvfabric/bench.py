"""python3 -m kvfabric.bench: batch get/put of 256 KiB blocks through the
Python API against the C++ client in the same run (docs/benchmarks.md).

Both sides use one Client, one namespace and the same blocks: `callers`
Python threads each call batch_get/batch_put on their own `batch` blocks in a
loop; the same number of C++ threads run the same loop inside the module
(_kvfabric._cxx_batch_loop). Puts are mutable (each one stores a new version:
re-putting an immutable block is a no-op that would move no bytes). Each row
is the median of --repeat runs of each side, the side that goes first
alternating, so drift on a busy machine hits both. Prints a table and, with
--json, one JSON object. Connects like `python3 -m kvfabric` (KVF_COORDINATOR,
KVF_TOKEN / KVF_TOKEN_FILE); `kvf-launch local -- python3 -m kvfabric.bench`
runs it on a fresh local cluster.
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time

import numpy as np

import kvfabric
from kvfabric import _kvfabric


def python_loop(client, ns, chain, op, callers, batch, seconds):
    size = ns.block_bytes()
    stop = threading.Event()
    done = [0] * callers
    failed = [0] * callers

    def caller(t):
        bufs = [np.full(size, t % 251, np.uint8) for _ in range(batch)]
        begin = t * batch
        while not stop.is_set():
            if op == "get":
                results = client.batch_get(ns, chain, begin, bufs)
            else:
                results = client.batch_put(ns, chain, begin, bufs, mutable=True)
            ok = sum(r.ok for r in results)
            done[t] += ok
            failed[t] += batch - ok

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(callers)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    time.sleep(seconds)
    stop.set()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    return {"blocks": sum(done), "failed": sum(failed), "seconds": elapsed,
            "bytes": sum(done) * size}


def run(client, *, block_kib=256, callers=(1, 4, 16), batch=16, seconds=3.0, ops=("put", "get"),
        repeat=1):
    # Layout of block_kib KiB blocks: 2 layers x 8 heads x 128 dims x fp16 x
    # 2 (K,V) = 8 KiB per token, so block_kib / 8 tokens.
    tokens = max(1, block_kib // 8)
    layout = kvfabric.KvLayout(num_layers=2, num_kv_heads=8, head_dim=128, block_tokens=tokens)
    ns = client.register_namespace(f"kvfabric-bench-{os.getpid()}", layout)
    chain = ns.hash_tokens(np.arange(max(callers) * batch * tokens) % 50000)
    # Fill the cluster once so gets hit.
    filler = [np.zeros(ns.block_bytes(), np.uint8) for _ in range(batch)]
    for b in range(0, len(chain), batch):
        for r in client.batch_put(ns, chain, b, filler[: min(batch, len(chain) - b)], mutable=True):
            r.raise_for_status()
    rows = []
    for op in ops:
        for n in callers:
            # Alternate which side runs first, so drift on a busy machine
            # (other processes, the agents' own state) hits both alike.
            pys, cxxs = [], []
            for rep in range(repeat):
                pair = [lambda: pys.append(python_loop(client, ns, chain, op, n, batch, seconds)),
                        lambda: cxxs.append(_kvfabric._cxx_batch_loop(client, ns, chain, op, n,
                                                                      batch, seconds))]
                for side in (pair if rep % 2 == 0 else pair[::-1]):
                    side()
            py_gbs = statistics.median(r["bytes"] / r["seconds"] / 1e9 for r in pys)
            cxx_gbs = statistics.median(r["bytes"] / r["seconds"] / 1e9 for r in cxxs)
            rows.append({"op": op, "callers": n, "batch": batch, "block_bytes": ns.block_bytes(),
                         "repeat": repeat, "python_gbps": py_gbs, "cxx_gbps": cxx_gbs,
                         "ratio": py_gbs / cxx_gbs if cxx_gbs else 0.0,
                         "python_failed": sum(r["failed"] for r in pys),
                         "cxx_failed": sum(r["failed"] for r in cxxs)})
    client.remove(ns, chain)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m kvfabric.bench", description=__doc__.split("\n")[0])
    p.add_argument("--block-kib", type=int, default=256)
    p.add_argument("--callers", default="1,4,16", help="comma-separated caller counts")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each side per row, alternating which goes first; medians")
    p.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    args = p.parse_args(argv)
    client = kvfabric.Client.from_env()
    rows = run(client, block_kib=args.block_kib, callers=[int(x) for x in args.callers.split(",")],
               batch=args.batch, seconds=args.seconds, repeat=args.repeat)
    print(f"{'op':<4} {'callers':>7} {'batch':>5} {'python GB/s':>11} {'C++ GB/s':>9} {'py/C++':>7}")
    for r in rows:
        print(f"{r['op']:<4} {r['callers']:>7} {r['batch']:>5} {r['python_gbps']:>11.2f} "
              f"{r['cxx_gbps']:>9.2f} {r['ratio']:>7.2f}")
    if args.json:
        print(json.dumps({"benchmark": "kvfabric.bench", "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
