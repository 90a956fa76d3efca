"""kvfabric.bench runs end to end (its numbers are for docs/benchmarks.md,
not asserted here): both loops move blocks and report no failures."""

import json
import subprocess
import sys


def test_bench_prints_a_row_per_op_and_caller_count(cluster):
    r = subprocess.run([sys.executable, "-m", "kvfabric.bench", "--seconds", "0.3", "--callers",
                        "1,2", "--batch", "4", "--block-kib", "64", "--repeat", "1", "--json"],
                       env=cluster.env(), text=True, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads(r.stdout.strip().splitlines()[-1])["rows"]
    assert [(x["op"], x["callers"]) for x in rows] == [("put", 1), ("put", 2), ("get", 1), ("get", 2)]
    for x in rows:
        assert x["python_gbps"] > 0 and x["cxx_gbps"] > 0, x
        assert x["python_failed"] == 0 and x["cxx_failed"] == 0, x
        assert x["block_bytes"] == 64 * 1024
