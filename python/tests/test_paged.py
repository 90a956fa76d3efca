"""Paged KV from Python: torch KV caches in vLLM's layouts -> blocks -> other
pages, byte for byte (kvfabric.PagedKv, Client.save_pages / load_pages)."""

import pytest
import torch

import kvfabric

L, H, D, PAGE, PAGES = 3, 2, 32, 16, 12
LAYOUT = kvfabric.KvLayout(num_layers=L, num_kv_heads=H, head_dim=D, block_tokens=PAGE)


@pytest.fixture(scope="module")
def client(cluster):
    return cluster.client()


def _cache(kind, seed):
    """Per-layer fp16 KV tensors: 'flash_attn' [2, pages, 16, H, D] or
    'flashinfer' [pages, 2, 16, H, D], filled with seeded values."""
    g = torch.Generator().manual_seed(seed)
    shape = (2, PAGES, PAGE, H, D) if kind == "flash_attn" else (PAGES, 2, PAGE, H, D)
    return [torch.randn(shape, generator=g).to(torch.float16) for _ in range(L)]


def _page(tensors, kind, layer, page):
    t = tensors[layer]
    return t[:, page] if kind == "flash_attn" else t[page]


@pytest.mark.parametrize("kind", ["flash_attn", "flashinfer"])
def test_save_then_load_into_other_pages_is_byte_identical(client, kind):
    ns = client.register_namespace(f"paged-{kind}", LAYOUT)
    chain = ns.hash_tokens(range(5 * PAGE))
    a, b = _cache(kind, 1), _cache(kind, 2)
    a_pages, b_pages = [3, 0, 7, 1, 9], [[11], [10], [2], [4], [6]]  # flat and per-block forms
    saved = client.save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(a), a_pages)
    assert all(r.ok for r in saved), saved
    loaded = client.load_pages(ns, chain, 0, kvfabric.PagedKv.vllm(b), b_pages)
    assert all(r.ok for r in loaded), loaded
    for layer in range(L):
        for pa, (pb,) in zip(a_pages, b_pages):
            assert torch.equal(_page(a, kind, layer, pa), _page(b, kind, layer, pb))


def test_both_vllm_layouts_store_the_same_canonical_block(client):
    ns = client.register_namespace("paged-canonical", LAYOUT)
    fa = _cache("flash_attn", 3)
    fi = [t.transpose(0, 1).contiguous() for t in fa]  # the same KV, FlashInfer's layout
    chain_a, chain_b = ns.hash_tokens(range(PAGE)), ns.hash_tokens(range(1, PAGE + 1))
    assert client.save_pages(ns, chain_a, 0, kvfabric.PagedKv.vllm(fa), [5])[0].ok
    assert client.save_pages(ns, chain_b, 0, kvfabric.PagedKv.vllm(fi), [5])[0].ok
    x, y = bytearray(ns.block_bytes()), bytearray(ns.block_bytes())
    client.get(ns, chain_a, 0, x)
    client.get(ns, chain_b, 0, y)
    assert x == y


def test_fp8_pages_round_trip_within_the_codec_error(client):
    ns = client.register_namespace("paged-fp8", LAYOUT)
    chain = ns.hash_tokens(range(2 * PAGE))
    a, b = _cache("flash_attn", 4), [torch.zeros(2, PAGES, PAGE, H, D, dtype=torch.float16) for _ in range(L)]
    saved = client.save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(a), [0, 1], codec="fp8_e4m3")
    assert all(r.ok for r in saved)
    loaded = client.load_pages(ns, chain, 0, kvfabric.PagedKv.vllm(b), [0, 1])
    assert [r.codec for r in loaded] == ["fp8_e4m3"] * 2
    for layer in range(L):
        want, got = a[layer][:, :2].float(), b[layer][:, :2].float()
        assert torch.allclose(got, want, rtol=0.07, atol=0.02 * want.abs().max().item())
        assert not torch.equal(got, torch.zeros_like(got))


