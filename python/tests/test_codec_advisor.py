"""kvfabric.advise_codec: measures every codec on a sample of KV blocks and
recommends the smallest within an attention-error budget (no cluster)."""

import numpy as np
import pytest

import kvfabric

L, H, D, T, BLOCKS = 2, 4, 64, 32, 2
SHAPE = dict(num_layers=L, num_kv_heads=H, head_dim=D, block_tokens=T)
CODECS = ["none", "fp8_e4m3", "int8", "int4"]


def _sample(dtype=np.float16):
    """Blocks in canonical order [block][L][2][T][H][D]: per-channel means plus
    N(0, 1), and four K channels per head 20x larger (the outliers real K
    caches have)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((BLOCKS, L, 2, T, H, D))
    x += 0.5 * rng.standard_normal((1, L, 2, 1, H, D))
    x[:, :, 0, :, :, :4] *= 20
    return np.ascontiguousarray(x.astype(dtype))


def test_generous_budget_picks_the_smallest_codec_and_zero_keeps_none():
    sample = _sample()
    loose = kvfabric.advise_codec(sample, 0.5, **SHAPE)
    assert loose["recommended"] == "int4", loose["reason"]
    assert loose["reason"].startswith("int4: ")
    assert loose["blocks"] == BLOCKS
    assert list(loose["codecs"]) == CODECS
    assert loose["codecs"]["none"]["rel_l2"] == 0 and loose["codecs"]["none"]["kl"] == 0
    for name in CODECS[1:]:
        q = loose["codecs"][name]
        assert 0 < q["rel_l2"] < 0.5 and q["kl"] > 0 and q["size_ratio"] > 1.9, (name, q)

    strict = kvfabric.advise_codec(sample, 0.0, **SHAPE)
    assert strict["recommended"] == "none", strict["reason"]


def test_pick_is_the_smallest_codec_within_each_measured_error():
    sample = _sample()
    measured = kvfabric.advise_codec(sample, 0.0, **SHAPE)["codecs"]
    picks = set()
    for name in CODECS[1:]:
        budget = measured[name]["rel_l2"]
        advice = kvfabric.advise_codec(sample, budget, **SHAPE)
        pick = advice["codecs"][advice["recommended"]]
        fitting = [q for q in advice["codecs"].values() if q["rel_l2"] <= budget]
        assert pick["rel_l2"] <= budget
        assert pick["encoded_bytes"] == min(q["encoded_bytes"] for q in fitting)
        picks.add(advice["recommended"])
    assert "int4" in picks and len(picks) >= 2, picks


def test_bytes_numpy_and_torch_samples_agree():
    torch = pytest.importorskip("torch")
    sample = _sample()
    a = kvfabric.advise_codec(sample, 0.01, **SHAPE)
    b = kvfabric.advise_codec(sample.tobytes(), 0.01, **SHAPE)
    c = kvfabric.advise_codec(torch.from_numpy(sample), 0.01, **SHAPE)
    assert a == b == c


def test_bad_samples_raise_invalid_argument():
    sample = _sample()
    with pytest.raises(kvfabric.InvalidArgumentError, match="whole blocks"):
        kvfabric.advise_codec(sample.tobytes()[:-1], 0.01, **SHAPE)
    with pytest.raises(kvfabric.InvalidArgumentError, match="fp32"):
        kvfabric.advise_codec(_sample(np.float32), 0.01, **SHAPE)  # layout says fp16
    with pytest.raises(kvfabric.InvalidArgumentError):
        kvfabric.advise_codec(sample, -1.0, **SHAPE)
    # The same float32 values with a float32 layout are fine.
    ok = kvfabric.advise_codec(_sample(np.float32), 0.01, dtype="fp32", **SHAPE)
    assert ok["recommended"] in CODECS
