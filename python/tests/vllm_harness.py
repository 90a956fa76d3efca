"""A minimal fake of what vLLM does around a v1 KV connector.

Enough of vLLM to drive kvfabric.vllm.KvfabricConnector the way vLLM's
scheduler and model runner do, with torch tensors (host ones, or CUDA ones
with FakeEngine(device="cuda")) and no vLLM installed:

- FakeVllmConfig: model_config (get_num_layers, get_num_kv_heads,
  get_head_size, dtype), cache_config.block_size, parallel_config,
  kv_transfer_config.kv_connector_extra_config.
- Request: request_id, prompt_token_ids, num_tokens, all_token_ids,
  num_computed_tokens.
- BlockAllocator: vLLM block ids over a paged KV cache, per layer a tensor in
  vLLM's layout ([2, num_pages, block_size, H, D], FlashAttention's, or
  [num_pages, 2, block_size, H, D], FlashInfer's), with an optional local
  prefix cache (vLLM's enable_prefix_caching).
- FakeModel: writes the KV of the scheduled tokens, a deterministic function
  of (every token up to the position, position, layer, K/V, head, dim), so the
  bytes any block must hold are known (expected_block).
- FakeEngine.step(): one engine step, calling the connector in vLLM's order.
  Scheduler side (vllm/v1/core/sched/scheduler.py): per waiting request
  get_num_new_matched_tokens -> allocate -> update_state_after_alloc, then
  build_connector_meta. The metadata crosses a pickle, as it crosses processes
  in vLLM. Worker side (vllm/v1/worker/kv_connector_model_runner_mixin.py):
  bind_connector_metadata -> start_load_kv -> per layer (in layer order)
  wait_for_layer_load, the layer's forward (which would read that layer of the
  loaded blocks, no other), save_kv_layer -> wait_for_save -> get_finished ->
  get_block_ids_with_load_errors -> clear_connector_metadata. Then the
  scheduler's update_from_output: blocks that failed to load roll their
  request back to the first failed block (vLLM's "recompute" policy), and a
  finished request is handed to request_finished before its blocks are freed.

Run as a script (`python3 vllm_harness.py run SPEC.json OUT.pt`) it is an
engine in its own process: it reads KVF_COORDINATOR / KVF_TOKEN from the
environment, runs the spec's requests to completion and writes what each
request matched, its blocks' bytes and the load errors to OUT.pt.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from kvfabric.vllm import KVConnectorRole, KvfabricConnector

# --------------------------------------------------------------------------
# Config


@dataclass
class FakeModelConfig:
    model: str
    num_layers: int
    num_kv_heads: int  # total; per TP rank: get_num_kv_heads
    head_dim: int
    dtype: torch.dtype = torch.float16
    use_mla: bool = False

    def get_num_layers(self, parallel_config: "FakeParallelConfig") -> int:
        return self.num_layers // parallel_config.pipeline_parallel_size

    def get_num_kv_heads(self, parallel_config: "FakeParallelConfig") -> int:
        return max(1, self.num_kv_heads // parallel_config.tensor_parallel_size)

    def get_head_size(self) -> int:
        return self.head_dim


@dataclass
class FakeCacheConfig:
    block_size: int
    cache_dtype: str = "auto"


@dataclass
class FakeParallelConfig:
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    rank: int = 0


@dataclass
class FakeKVTransferConfig:
    kv_connector: str = "KvfabricConnector"
    kv_connector_module_path: str = "kvfabric.vllm"
    kv_role: str = "kv_both"
    kv_connector_extra_config: dict = field(default_factory=dict)

    def get_from_extra_config(self, key: str, default: Any) -> Any:
        return self.kv_connector_extra_config.get(key, default)


@dataclass
class FakeVllmConfig:
    model_config: FakeModelConfig
    cache_config: FakeCacheConfig
    parallel_config: FakeParallelConfig
    kv_transfer_config: FakeKVTransferConfig


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def make_config(model_id: str, *, layers: int = 4, heads: int = 2, head_dim: int = 64,
                block_size: int = 16, dtype: str = "fp16", kv_role: str = "kv_both",
                extra: Optional[dict] = None) -> FakeVllmConfig:
    """A vLLM config as vLLM hands it to a connector (the fields it reads)."""
    return FakeVllmConfig(
        model_config=FakeModelConfig(model=model_id, num_layers=layers, num_kv_heads=heads,
                                     head_dim=head_dim, dtype=DTYPES[dtype]),
        cache_config=FakeCacheConfig(block_size=block_size),
        parallel_config=FakeParallelConfig(),
        kv_transfer_config=FakeKVTransferConfig(kv_role=kv_role,
                                                kv_connector_extra_config=dict(extra or {})))


# --------------------------------------------------------------------------
# vLLM's data structures, the fields a connector reads


class Request:
    def __init__(self, request_id: str, prompt_token_ids: list[int], max_tokens: int = 1,
                 cache_salt: Optional[str] = None):
        self.request_id = request_id
        self.cache_salt = cache_salt
        self.lora_request = None
        self.prompt_token_ids = list(prompt_token_ids)
        self.num_prompt_tokens = len(self.prompt_token_ids)
        self._all_token_ids = list(prompt_token_ids)
        self.output_token_ids: list[int] = []
        self.num_computed_tokens = 0
        self.max_tokens = max_tokens
        self.block_ids: list[int] = []  # the scheduler's, not vLLM's Request
        self.mm_features: list = []

    @property
    def num_tokens(self) -> int:
        return len(self._all_token_ids)

    @property
    def all_token_ids(self) -> list[int]:
        return list(self._all_token_ids)

    def append_output_token_ids(self, token: int) -> None:
        self._all_token_ids.append(token)
        self.output_token_ids.append(token)


class KVCacheBlocks:
    """vllm.v1.core.kv_cache_manager.KVCacheBlocks: one KV cache group."""

    def __init__(self, block_ids: list[int]):
        self._ids = list(block_ids)

    def get_block_ids(self) -> tuple[list[int], ...]:
        return (list(self._ids),)


@dataclass
class NewRequestData:
    req_id: str
    prompt_token_ids: list[int]
    block_ids: tuple[list[int], ...]
    num_computed_tokens: int
    mm_features: list = field(default_factory=list)


@dataclass
class CachedRequestData:
    req_ids: list[str] = field(default_factory=list)
    resumed_req_ids: set = field(default_factory=set)
    new_token_ids: list = field(default_factory=list)
    all_token_ids: dict = field(default_factory=dict)
    new_block_ids: list = field(default_factory=list)
    num_computed_tokens: list = field(default_factory=list)
    num_output_tokens: list = field(default_factory=list)


@dataclass
class SchedulerOutput:
    scheduled_new_reqs: list[NewRequestData]
    scheduled_cached_reqs: CachedRequestData
    num_scheduled_tokens: dict[str, int]
    total_num_scheduled_tokens: int
    finished_req_ids: set[str]
    kv_connector_metadata: Any = None


@dataclass
class ForwardContext:
    no_compile_layers: dict = field(default_factory=dict)
    attn_metadata: Any = None
    virtual_engine: int = 0


# --------------------------------------------------------------------------
# The model: deterministic KV


def prefix_seeds(tokens: list[int]) -> list[int]:
    """seeds[p] depends on tokens[0..p]: KV at p depends on the whole prefix."""
    seeds, s = [], 0
    for t in tokens:
        s = (s * 1000003 + int(t) + 1) % 2147483647
        seeds.append(s)
    return seeds


def kv_values(seeds: list[int], layer: int, heads: int, head_dim: int,
              dtype: torch.dtype) -> torch.Tensor:
    """KV of positions with these seeds at `layer`: [n, 2, heads, head_dim].
    Multiples of 1/128 in [-8, 8): exact in fp16; never 99 (the fill)."""
    s = torch.tensor(seeds, dtype=torch.int64).view(-1, 1, 1, 1)
    kv = torch.arange(2, dtype=torch.int64).view(1, 2, 1, 1)
    h = torch.arange(heads, dtype=torch.int64).view(1, 1, heads, 1)
    d = torch.arange(head_dim, dtype=torch.int64).view(1, 1, 1, head_dim)
    x = (s * 1000003 + layer * 7919 + kv * 104729 + h * 1299709 + d * 15485863) % 2039
    return (x.to(torch.float32) / 128.0 - 8.0).to(dtype)


def expected_block(tokens: list[int], index: int, block_size: int, layers: int, heads: int,
                   head_dim: int, dtype: torch.dtype) -> torch.Tensor:
    """What block `index` of `tokens` holds: [layers, 2, block_size, H, D]."""
    seeds = prefix_seeds(tokens[:(index + 1) * block_size])[index * block_size:]
    return torch.stack([kv_values(seeds, l, heads, head_dim, dtype).permute(1, 0, 2, 3)
                        for l in range(layers)])


def sample(tokens: list[int]) -> int:
    return prefix_seeds(tokens)[-1] % 50000


FILL = 99.0  # what a page holds before the model or a load writes it


class PagedKvCache:
    """vLLM's per-layer KV tensors, named as vLLM names attention layers."""

    def __init__(self, layers: int, num_pages: int, block_size: int, heads: int, head_dim: int,
                 dtype: torch.dtype, layout: str = "flash_attn", device: str = "cpu"):
        if layout not in ("flash_attn", "flashinfer"):
            raise ValueError(layout)
        self.layout = layout
        self.device = torch.device(device)
        self.block_size, self.heads, self.head_dim, self.dtype = block_size, heads, head_dim, dtype
        shape = ((2, num_pages, block_size, heads, head_dim) if layout == "flash_attn"
                 else (num_pages, 2, block_size, heads, head_dim))
        self.names = [f"model.layers.{l}.self_attn.attn" for l in range(layers)]
        self.tensors = {n: torch.full(shape, FILL, dtype=dtype, device=self.device)
                        for n in self.names}

    def page(self, layer: int, page: int) -> torch.Tensor:
        """[2, block_size, H, D] view of one page of one layer (on the cache's
        device)."""
        t = self.tensors[self.names[layer]]
        return t[:, page] if self.layout == "flash_attn" else t[page]

    def block(self, page: int) -> torch.Tensor:
        """A host copy of one page across layers: [layers, 2, block_size, H, D]."""
        return torch.stack([self.page(l, page) for l in range(len(self.names))]).cpu().clone()

    def write(self, layer: int, pages: list[int], slots: list[int], values: torch.Tensor) -> None:
        """values [n, 2, H, D] into (page, slot) pairs."""
        t = self.tensors[self.names[layer]]
        p = torch.tensor(pages, dtype=torch.int64, device=self.device)
        s = torch.tensor(slots, dtype=torch.int64, device=self.device)
        values = values.to(self.device)
        if self.layout == "flash_attn":
            t[:, p, s] = values.permute(1, 0, 2, 3)
        else:
            t[p, :, s] = values