def test_a_missing_block_leaves_its_pages_untouched(client):
    ns = client.register_namespace("paged-missing", LAYOUT)
    chain = ns.hash_tokens(range(3 * PAGE))
    a, b = _cache("flash_attn", 5), _cache("flash_attn", 6)
    assert all(r.ok for r in client.save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(a), [0, 1, 2]))
    assert client.remove(ns, chain, 1, 2)[0].ok
    before = [t.clone() for t in b]
    loaded = client.load_pages(ns, chain, 0, kvfabric.PagedKv.vllm(b), [0, 1, 2])
    assert [r.code for r in loaded] == ["OK", "NOT_FOUND", "OK"]
    for layer in range(L):
        assert torch.equal(b[layer][:, 1], before[layer][:, 1])
        assert torch.equal(b[layer][:, 0], a[layer][:, 0])


def test_layout_mismatches_are_refused(client):
    ns = client.register_namespace("paged-mismatch", LAYOUT)
    chain = ns.hash_tokens(range(PAGE))
    wrong_heads = [torch.zeros(2, PAGES, PAGE, H + 1, D, dtype=torch.float16) for _ in range(L)]
    with pytest.raises(kvfabric.InvalidArgumentError, match="num_kv_heads"):
        client.load_pages(ns, chain, 0, kvfabric.PagedKv.vllm(wrong_heads), [0])
    wrong_dtype = [torch.zeros(2, PAGES, PAGE, H, D, dtype=torch.bfloat16) for _ in range(L)]
    with pytest.raises(kvfabric.InvalidArgumentError, match="dtype"):
        client.save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(wrong_dtype), [0])
    few_layers = _cache("flash_attn", 7)[:2]
    with pytest.raises(kvfabric.InvalidArgumentError, match="num_layers"):
        client.save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(few_layers), [0])
    with pytest.raises(kvfabric.InvalidArgumentError):
        client.save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(_cache("flash_attn", 8)), [PAGES])
    with pytest.raises(kvfabric.InvalidArgumentError):
        kvfabric.PagedKv.vllm([torch.zeros(3, 4, 5, dtype=torch.float16)])
    with pytest.raises(kvfabric.InvalidArgumentError):  # int8 caches are not a KV dtype here
        kvfabric.PagedKv.vllm([torch.zeros(2, 4, PAGE, H, D, dtype=torch.int8)])
    assert client.lookup(ns, chain).prefix == 0


def test_asynchronous_transfers(client):
    ns = client.register_namespace("paged-async", LAYOUT)
    chain = ns.hash_tokens(range(4 * PAGE))
    a, b = _cache("flashinfer", 9), _cache("flashinfer", 10)
    t = client.start_save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(a), [0, 1, 2, 3])
    assert all(r.ok for r in t.wait()) and t.done()
    t = client.start_load_pages(ns, chain, 0, kvfabric.PagedKv.vllm(b), [4, 5, 6, 7])
    results = t.wait()
    assert all(r.ok for r in results) and t.layer_ready(L - 1)
    with pytest.raises(kvfabric.FailedPreconditionError):
        t.wait()
    for layer in range(L):
        assert torch.equal(a[layer][0:4], b[layer][4:8])


def test_layer_major_pool(client):
    ns = client.register_namespace("paged-layer-major", LAYOUT)
    chain = ns.hash_tokens(range(2 * PAGE))
    g = torch.Generator().manual_seed(11)
    pool = torch.randn(L, 2, PAGES, PAGE, H, D, generator=g).to(torch.float16)
    other = torch.zeros_like(pool)
    assert all(r.ok for r in client.save_pages(ns, chain, 0, kvfabric.PagedKv.layer_major(pool, L), [3, 4]))
    assert all(r.ok for r in client.load_pages(ns, chain, 0, kvfabric.PagedKv.layer_major(other, L), [3, 4]))
    assert torch.equal(pool[:, :, 3:5], other[:, :, 3:5])
