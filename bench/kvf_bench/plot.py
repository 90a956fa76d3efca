#!/usr/bin/python3
"""Throughput vs block size: kvfabric, Redis and raw ucx_perftest.

Runs kvf-bench once per block size (each run measures all three in the same
process: kvfabric, the redis-server it starts, ucx_perftest) and plots GB/s.

  bench/kvf_bench/plot.py --bench build/release/bench/kvf_bench/kvf-bench \
      [--op get] [--sizes 4K,16K,64K,256K,1M] [--seconds 3] [--local 3] \
      [--out docs/img/kvf-bench-throughput.png] [--json-dir DIR] [-- extra kvf-bench flags]

--replot DIR re-draws from the JSON files a previous run left in DIR.
Needs python3-matplotlib (Debian; apt-get install python3-matplotlib — not in tools/setup-deps.sh,
docs only). Prints a markdown table of the numbers too.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().removesuffix("iB").removesuffix("B")
    return int(float(s[:-1]) * mult[s[-1]]) if s[-1] in mult else int(s)


def human(n):
    for unit, m in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= m and n % m == 0:
            return f"{n // m} {unit}"
    return f"{n} B"


def run(args, size, json_dir):
    out = os.path.join(json_dir, f"{args.op}-{size}.json")
    cmd = [args.bench, "--local", str(args.local), args.op, "--block_bytes", str(size),
           "--seconds", str(args.seconds), "--json", out] + args.extra
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    return out


def load(path):
    with open(path) as f:
        j = json.load(f)
    op = j["mode"]
    return {
        "size": j["block_bytes"],
        "kvfabric": j.get("kvfabric", {}).get(op, {}).get("gbps", 0.0),
        "redis": j.get("redis", {}).get(op, {}).get("gbps", 0.0),
        "perftest": j.get("perftest_gbps", 0.0),
        "load": j.get("load_avg_1m", -1),
        "op": op,
        "connections": j["clients"] * j["threads"],
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bench", default="build/release/bench/kvf_bench/kvf-bench")
    p.add_argument("--op", default="get", choices=["get", "put"])
    p.add_argument("--sizes", default="4K,16K,64K,256K,1M")
    p.add_argument("--seconds", default="3")
    p.add_argument("--local", default="3")
    p.add_argument("--out", default="docs/img/kvf-bench-throughput.png")
    p.add_argument("--json-dir", default="")
    p.add_argument("--replot", default="")
    p.add_argument("extra", nargs="*", help="extra kvf-bench flags (after --)")
    args = p.parse_args()

    if args.replot:
        rows = [load(f) for f in glob.glob(os.path.join(args.replot, "*.json"))]
    else:
        json_dir = args.json_dir or tempfile.mkdtemp(prefix="kvf-bench-plot-")
        os.makedirs(json_dir, exist_ok=True)
        rows = [load(run(args, parse_size(s), json_dir)) for s in args.sizes.split(",")]
    rows = sorted((r for r in rows if r["op"] == args.op), key=lambda r: r["size"])
    if not rows:
        sys.exit("no results")

    print(f"| block | kvfabric GB/s | Redis GB/s | kvfabric / Redis | ucx_perftest GB/s | load (1 min) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['kvfabric'] / r['redis']:.2f}x" if r["redis"] else "-"
        print(f"| {human(r['size'])} | {r['kvfabric']:.2f} | {r['redis']:.2f} | {ratio} | "
              f"{r['perftest']:.2f} | {r['load']:.1f} |")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["size"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(xs, [r["kvfabric"] for r in rows], "o-", label="kvfabric (kvf-bench)")
    ax.plot(xs, [r["redis"] for r in rows], "s-", label="Redis (same run, TCP loopback)")
    if any(r["perftest"] for r in rows):
        ax.plot(xs, [r["perftest"] for r in rows], "^--", label="ucx_perftest (raw UCX, 1 pair)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # ucx_perftest is an order of magnitude above both stores
    ax.set_xticks(xs, [human(x) for x in xs])
    ax.set_xlabel("block size")
    ax.set_ylabel(f"{args.op} throughput (GB/s)")
    ax.set_title(f"{args.op} throughput vs block size, {rows[0]['connections']} concurrent clients")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
