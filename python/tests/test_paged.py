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


def _pages_equal(x, y, kind, layer, x_pages, y_pages):
    return all(torch.equal(_page(x, kind, layer, px), _page(y, kind, layer, py))
               for px, py in zip(x_pages, y_pages))


@pytest.mark.parametrize("kind", ["flash_attn", "flashinfer"])
def test_wait_layer_lands_each_layer(client, kind):
    """A load's layer l is in the pages once wait_layer(l) returns (every
    block's layer l), before the whole transfer's results are taken."""
    ns = client.register_namespace(f"paged-wait-layer-{kind}", LAYOUT)
    chain = ns.hash_tokens(range(4 * PAGE))
    a, b = _cache(kind, 12), _cache(kind, 13)
    a_pages, b_pages = [0, 1, 2, 3], [8, 5, 11, 6]
    assert all(r.ok for r in client.save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(a), a_pages))
    t = client.start_load_pages(ns, chain, 0, kvfabric.PagedKv.vllm(b), b_pages)
    for layer in range(L):
        t.wait_layer(layer)
        assert t.layer_ready(layer)
        assert _pages_equal(a, b, kind, layer, a_pages, b_pages), f"layer {layer}"
    with pytest.raises(kvfabric.InvalidArgumentError, match="layer"):
        t.wait_layer(L)
    assert not t.layer_ready(L)
    results = t.wait()
    assert all(r.ok for r in results) and t.done()
    t.wait_layer(L - 1)  # a finished load's layers stay ready
    for layer in range(L):
        assert _pages_equal(a, b, kind, layer, a_pages, b_pages)


def test_wait_layer_with_a_missing_block(client):
    """A block that is not found never lands: every wait_layer still returns
    (at the latest when the load finished) and its pages stay untouched."""
    ns = client.register_namespace("paged-wait-layer-missing", LAYOUT)
    chain = ns.hash_tokens(range(3 * PAGE))
    a, b = _cache("flash_attn", 14), _cache("flash_attn", 15)
    assert all(r.ok for r in client.save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(a), [0, 1, 2]))
    assert client.remove(ns, chain, 1, 2)[0].ok
    before = [t.clone() for t in b]
    t = client.start_load_pages(ns, chain, 0, kvfabric.PagedKv.vllm(b), [3, 4, 5])
    for layer in range(L):
        t.wait_layer(layer)
        assert torch.equal(b[layer][:, 3], a[layer][:, 0])
        assert torch.equal(b[layer][:, 5], a[layer][:, 2])
    assert [r.code for r in t.wait()] == ["OK", "NOT_FOUND", "OK"]
    for layer in range(L):
        assert torch.equal(b[layer][:, 4], before[layer][:, 4])


def test_compressed_blocks_land_whole(client):
    """fp8-stored blocks land whole: once layer 0 is ready every layer is."""
    ns = client.register_namespace("paged-wait-layer-fp8", LAYOUT)
    chain = ns.hash_tokens(range(2 * PAGE))
    a = _cache("flash_attn", 16)
    b = [torch.zeros(2, PAGES, PAGE, H, D, dtype=torch.float16) for _ in range(L)]
    saved = client.save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(a), [0, 1], codec="fp8_e4m3")
    assert all(r.ok for r in saved)
    t = client.start_load_pages(ns, chain, 0, kvfabric.PagedKv.vllm(b), [0, 1])
    t.wait_layer(0)
    for layer in range(L):
        assert t.layer_ready(layer)
        want, got = a[layer][:, :2].float(), b[layer][:, :2].float()
        assert torch.allclose(got, want, rtol=0.07, atol=0.02 * want.abs().max().item())
    assert [r.codec for r in t.wait()] == ["fp8_e4m3"] * 2


class _FakeStream:
    """What the paged calls read of a torch.cuda.Stream."""

    def __init__(self, handle):
        self.cuda_stream = handle