class BlockAllocator:
    """Free vLLM block ids; with prefix caching, full blocks of finished
    requests stay cached by their token prefix (never evicted: size the pool)."""

    def __init__(self, num_pages: int, block_size: int, prefix_caching: bool = False):
        self.free = list(range(num_pages))
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self.cached: dict[tuple, int] = {}

    def allocate(self, n: int) -> list[int]:
        n = max(0, n)
        if n > len(self.free):
            raise RuntimeError(f"out of KV blocks: {n} wanted, {len(self.free)} free")
        ids, self.free = self.free[:n], self.free[n:]
        return ids

    def computed_prefix(self, request: Request) -> list[int]:
        """vLLM's get_computed_blocks: the locally cached full blocks of the
        prompt, never all of it (the last token is always computed)."""
        if not self.prefix_caching:
            return []
        bs = self.block_size
        out = []
        for i in range(max(0, request.num_tokens - 1) // bs):
            page = self.cached.get(tuple(request.all_token_ids[:(i + 1) * bs]))
            if page is None:
                break
            out.append(page)
        return out

    def release(self, request: Request) -> None:
        bs = self.block_size
        keep = set()
        if self.prefix_caching:
            for i, page in enumerate(request.block_ids[:request.num_computed_tokens // bs]):
                self.cached.setdefault(tuple(request.all_token_ids[:(i + 1) * bs]), page)
            keep = set(self.cached.values())
        self.free.extend(b for b in request.block_ids if b not in keep)


# --------------------------------------------------------------------------
# The engine


@dataclass
class StepRecord:
    """What one step did, for the tests."""

    matched: dict[str, int] = field(default_factory=dict)  # new requests: external tokens
    local: dict[str, int] = field(default_factory=dict)  # new requests: local prefix hit
    scheduled: dict[str, int] = field(default_factory=dict)
    computed: dict[str, tuple[int, int]] = field(default_factory=dict)  # by the model
    metadata: Any = None  # the connector's metadata, as the worker got it
    invalid_block_ids: set = field(default_factory=set)
    rolled_back: dict[str, int] = field(default_factory=dict)  # request -> tokens kept
    finished: list[str] = field(default_factory=list)


@dataclass
class RequestResult:
    """A finished request: every full prompt block's bytes when it finished."""

    tokens: list[int]
    block_ids: list[int]
    blocks: list[torch.Tensor]
    matched: int  # external tokens when first scheduled
    computed_tokens: int = 0  # positions the model computed (recomputes included)


class FakeEngine:
    """One vLLM engine (one TP rank): a scheduler-role and a worker-role
    connector, as vLLM makes them in its two processes."""

    def __init__(self, vllm_config: FakeVllmConfig, *, num_pages: int = 256,
                 layout: str = "flash_attn", cache_heads: Optional[int] = None,
                 cache_dtype: Optional[torch.dtype] = None, prefix_caching: bool = False,
                 max_tokens_per_step: int = 1 << 30, device: str = "cpu"):
        mc = vllm_config.model_config
        pc = vllm_config.parallel_config
        self.config = vllm_config
        self.block_size = vllm_config.cache_config.block_size
        self.max_tokens_per_step = max_tokens_per_step
        self.scheduler_connector = KvfabricConnector(vllm_config, KVConnectorRole.SCHEDULER)
        self.worker_connector = KvfabricConnector(vllm_config, KVConnectorRole.WORKER)
        # The KV cache as the worker allocated it; cache_heads / cache_dtype
        # let a test register tensors that contradict the config.
        self.kv = PagedKvCache(mc.get_num_layers(pc), num_pages, self.block_size,
                               cache_heads or mc.get_num_kv_heads(pc), mc.get_head_size(),
                               cache_dtype or mc.dtype, layout, device)
        self.worker_connector.register_kv_caches(dict(self.kv.tensors))
        self.allocator = BlockAllocator(num_pages, self.block_size, prefix_caching)
        self.waiting: list[Request] = []
        self.running: list[Request] = []
        self.requests: dict[str, Request] = {}
        self.matched: dict[str, int] = {}
        self.computed_tokens: dict[str, int] = {}
        self.results: dict[str, RequestResult] = {}
        self._finished_ids: set[str] = set()
        self._preempted: set[str] = set()
        self.steps: list[StepRecord] = []

    # ---- requests -----------------------------------------------------------
    def add_request(self, request_id: str, tokens: list[int], max_tokens: int = 1,
                    cache_salt: Optional[str] = None) -> Request:
        r = Request(request_id, tokens, max_tokens, cache_salt)
        self.requests[request_id] = r
        self.waiting.append(r)
        return r

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def preempt(self, request_id: str) -> None:
        """vLLM's recompute preemption: the request's blocks are freed, its
        progress forgotten, and it waits first in line to be resumed."""
        r = self.requests[request_id]
        self.running.remove(r)
        self.allocator.free.extend(r.block_ids)
        r.block_ids = []
        r.num_computed_tokens = 0
        self._preempted.add(request_id)
        self.waiting.insert(0, r)

    # ---- scheduler ------------------------------------------------------------
    def schedule(self, record: StepRecord) -> SchedulerOutput:
        sc, bs = self.scheduler_connector, self.block_size
        budget = self.max_tokens_per_step
        new_reqs: list[NewRequestData] = []
        cached = CachedRequestData()
        num_scheduled: dict[str, int] = {}
        for r in self.running:
            n = min(r.num_tokens - r.num_computed_tokens, budget)
            if n <= 0:
                continue
            new_ids = self.allocator.allocate(
                math.ceil((r.num_computed_tokens + n) / bs) - len(r.block_ids))
            r.block_ids.extend(new_ids)
            cached.req_ids.append(r.request_id)
            cached.new_block_ids.append((new_ids,))
            cached.num_computed_tokens.append(r.num_computed_tokens)
            cached.num_output_tokens.append(len(r.output_token_ids))
            num_scheduled[r.request_id] = n
            budget -= n
        for r in list(self.waiting):
            if budget <= 0:
                break
            local = self.allocator.computed_prefix(r)
            num_local = len(local) * bs
            ext, load_async = sc.get_num_new_matched_tokens(r, num_local)
            assert load_async is False, "the harness drives synchronous loads only"
            if ext is None:
                continue
            num_computed = num_local + ext
            n = min(r.num_tokens - num_computed, budget)
            assert n > 0, "a connector claimed the whole prompt"
            r.block_ids = local + self.allocator.allocate(
                math.ceil((num_computed + n) / bs) - len(local))
            sc.update_state_after_alloc(r, KVCacheBlocks(r.block_ids), ext)
            r.num_computed_tokens = num_computed
            if r.request_id in self._preempted:  # vLLM: a resumed cached request
                self._preempted.discard(r.request_id)
                cached.req_ids.append(r.request_id)
                cached.resumed_req_ids.add(r.request_id)
                cached.new_block_ids.append((list(r.block_ids),))
                cached.num_computed_tokens.append(num_computed)
                cached.num_output_tokens.append(len(r.output_token_ids))
                cached.all_token_ids[r.request_id] = r.all_token_ids
            else:
                new_reqs.append(NewRequestData(r.request_id, list(r.prompt_token_ids),
                                               (list(r.block_ids),), num_computed))
            num_scheduled[r.request_id] = n
            budget -= n
            record.matched[r.request_id] = ext
            record.local[r.request_id] = num_local
            self.matched.setdefault(r.request_id, ext)
            self.waiting.remove(r)
            self.running.append(r)
        so = SchedulerOutput(new_reqs, cached, num_scheduled, sum(num_scheduled.values()),
                             self._finished_ids)
        self._finished_ids = set()
        so.kv_connector_metadata = sc.build_connector_meta(so)
        # vLLM's _update_after_schedule.
        for rid, n in num_scheduled.items():
            r = self.requests[rid]
            record.computed[rid] = (r.num_computed_tokens, r.num_computed_tokens + n)
            r.num_computed_tokens += n
        record.scheduled = dict(num_scheduled)
        return so

    # ---- worker -------------------------------------------------------------
    def execute(self, so: SchedulerOutput, record: StepRecord,
                after_start_load: Optional[Callable[["FakeEngine", StepRecord], None]] = None,
                after_layer_load: Optional[Callable[["FakeEngine", StepRecord, int], None]] = None,
                layer_waits: bool = True):
        """after_layer_load(engine, record, layer) runs once the layer's
        wait_for_layer_load returned, before its forward (what the layer's
        attention would read); layer_waits=False skips every
        wait_for_layer_load (the connector must still report load errors)."""
        wc = self.worker_connector
        meta = pickle.loads(pickle.dumps(so.kv_connector_metadata))  # a process boundary
        record.metadata = meta
        wc.bind_connector_metadata(meta)
        wc.start_load_kv(ForwardContext())
        if after_start_load is not None:
            after_start_load(self, record)
        for layer, name in enumerate(self.kv.names):
            if layer_waits:
                wc.wait_for_layer_load(name)
            if after_layer_load is not None:
                after_layer_load(self, record, layer)
            self._forward_layer(layer, record)
            wc.save_kv_layer(name, self.kv.tensors[name], None)
        wc.wait_for_save()
        finished = wc.get_finished(so.finished_req_ids)
        assert finished == (None, None)
        record.invalid_block_ids = set(wc.get_block_ids_with_load_errors())
        wc.clear_connector_metadata()

    def _forward_layer(self, layer: int, record: StepRecord) -> None:
        bs, kv = self.block_size, self.kv
        for rid, (begin, end) in record.computed.items():
            r = self.requests[rid]
            seeds = prefix_seeds(r.all_token_ids[:end])[begin:]
            positions = range(begin, end)
            kv.write(layer, [r.block_ids[p // bs] for p in positions], [p % bs for p in positions],
                     kv_values(seeds, layer, kv.heads, kv.head_dim, kv.dtype))

    # ---- scheduler: update_from_output -------------------------------------------
    def update_from_output(self, record: StepRecord) -> None:
        bs = self.block_size
        for rid, (begin, end) in record.computed.items():
            self.computed_tokens[rid] = self.computed_tokens.get(rid, 0) + end - begin
        for r in list(self.running):
            if r.request_id not in record.scheduled:
                continue
            bad = [i for i, b in enumerate(r.block_ids) if b in record.invalid_block_ids]
            if bad:  # vLLM recomputes from the first block that did not load
                r.num_computed_tokens = min(r.num_computed_tokens, bad[0] * bs)
                record.rolled_back[r.request_id] = r.num_computed_tokens
                continue
            if r.num_computed_tokens < r.num_tokens:
                continue  # a chunk of its prefill
            r.append_output_token_ids(sample(r.all_token_ids))
            if len(r.output_token_ids) >= r.max_tokens:
                self._finish(r, record)

    def _finish(self, r: Request, record: StepRecord) -> None:
        bs = self.block_size
        full = r.num_prompt_tokens // bs
        self.results[r.request_id] = RequestResult(
            tokens=list(r.prompt_token_ids), block_ids=list(r.block_ids[:full]),
            blocks=[self.kv.block(b) for b in r.block_ids[:full]],
            matched=self.matched.get(r.request_id, 0),
            computed_tokens=self.computed_tokens.get(r.request_id, 0))
        delay, params = self.scheduler_connector.request_finished(r, list(r.block_ids))
        assert delay is False and params is None
        self.running.remove(r)
        self.allocator.release(r)
        self._finished_ids.add(r.request_id)
        record.finished.append(r.request_id)

    # ---- steps ----------------------------------------------------------------
    def step(self, before_execute: Optional[Callable[["FakeEngine", StepRecord], None]] = None,
             after_start_load: Optional[Callable[["FakeEngine", StepRecord], None]] = None,
             after_layer_load: Optional[Callable[["FakeEngine", StepRecord, int], None]] = None,
             layer_waits: bool = True) -> StepRecord:
        record = StepRecord()
        so = self.schedule(record)
        if before_execute is not None:
            before_execute(self, record)
        self.execute(so, record, after_start_load, after_layer_load, layer_waits)
        self.update_from_output(record)
        self.steps.append(record)
        return record

    def run(self, max_steps: int = 1000) -> dict[str, RequestResult]:
        for _ in range(max_steps):
            if not self.has_unfinished():
                return self.results
            self.step()
        raise RuntimeError(f"requests unfinished after {max_steps} steps")

    def expected(self, tokens: list[int], index: int) -> torch.Tensor:
        """What block `index` of `tokens` holds in this engine's KV tensors."""
        kv = self.kv
        return expected_block(tokens, index, self.block_size, len(kv.names), kv.heads,
                              kv.head_dim, kv.dtype)

    def close(self) -> None:
        self.worker_connector.shutdown()


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Byte equality (no float semantics: NaN == NaN, -0 != +0)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return a.contiguous().view(torch.uint8).equal(b.contiguous().view(torch.uint8))


# --------------------------------------------------------------------------
# An engine in its own process


def run_spec(spec: dict) -> dict:
    """Runs spec["requests"] ([{"id", "tokens"}]) to completion on a FakeEngine
    made from spec["config"] (make_config's arguments) and spec["engine"]
    (FakeEngine's keywords); returns what the tests compare."""
    engine_kw = dict(spec.get("engine", {}))
    if "cache_dtype" in engine_kw:
        engine_kw["cache_dtype"] = DTYPES[engine_kw["cache_dtype"]]
    engine = FakeEngine(make_config(**spec["config"]), **engine_kw)
    try:
        for r in spec["requests"]:
            engine.add_request(r["id"], r["tokens"])
        results = engine.run()
        return {
            "results": {rid: vars(res) for rid, res in results.items()},
            "invalid_block_ids": sorted(set().union(*(s.invalid_block_ids for s in engine.steps))),
            "stats": dict(engine.worker_connector.worker.stats),
            "layout_error": engine.worker_connector.worker.layout_error,
        }
    finally:
        engine.close()


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] != "run":
        print(f"usage: {argv[0]} run SPEC.json OUT.pt", file=sys.stderr)
        return 2
    with open(argv[2], encoding="utf-8") as f:
        spec = json.load(f)
    torch.save(run_spec(spec), argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
