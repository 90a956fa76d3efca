"""python3 -m kvfabric {status,smoke}: the cluster from Python (docs/python.md).

status  the cluster map: every node's id, state, failure domain and capacity
smoke   put, lookup, get (byte-compared) and remove a few blocks in a scratch
        namespace; exit status 1 on any mismatch or failed block
Both connect to --coordinator / KVF_COORDINATOR with --token-file,
KVF_TOKEN or KVF_TOKEN_FILE.
"""

import argparse
import os
import sys

import kvfabric


def _connect(args):
    env = dict(os.environ)
    if args.coordinator:
        env["KVF_COORDINATOR"] = args.coordinator
    if args.token_file:
        env.pop("KVF_TOKEN", None)
        env["KVF_TOKEN_FILE"] = args.token_file
    return kvfabric.Client.from_env(env)


def status(args):
    c = _connect(args)
    nodes = c.nodes()
    print(f"map epoch {c.map_epoch}, {len(nodes)} nodes")
    print(f"{'node':>5}  {'state':<9} {'domain':<10} {'capacity':>12}  control")
    for n in nodes:
        print(f"{n['id']:>5}  {n['state']:<9} {n['domain']:<10} {n['capacity_bytes']:>12}  "
              f"{n['control_address']}")
    return 0


def smoke(args):
    c = _connect(args)
    layout = kvfabric.KvLayout(num_layers=2, num_kv_heads=2, head_dim=64, block_tokens=16)
    ns = c.register_namespace(f"kvfabric-smoke-{os.getpid()}", layout)
    tokens = list(range(args.blocks * layout.block_tokens))
    chain = ns.hash_tokens(tokens)
    size = ns.block_bytes()
    blocks = [bytes([(i * 7 + j) % 251 for j in range(256)]) * (size // 256) for i in range(len(chain))]
    failures = 0
    put = c.batch_put(ns, chain, 0, blocks)
    failures += sum(not r.ok for r in put)
    hit = c.lookup(ns, chain).prefix
    out = [bytearray(size) for _ in chain]
    got = c.batch_get(ns, chain, 0, out)
    for i, r in enumerate(got):
        if not r.ok or bytes(out[i]) != blocks[i]:
            print(f"block {i}: {r!r}, bytes {'equal' if bytes(out[i]) == blocks[i] else 'differ'}")
            failures += 1
    removed = c.remove(ns, chain)
    print(f"smoke: put {sum(r.ok for r in put)}/{len(chain)}, lookup prefix {hit}, "
          f"get {sum(r.ok for r in got)}/{len(chain)} byte-identical, "
          f"removed {sum(r.ok for r in removed)}; {'OK' if failures == 0 else 'FAILED'}")
    return 1 if failures or hit != len(chain) else 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m kvfabric", description=__doc__.split("\n")[0])
    p.add_argument("--coordinator", help="host:port (default $KVF_COORDINATOR)")
    p.add_argument("--token-file", help="default $KVF_TOKEN, else $KVF_TOKEN_FILE")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="the cluster map")
    s = sub.add_parser("smoke", help="put/lookup/get/remove a few blocks")
    s.add_argument("--blocks", type=int, default=8)
    args = p.parse_args(argv)
    try:
        return {"status": status, "smoke": smoke}[args.command](args)
    except kvfabric.Error as e:
        print(f"kvfabric: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