def test_stream_argument(client):
    """stream=None, 0 and an object with .cuda_stream (0: the default stream)
    are accepted for host pages; anything else is refused."""
    ns = client.register_namespace("paged-stream", LAYOUT)
    chain = ns.hash_tokens(range(2 * PAGE))
    a, b = _cache("flash_attn", 17), _cache("flash_attn", 18)
    pa, pb = kvfabric.PagedKv.vllm(a), kvfabric.PagedKv.vllm(b)
    assert all(r.ok for r in client.save_pages(ns, chain, 0, pa, [0, 1], stream=None))
    assert all(r.ok for r in client.save_pages(ns, chain, 0, pa, [0, 1], stream=0))
    assert all(r.ok for r in client.start_save_pages(ns, chain, 0, pa, [0, 1],
                                                     stream=_FakeStream(0)).wait())
    assert all(r.ok for r in client.load_pages(ns, chain, 0, pb, [2, 3], stream=0))
    assert all(r.ok for r in client.load_pages(ns, chain, 0, pb, [4, 5], stream=None))
    t = client.start_load_pages(ns, chain, 0, pb, [6, 7], stream=_FakeStream(0))
    assert all(r.ok for r in t.wait())
    for layer in range(L):
        for p in (2, 4, 6):
            assert torch.equal(b[layer][:, p:p + 2], a[layer][:, 0:2])
    for bad in ("0", -1, 1.0, _FakeStream(None), True):
        with pytest.raises(kvfabric.InvalidArgumentError, match="stream"):
            client.load_pages(ns, chain, 0, pb, [2, 3], stream=bad)


def test_pages_must_be_host_or_cuda():
    meta = [torch.zeros(2, PAGES, PAGE, H, D, dtype=torch.float16, device="meta")
            for _ in range(L)]
    with pytest.raises(kvfabric.UnimplementedError, match="meta"):
        kvfabric.PagedKv.vllm(meta)
    with pytest.raises(kvfabric.InvalidArgumentError, match="no KV tensors"):
        kvfabric.PagedKv.from_strides([], num_pages=1, page_size=PAGE, num_kv_heads=H,
                                      head_dim=D, page_stride=1, kv_stride=1, token_stride=1,
                                      head_stride=1)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
def test_cuda_pages_round_trip_per_layer(client):
    """Device pages: saved from and loaded into CUDA tensors on torch's
    current stream, layer by layer."""
    ns = client.register_namespace("paged-cuda", LAYOUT)
    chain = ns.hash_tokens(range(3 * PAGE))
    a = [t.cuda() for t in _cache("flash_attn", 19)]
    b = [torch.zeros_like(t) for t in a]
    stream = torch.cuda.current_stream()
    saved = client.save_pages(ns, chain, 0, kvfabric.PagedKv.vllm(a), [0, 1, 2], stream=stream)
    assert all(r.ok for r in saved)
    t = client.start_load_pages(ns, chain, 0, kvfabric.PagedKv.vllm(b), [5, 3, 9],
                                stream=stream.cuda_stream)
    for layer in range(L):
        t.wait_layer(layer)
        assert _pages_equal(a, b, "flash_attn", layer, [0, 1, 2], [5, 3, 9])
    assert all(r.ok for r in t.wait())
    host = _cache("flash_attn", 20)
    assert all(r.ok for r in client.load_pages(ns, chain, 0, kvfabric.PagedKv.vllm(host),
                                                [0, 1, 2]))
    for layer in range(L):
        assert torch.equal(host[layer][:, 0:3], a[layer][:, 0:3].cpu())


@cuda
def test_mixed_devices_are_refused():
    layers = [torch.zeros(2, PAGES, PAGE, H, D, dtype=torch.float16) for _ in range(L)]
    layers[1] = layers[1].cuda()
    with pytest.raises(kvfabric.InvalidArgumentError, match="one device"):
        kvfabric.PagedKv.vllm(layers)
