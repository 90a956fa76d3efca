"""The kvfabric Python package against a real local cluster (kvf-launch):
keys, put/get/lookup/exists/remove and their batch forms, buffers, errors,
sequences, and the `python -m kvfabric` entry."""

import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import kvfabric

LAYOUT = kvfabric.KvLayout(num_layers=2, num_kv_heads=2, head_dim=64, block_tokens=16)


@pytest.fixture(scope="module")
def client(cluster):
    return cluster.client()


def _ns(client, name):
    return client.register_namespace(f"pytest-{name}", LAYOUT)


def _block(ns, i):
    return (np.arange(ns.block_bytes(), dtype=np.uint32) * 2654435761 + i).astype(np.uint8)


# ---- keys ----

def test_hash_tokens_gives_the_cpp_golden_keys():
    # tests/common/block_hash_test.cc, GoldenValuesXxh3 / GoldenValuesSha256.
    assert kvfabric.hash_tokens(list(range(16)), 16)[0].hex() == "cd5245c316ff53362495622119a5f146"
    assert kvfabric.hash_tokens(range(16), 16, extra=b"x", parent=kvfabric.BlockKey(1, 2))[0].hex() \
        == "6be26b360966efff6b867799295ebbbf"
    assert kvfabric.hash_tokens(np.arange(16), 16, algorithm="sha256")[0].hex() \
        == "a395b2cf4edf8c3ad342638f2bd24dff"


def test_hash_tokens_chains_full_blocks_only():
    chain = kvfabric.hash_tokens(list(range(40)), 16)
    assert len(chain) == 2
    # Block 1 continues from block 0.
    assert kvfabric.hash_tokens(list(range(16, 32)), 16, parent=chain[0])[0] == chain[1]
    assert bytes(chain[0]) == bytes.fromhex(chain[0].hex())
    assert {chain[0], chain[0]} == {chain[0]}


def test_hash_tokens_rejects_bad_token_ids():
    with pytest.raises(kvfabric.InvalidArgumentError) as e:
        kvfabric.hash_tokens([1, -1], 1)
    assert e.value.code == "INVALID_ARGUMENT"
    with pytest.raises(kvfabric.InvalidArgumentError):
        kvfabric.hash_tokens([2**32], 1)
    with pytest.raises(kvfabric.InvalidArgumentError):
        kvfabric.hash_tokens([1, 2], 1, algorithm="md5")


def test_layout_is_validated():
    with pytest.raises(kvfabric.InvalidArgumentError):
        kvfabric.KvLayout(num_layers=0, num_kv_heads=1, head_dim=1, block_tokens=1)
    with pytest.raises(kvfabric.InvalidArgumentError):
        kvfabric.KvLayout(1, 1, 1, 1, dtype="int3")
    assert LAYOUT.bytes_per_block == 2 * 2 * 2 * 64 * 16 * 2


# ---- data ----

def test_batch_put_get_lookup_exists_remove(client):
    ns = _ns(client, "batch")
    chain = ns.hash_tokens(range(6 * 16))
    blocks = [_block(ns, i) for i in range(len(chain))]
    put = client.batch_put(ns, chain, 0, blocks[:4])
    assert [r.ok for r in put] == [True] * 4 and all(r.node > 0 for r in put)

    look = client.lookup(ns, chain)
    assert look.prefix == 4 and len(look.blocks) == 6
    assert look.blocks[0].size == ns.block_bytes() and look.blocks[0].nodes
    assert client.exists(ns, chain) == [True] * 4 + [False] * 2

    out = [np.empty(ns.block_bytes(), np.uint8) for _ in chain]
    got = client.batch_get(ns, chain, 0, out)
    assert [r.code for r in got] == ["OK"] * 4 + ["NOT_FOUND"] * 2
    for i in range(4):
        assert np.array_equal(out[i], blocks[i]) and got[i].size == ns.block_bytes()
    with pytest.raises(kvfabric.NotFoundError) as e:
        got[5].raise_for_status()
    assert e.value.code == "NOT_FOUND"

    removed = client.remove(ns, chain, 0, 6)
    assert [r.code for r in removed] == ["OK"] * 4 + ["NOT_FOUND"] * 2
    assert client.lookup(ns, chain).prefix == 0


def test_single_put_and_get_raise_on_errors(client):
    ns = _ns(client, "single")
    chain = ns.hash_tokens(range(32))
    version = client.put(ns, chain, 0, bytes(_block(ns, 0)))
    assert isinstance(version, tuple) and len(version) == 2
    out = bytearray(ns.block_bytes())
    r = client.get(ns, chain, 0, out)
    assert r.ok and bytes(out) == bytes(_block(ns, 0))
    with pytest.raises(kvfabric.NotFoundError):
        client.get(ns, chain, 1, out)
    with pytest.raises(kvfabric.InvalidArgumentError):  # wrong size
        client.put(ns, chain, 1, b"short")
    with pytest.raises(kvfabric.InvalidArgumentError):  # past the chain
        client.put(ns, chain, 5, bytes(_block(ns, 0)))


