"""kvfabric.vllm.KvfabricConnector driven the way vLLM drives it
(vllm_harness.FakeEngine), against real local clusters (conftest.py).

Small layouts (4 layers, 2 KV heads, head_dim 64, 16-token blocks, fp16) keep
it fast. Every test uses its own model id, hence its own namespace, so tests
sharing the module's cluster never see each other's blocks.
"""

import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

import kvfabric
from kvfabric.vllm import KVConnectorRole, KvfabricConnector
from kvfabric.vllm._metadata import pack_chain

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vllm_harness as vh  # noqa: E402

BS = 16
HARNESS = Path(__file__).resolve().parent / "vllm_harness.py"


def model_id(tag):
    return f"test-vllm-{tag}-{uuid.uuid4().hex[:8]}"


def extra_of(cluster, **more):
    extra = {"coordinator": cluster.coordinator, "token_file": cluster.token_file}
    extra.update(more)
    return extra


def tokens(n, seed):
    rnd = random.Random(seed)
    return [rnd.randrange(1, 50000) for _ in range(n)]


def engine(cluster, mid, kv_role="kv_both", **kw):
    extra = kw.pop("extra", {})
    return vh.FakeEngine(vh.make_config(mid, kv_role=kv_role, extra=extra_of(cluster, **extra)),
                         **kw)


def prefill(cluster, mid, prompts, **kw):
    """Engine A: prefills `prompts` ({id: tokens}), saving their full blocks;
    returns its results (each request's block bytes)."""
    a = engine(cluster, mid, **kw)
    try:
        for rid, t in prompts.items():
            a.add_request(rid, t)
        results = a.run()
        full = sum(len(t) // BS for t in prompts.values())
        assert a.worker_connector.worker.stats["saved"] == full
        return results
    finally:
        a.close()


def assert_blocks(res, expected, loaded_from=None, loaded=0):
    """Every full prompt block of a finished request holds what the model
    computes (expected(tokens, i)); the first `loaded` are byte-identical to
    `loaded_from`'s."""
    assert len(res.blocks) == len(res.tokens) // BS
    for i, block in enumerate(res.blocks):
        assert vh.same_bytes(block, expected(res.tokens, i)), f"block {i}"
        if i < loaded:
            assert vh.same_bytes(block, loaded_from.blocks[i]), f"block {i} differs from A's"


def namespace_of(eng):
    return eng.worker_connector.worker.namespace


# ---------------------------------------------------------------------------
# Without a cluster


def test_config_errors():
    cfg = vh.make_config("m", extra={})
    env = {k: os.environ.pop(k) for k in ("KVF_COORDINATOR",) if k in os.environ}
    try:
        with pytest.raises(ValueError, match="coordinator"):
            KvfabricConnector(cfg, KVConnectorRole.SCHEDULER)
    finally:
        os.environ.update(env)
    cfg = vh.make_config("m", extra={"coordinator": "127.0.0.1:1"})
    cfg.cache_config.cache_dtype = "fp8"
    with pytest.raises(ValueError, match="fp8"):
        KvfabricConnector(cfg, KVConnectorRole.WORKER)
    cfg = vh.make_config("m", extra={"coordinator": "127.0.0.1:1"})
    cfg.parallel_config.pipeline_parallel_size = 2
    with pytest.raises(ValueError, match="pipeline"):
        KvfabricConnector(cfg, KVConnectorRole.WORKER)


# ---------------------------------------------------------------------------
# Hits across processes


@pytest.mark.parametrize("layout_b", ["flash_attn", "flashinfer"])
def test_hits_load_byte_identical_blocks_in_another_process(cluster, tmp_path, layout_b):
    """Engine A (here) prefills and saves; engine B (another process, another
    KV layout in memory) gets prompts sharing prefixes, is told the matched
    tokens, loads them byte-identical to A's, and computes only the rest."""
    mid = model_id("xproc")
    p1, p2 = tokens(5 * BS + 5, 1), tokens(4 * BS, 2)
    a_prompts = {"p1": p1, "p2": p2}
    a = engine(cluster, mid)
    try:
        for rid, t in a_prompts.items():
            a.add_request(rid, t)
        rec = a.step()
        # The chain in the metadata is the binding's (= C++ HashSequence) one.
        meta = {r.req_id: r for r in rec.metadata.requests}
        assert meta["p1"].chain == pack_chain(kvfabric.hash_tokens(p1, BS), 5)
        assert meta["p1"].save.begin == 0 and meta["p1"].save.end == 5
        assert meta["p1"].load is None
        a_res = a.run()
        assert a.worker_connector.worker.stats["saved"] == 9
    finally:
        a.close()

    b_prompts = {
        "same": p1,  # 5 full blocks stored, 5 more tokens: all 5 load
        "aligned": p2,  # 4 full blocks stored: 3 load, vLLM computes the last
        "partial": p1[:2 * BS] + tokens(2 * BS + 7, 3),  # shares 2 blocks
        "longer": p2 + tokens(BS + 1, 4),  # shares all 4 of p2's blocks
        "fresh": tokens(3 * BS, 5),
    }
    want = {"same": 5 * BS, "aligned": 3 * BS, "partial": 2 * BS, "longer": 4 * BS, "fresh": 0}
    spec = {"config": {"model_id": mid, "extra": extra_of(cluster)},
            "engine": {"layout": layout_b},
            "requests": [{"id": k, "tokens": v} for k, v in b_prompts.items()]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = cluster.env()
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(kvfabric.__file__).parent.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, str(HARNESS), "run", str(tmp_path / "spec.json"),
                           str(tmp_path / "out.pt")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = torch.load(tmp_path / "out.pt")
    assert out["layout_error"] is None
    assert out["invalid_block_ids"] == []

    def expected(t, i):
        return vh.expected_block(t, i, BS, 4, 2, 64, torch.float16)

    source = {"same": "p1", "aligned": "p2", "partial": "p1", "longer": "p2", "fresh": None}
    for rid, t in b_prompts.items():
        res = vh.RequestResult(**out["results"][rid])
        assert res.matched == want[rid], rid
        assert res.computed_tokens == len(t) - want[rid], rid
        assert_blocks(res, expected, a_res.get(source[rid]), want[rid] // BS)
    # B stored the full blocks it computed: partial's 2, longer's 1, fresh's
    # 3 and aligned's last (A had it: a no-op put).
    assert out["stats"].get("saved", 0) == 2 + 1 + 3 + 1


def test_partial_hits_and_local_prefix_cache(cluster):
    """A prompt sharing only its first k blocks loads exactly those; with
    vLLM's own prefix cache holding the first blocks, only the blocks between
    the local hit and the stored prefix are loaded."""
    mid = model_id("partial")
    p = tokens(6 * BS + 1, 10)
    a_res = prefill(cluster, mid, {"p": p})["p"]

    b = engine(cluster, mid)
    try:
        for k in (1, 3, 6):
            rid = f"k{k}"
            b.add_request(rid, p[:k * BS] + tokens(2 * BS + 3, 20 + k) if k < 6 else p)
            rec = b.step()
            assert rec.matched[rid] == k * BS and rec.local[rid] == 0
            (r,) = rec.metadata.loads()
            assert (r.load.begin, r.load.end) == (0, k)
            if k < 6:
                assert (r.save.begin, r.save.end) == (k, k + 2)  # what it computed is new
            else:
                assert r.save is None
            b.run()
            assert_blocks(b.results[rid], b.expected, a_res, k)
            assert b.results[rid].computed_tokens == len(b.results[rid].tokens) - k * BS
        assert not any(s.invalid_block_ids for s in b.steps)
    finally:
        b.close()

    c = engine(cluster, mid, prefix_caching=True)
    try:
        c.add_request("k3", p[:3 * BS] + tokens(BS + 5, 30))
        c.run()
        # vLLM's cache now holds p's first 3 blocks (k3's); kvfabric all 6.
        c.add_request("full", p)
        rec = c.step()
        assert rec.local["full"] == 3 * BS and rec.matched["full"] == 3 * BS
        (r,) = rec.metadata.loads()
        assert (r.load.begin, r.load.end) == (3, 6)
        assert r.load.page_ids == c.requests["full"].block_ids[3:6]
        assert r.save is None  # nothing new to store
        c.run()
        assert_blocks(c.results["full"], c.expected, a_res, 6)
        assert c.results["full"].computed_tokens == 1
        assert not any(s.invalid_block_ids for s in c.steps)
    finally:
        c.close()


def test_chunked_prefill_saves_each_full_block_once(cluster):
    mid = model_id("chunked")
    p = tokens(7 * BS + 9, 30)
    a = engine(cluster, mid, max_tokens_per_step=40)
    try:
        a.add_request("p", p)
        a.run()
        saves = [(r.save.begin, r.save.end) for s in a.steps for r in s.metadata.saves()]
        assert saves == [(0, 2), (2, 5), (5, 7)]
        assert a.worker_connector.worker.stats["saved"] == 7
    finally:
        a.close()
    ns_client = cluster.client()
    ns = namespace_of_config(ns_client, mid)
    assert ns_client.lookup(ns, ns.hash_tokens(p)).prefix == 7


def namespace_of_config(client, mid):
    return client.register_namespace(mid, kvfabric.KvLayout(4, 2, 64, BS, "fp16"))


def test_preempted_request_resumes_from_the_cluster(cluster):
    """A request preempted mid-prefill (vLLM frees its blocks) resumes as a
    cached request with new blocks: it loads what it had saved, and every
    block is stored once."""
    mid = model_id("preempt")
    p = tokens(8 * BS + 3, 80)
    a = engine(cluster, mid, max_tokens_per_step=3 * BS + 4)
    try:
        a.add_request("p", p)
        rec = a.step()
        (r,) = rec.metadata.requests
        assert (r.save.begin, r.save.end) == (0, 3)
        a.preempt("p")
        rec = a.step()
        assert rec.matched["p"] == 3 * BS
        (r,) = rec.metadata.requests
        assert (r.load.begin, r.load.end) == (0, 3)
        assert r.load.page_ids == a.requests["p"].block_ids[:3]  # the new blocks
        assert (r.save.begin, r.save.end) == (3, 6)
        a.run()
        assert_blocks(a.results["p"], a.expected)
        assert a.worker_connector.worker.stats["saved"] == 8
        assert not any(s.invalid_block_ids for s in a.steps)
    finally:
        a.close()


def test_cache_salt_separates_prefixes(cluster):
    """Requests with another cache salt (or LoRA, or images) never share KV:
    their chains hash it in; a plain request's chain is HashSequence's."""
    mid = model_id("salt")
    p = tokens(3 * BS + 1, 90)
    a = engine(cluster, mid)
    try:
        a.add_request("s1", p, cache_salt="tenant-1")
        rec = a.step()
        (r,) = rec.metadata.requests
        assert r.chain != pack_chain(kvfabric.hash_tokens(p, BS), 3)
        a.run()
        a.add_request("s2", p, cache_salt="tenant-2")
        a.add_request("plain", p)
        a.add_request("s1-again", p, cache_salt="tenant-1")
        rec = a.step()
        assert rec.matched == {"s2": 0, "plain": 0, "s1-again": 3 * BS}
        a.run()
        assert_blocks(a.results["s1-again"], a.expected, a.results["s1"], 3)
    finally:
        a.close()


# ---------------------------------------------------------------------------
# Per-layer loads


def check_layers_as_they_land(worker, sources, seen):
    """An after_layer_load hook: when layer l's wait returned, layer l of
    every page the step loads holds the source's bytes; records (layer,
    loads whose results are not collected yet)."""

    def hook(eng, rec, layer):
        for r in rec.metadata.loads():
            src = sources[r.req_id]
            for i, page in zip(range(r.load.begin, r.load.end), r.load.page_ids):
                assert vh.same_bytes(eng.kv.page(layer, page).cpu(), src.blocks[i][layer]), \
                    (r.req_id, layer, i)
        seen.append((layer, worker.pending_loads))

    return hook


def test_loads_land_layer_by_layer(cluster):
    """wait_for_layer_load(layer l) waits for layer l of the step's loads,
    not for the whole loads: when it returns that layer of every loaded block
    is in the pages; the loads' results are collected at the last layer."""
    mid = model_id("per-layer")
    prompts = {"p1": tokens(6 * BS + 3, 100), "p2": tokens(3 * BS + 1, 101)}
    a_res = prefill(cluster, mid, prompts)
    b = engine(cluster, mid, layout="flashinfer")
    try:
        for rid, t in prompts.items():
            b.add_request(rid, t)
        worker = b.worker_connector.worker
        seen = []
        rec = b.step(after_layer_load=check_layers_as_they_land(worker, a_res, seen))
        assert rec.matched == {"p1": 6 * BS, "p2": 3 * BS}
        assert seen == [(0, 2), (1, 2), (2, 2), (3, 0)]
        assert rec.invalid_block_ids == set()
        assert worker.stats["loaded"] == 9
        b.run()
        for rid in prompts:
            assert_blocks(b.results[rid], b.expected, a_res[rid], len(prompts[rid]) // BS)
    finally:
        b.close()


def test_load_errors_are_reported_without_layer_waits(cluster):
    """Should vLLM skip wait_for_layer_load, wait_for_save still collects the
    loads: a block removed since the lookup is reported and recomputed."""
    mid = model_id("no-waits")
    p = tokens(4 * BS, 110)
    a_res = prefill(cluster, mid, {"p": p})["p"]
    q = p + tokens(BS + 3, 111)  # 4 stored blocks, 1 new one, 3 tokens
    c = cluster.client()
    b = engine(cluster, mid)
    try:
        b.add_request("q", q)

        def remove_block_1(eng, rec):
            ns = namespace_of(eng)
            assert [x.ok for x in c.remove(ns, ns.hash_tokens(q), 1, 2)] == [True]

        rec = b.step(before_execute=remove_block_1, layer_waits=False)
        assert rec.matched["q"] == 4 * BS
        assert rec.invalid_block_ids == {b.requests["q"].block_ids[1]}
        stats = b.worker_connector.worker.stats
        assert stats["loaded"] == 3 and stats["load_failed"] == 1
        assert stats["save_skipped"] == 1 and stats["saved"] == 0
        assert rec.rolled_back == {"q": BS}
        b.run()
        assert_blocks(b.results["q"], b.expected, a_res, 1)
    finally:
        b.close()


class FakeTensor:
    """What check_kv_caches reads of a tensor."""

    def __init__(self, device, shape=(2, 8, BS, 2, 64), dtype=torch.float16):
        self.device, self.shape, self.dtype = torch.device(device), shape, dtype


def test_check_kv_caches_devices():
    """Host and CUDA KV caches are accepted, every layer on one device."""
    from kvfabric.vllm._config import ConnectorConfig
    from kvfabric.vllm._worker import check_kv_caches, current_stream_of

    cfg = ConnectorConfig.from_vllm_config(vh.make_config("m", extra={"coordinator": "x:1"}))
    names = [f"model.layers.{l}.self_attn.attn" for l in range(4)]

    def check(*devices):
        return check_kv_caches(cfg, names, {n: FakeTensor(d) for n, d in zip(names, devices)})

    assert check("cpu", "cpu", "cpu", "cpu") is None
    assert check("cuda:0", "cuda:0", "cuda:0", "cuda:0") is None
    assert "one device" in check("cuda:0", "cuda:0", "cuda:1", "cuda:0")
    assert "one device" in check("cpu", "cuda:0", "cuda:0", "cuda:0")
    assert "host or CUDA" in check("meta", "meta", "meta", "meta")
    assert current_stream_of(None) == 0 and current_stream_of(torch.device("cpu")) == 0
    want = torch.cuda.current_stream().cuda_stream if torch.cuda.is_available() else 0
    assert current_stream_of(torch.device("cuda", 0)) == want  # 0 on a CPU-only torch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_kv_caches(cluster):
    """KV caches on the GPU: saved and loaded (per layer) on torch's current
    stream, byte-identical to a host engine's."""
    mid = model_id("cuda")
    p = tokens(5 * BS + 2, 120)
    a_res = prefill(cluster, mid, {"p": p}, device="cuda")["p"]
    assert_blocks(a_res, lambda t, i: vh.expected_block(t, i, BS, 4, 2, 64, torch.float16))
    b = engine(cluster, mid, device="cuda")
    try:
        assert b.worker_connector.worker.layout_error is None
        b.add_request("p", p)
        worker = b.worker_connector.worker
        seen = []
        rec = b.step(after_layer_load=check_layers_as_they_land(worker, {"p": a_res}, seen))
        assert rec.matched["p"] == 5 * BS and rec.invalid_block_ids == set()
        assert seen == [(0, 1), (1, 1), (2, 1), (3, 0)]
        b.run()
        assert_blocks(b.results["p"], b.expected, a_res, 5)
    finally:
        b.close()


# ---------------------------------------------------------------------------
# Failures


def snapshot(eng, pages):
    return {p: eng.kv.block(p) for p in pages}


def test_block_removed_between_lookup_and_load(cluster):
    """A block removed after the lookup claimed it: reported by
    get_block_ids_with_load_errors, its page untouched, the request's saves
    of that step skipped (computed over a hole); vLLM recomputes from the
    failed block, and what it recomputes is stored again."""
    mid = model_id("removed")
    p = tokens(5 * BS, 40)
    a_res = prefill(cluster, mid, {"p": p})["p"]
    q = p + tokens(2 * BS + 3, 41)  # 5 stored blocks, 2 new ones, 3 tokens
    c = cluster.client()

    b = engine(cluster, mid)
    try:
        b.add_request("q", q)
        seen = {}

        def remove_block_2(eng, rec):
            ns = namespace_of(eng)
            assert [x.ok for x in c.remove(ns, ns.hash_tokens(q), 2, 3)] == [True]
            seen["pages"] = pages = eng.requests["q"].block_ids[:7]
            seen["before"] = snapshot(eng, pages)

        rec = b.step(before_execute=remove_block_2)
        pages = seen["pages"]
        assert rec.matched["q"] == 5 * BS
        (r,) = rec.metadata.requests
        assert (r.load.begin, r.load.end, r.save.begin, r.save.end) == (0, 5, 5, 7)
        assert rec.invalid_block_ids == {pages[2]}
        assert vh.same_bytes(b.kv.block(pages[2]), seen["before"][pages[2]])  # not written
        for i in (0, 1, 3, 4):
            assert vh.same_bytes(b.kv.block(pages[i]), a_res.blocks[i])
        stats = b.worker_connector.worker.stats
        assert stats["save_skipped"] == 2 and stats["saved"] == 0
        assert rec.rolled_back == {"q": 2 * BS}
        rec = b.step()
        (r,) = rec.metadata.requests
        assert r.load is None and (r.save.begin, r.save.end) == (2, 7)
        b.run()
        assert_blocks(b.results["q"], b.expected, a_res, 2)
        ns = namespace_of(b)
        assert c.exists(ns, ns.hash_tokens(q)) == [True] * 7
    finally:
        b.close()

    # Another engine now loads all 7, block 2 as recomputed.
    d = engine(cluster, mid)
    try:
        d.add_request("q", q)
        d.run()
        assert d.results["q"].matched == 7 * BS
        assert_blocks(d.results["q"], d.expected)
    finally:
        d.close()


def test_agent_killed_mid_load(fresh_cluster):
    """Agents SIGKILLed while a step's loads run (then a second one between
    lookup and load): every claimed block either loads byte-identical to what
    A saved or is reported failed with its page untouched; vLLM's
    recomputation then leaves every block right."""
    cluster = fresh_cluster
    mid = model_id("kill")
    # Small segments spread each prompt over every agent.
    extra = {"segment_blocks": 2, "data_timeout": 2.0, "rpc_timeout": 2.0}
    prompts = {f"r{i}": tokens(12 * BS + 1, 50 + i) for i in range(4)}
    a_res = prefill(cluster, mid, prompts, extra=extra)

    def run_round(tag, before=None, after=None):
        b = engine(cluster, mid, extra=extra, num_pages=512)
        try:
            for rid, t in prompts.items():
                b.add_request(f"{rid}-{tag}", t)
            seen = {}

            def before_execute(eng, rec):
                seen.update({p: eng.kv.block(p) for r in eng.running for p in r.block_ids})
                if before:
                    before()

            rec = b.step(before_execute=before_execute,
                         after_start_load=(lambda eng, rec: after()) if after else None)
            loaded = failed = 0
            for r in rec.metadata.loads():
                src = a_res[r.req_id.rsplit("-", 1)[0]]
                for i, page in zip(range(r.load.begin, r.load.end), r.load.page_ids):
                    if page in rec.invalid_block_ids:
                        assert vh.same_bytes(b.kv.block(page), seen[page]), (r.req_id, i)
                        failed += 1
                    else:
                        assert vh.same_bytes(b.kv.block(page), src.blocks[i]), (r.req_id, i)
                        loaded += 1
            assert loaded + failed == 4 * 12
            b.run()
            for res in b.results.values():
                assert_blocks(res, b.expected)
            return loaded, failed
        finally:
            b.close()

    run_round("mid", after=lambda: cluster.kill_agent(0))
    # Lookup with 2 agents up, load with 1: typically a third of the blocks fail.
    run_round("late", before=lambda: cluster.kill_agent(1))


@pytest.mark.parametrize("mismatch", ["heads", "dtype"])
def test_layout_mismatch_is_refused(cluster, mismatch):
    """KV tensors that contradict the config (another head count or dtype):
    refused at register_kv_caches; every claimed block is reported failed and
    left untouched, nothing is saved, and vLLM recomputes."""
    mid = model_id("mismatch")
    p = tokens(4 * BS + 2, 60)
    prefill(cluster, mid, {"p": p})
    kw = {"cache_heads": 4} if mismatch == "heads" else {"cache_dtype": torch.float32}
    b = engine(cluster, mid, **kw)
    try:
        err = b.worker_connector.worker.layout_error
        assert err is not None
        assert ("[16, 4, 64]" in err) if mismatch == "heads" else ("float32" in err)
        b.add_request("p", p)
        fresh = tokens(3 * BS, 61)
        b.add_request("fresh", fresh)
        pages = {}
        rec = b.step(before_execute=lambda eng, rec: pages.update(
            before=snapshot(eng, eng.requests["p"].block_ids[:4])))
        assert rec.matched["p"] == 4 * BS  # the scheduler cannot know
        load_pages = b.requests["p"].block_ids[:4]
        assert rec.invalid_block_ids == set(load_pages)
        for pg in load_pages:
            assert vh.same_bytes(b.kv.block(pg), pages["before"][pg])
        b.run()
        assert_blocks(b.results["p"], b.expected)
        assert_blocks(b.results["fresh"], b.expected)
        stats = b.worker_connector.worker.stats
        assert stats["saved"] == 0 and stats["loaded"] == 0
        c = cluster.client()
        ns = namespace_of(b)
        assert c.exists(ns, ns.hash_tokens(fresh)) == [False] * 3
    finally:
        b.close()


def test_roles(cluster):
    """kv_producer saves and never loads; kv_consumer loads and never saves."""
    mid = model_id("roles")
    p = tokens(3 * BS + 1, 70)
    producer = engine(cluster, mid, kv_role="kv_producer")
    try:
        producer.add_request("p", p)
        producer.run()
        producer.add_request("again", p)
        producer.run()
        assert producer.results["again"].matched == 0
        assert producer.worker_connector.worker.stats["saved"] == 3  # stored: not again
    finally:
        producer.close()
    consumer = engine(cluster, mid, kv_role="kv_consumer")
    try:
        consumer.add_request("p", p + tokens(BS, 71))
        consumer.run()
        assert consumer.results["p"].matched == 3 * BS
        assert consumer.worker_connector.worker.stats["saved"] == 0
        assert not any(s.metadata.saves() for s in consumer.steps)
    finally:
        consumer.close()