def test_buffers_of_every_kind(client):
    ns = _ns(client, "buffers")
    n = ns.block_bytes()
    chain = ns.hash_tokens(range(4 * 16))
    src = _block(ns, 3)
    sources = [bytes(src), bytearray(src), memoryview(bytes(src)), torch.from_numpy(src.copy())]
    assert all(r.ok for r in client.batch_put(ns, chain, 0, sources))
    outs = [bytearray(n), memoryview(bytearray(n)), np.empty(n, np.uint8),
            torch.empty(n // 2, dtype=torch.float16)]
    got = client.batch_get(ns, chain, 0, outs)
    assert all(r.ok for r in got), got
    assert bytes(outs[0]) == bytes(src) and bytes(outs[1]) == bytes(src)
    assert np.array_equal(outs[2], src)
    assert outs[3].numpy().tobytes() == bytes(src)


def test_bad_buffers_are_refused_not_used(client):
    ns = _ns(client, "badbuf")
    n = ns.block_bytes()
    chain = ns.hash_tokens(range(16))
    with pytest.raises(kvfabric.InvalidArgumentError):  # read-only destination
        client.batch_get(ns, chain, 0, [bytes(n)])
    with pytest.raises(kvfabric.InvalidArgumentError):  # not contiguous
        client.batch_put(ns, chain, 0, [np.zeros(2 * n, np.uint8)[::2]])
    with pytest.raises(kvfabric.InvalidArgumentError):
        client.batch_put(ns, chain, 0, [object()])
    with pytest.raises(kvfabric.InvalidArgumentError):  # a non-contiguous tensor
        client.batch_put(ns, chain, 0, [torch.zeros(2, n // 2, dtype=torch.uint8).t()])


def test_calls_from_many_threads_share_one_client(client):
    ns = _ns(client, "threads")
    chain = ns.hash_tokens(range(8 * 16 * 16))
    errors = []

    def worker(t):
        try:
            mine = [_block(ns, t * 16 + i) for i in range(16)]
            assert all(r.ok for r in client.batch_put(ns, chain, t * 16, mine))
            out = [np.empty(ns.block_bytes(), np.uint8) for _ in range(16)]
            assert all(r.ok for r in client.batch_get(ns, chain, t * 16, out))
            assert all(np.array_equal(a, b) for a, b in zip(out, mine))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


def test_wrong_token_is_unauthenticated(cluster):
    with pytest.raises(kvfabric.UnauthenticatedError) as e:
        kvfabric.Client(cluster.coordinator, "not-the-token")
    assert e.value.code == "UNAUTHENTICATED"


def test_nodes_and_epoch(client, cluster):
    nodes = client.nodes()
    assert sorted(n["id"] for n in nodes) == sorted(a.node for a in cluster.agents)
    assert all(n["state"] == "active" for n in nodes) and client.map_epoch > 0


def test_sequences_append_read_write(client):
    ns = _ns(client, "seq")
    seq = client.open_sequence(ns, "request-42")
    assert seq.length == 0
    blocks = [_block(ns, i) for i in range(3)]
    assert all(r.ok for r in seq.append(blocks))
    assert seq.length == 3
    v = seq.write(1, _block(ns, 9))
    out = [np.empty(ns.block_bytes(), np.uint8) for _ in range(3)]
    assert all(r.ok for r in seq.read(0, 3, out))
    assert np.array_equal(out[1], _block(ns, 9)) and seq.version(1) == v
    reader = client.open_sequence(ns, "request-42")
    assert reader.length == 3


# ---- python -m kvfabric ----

def test_module_entry_status_and_smoke(cluster):
    env = cluster.env()
    st = subprocess.run([sys.executable, "-m", "kvfabric", "status"], env=env, text=True,
                        capture_output=True, timeout=60)
    assert st.returncode == 0, st.stderr
    assert f"{len(cluster.agents)} nodes" in st.stdout and "active" in st.stdout
    sm = subprocess.run([sys.executable, "-m", "kvfabric", "smoke"], env=env, text=True,
                        capture_output=True, timeout=60)
    assert sm.returncode == 0, sm.stdout + sm.stderr
    assert "OK" in sm.stdout


def test_module_entry_reports_a_missing_coordinator():
    r = subprocess.run([sys.executable, "-m", "kvfabric", "status"], env={"PATH": "/usr/bin",
                       "PYTHONPATH": ":".join(sys.path)}, text=True, capture_output=True,
                       timeout=60)
    assert r.returncode == 1 and "KVF_COORDINATOR" in r.stderr


def test_the_gil_is_released_while_a_call_waits():
    """A Client connecting to a port that accepts TCP but never speaks
    HTTP/2 waits for its rpc_timeout; meanwhile another Python thread must
    run (it could not if the call held the GIL)."""
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    address = "127.0.0.1:%d" % silent.getsockname()[1]
    spins = [0]
    waiting = threading.Event()

    def connect():
        waiting.set()
        with pytest.raises(kvfabric.Error):
            kvfabric.Client(address, "t", rpc_timeout=1.5)

    t = threading.Thread(target=connect)
    t.start()
    waiting.wait()
    while t.is_alive():
        spins[0] += 1
    t.join()
    silent.close()
    # Held GIL: the loop could only run in the interpreter's switch
    # intervals (5 ms) around the call: a few hundred spins at most.
    assert spins[0] > 100000, spins[0]
