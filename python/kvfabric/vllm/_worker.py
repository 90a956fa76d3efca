"""The worker-side half of the connector: moves KV between vLLM's pages and
kvfabric.

Lives in each vLLM worker process (one per TP rank). register_kv_caches
describes vLLM's per-layer KV tensors once (kvfabric.PagedKv.vllm), after
checking them against the layout the namespace was registered with; each
step it starts the loads the scheduler asked for, waits for them at the first
layer, and stores the step's newly computed full blocks after the forward.

A kvfabric block carries every layer of its tokens, so there is no per-layer
pipelining: the first wait_for_layer_load completes every load of the step
(docs/vllm.md, "Not done").

Failures never put wrong bytes in vLLM's pages: a block that cannot be loaded
(not found, evicted or removed since the lookup, its owners unreachable, a
refused layout) leaves its page untouched and its vLLM block id is reported by
take_load_errors, so vLLM recomputes it. A request with a failed load saves
nothing that step (what it computed after the failed block is recomputed).

Thread-safety: vLLM calls the worker side from its model-runner thread; so
must others.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any, Optional

import kvfabric

from ._config import ConnectorConfig, kv_dtype_of_torch
from ._metadata import KvfabricConnectorMetadata, RequestMeta, unpack_chain

logger = logging.getLogger("kvfabric.vllm")


def layer_order(names: list[str]) -> list[str]:
    """vLLM's layer order: by the one integer in each layer name
    ("model.layers.7.self_attn.attn" is layer 7), as vLLM's
    extract_layer_index reads it; the given order if a name has none."""
    indices = []
    for name in names:
        ints = [int(p) for p in re.split(r"\.", name) if p.isdigit()]
        if len(ints) != 1:
            return list(names)
        indices.append(ints[0])
    return [n for _, n in sorted(zip(indices, names))]


def check_kv_caches(config: ConnectorConfig, names: list[str], kv_caches: dict) -> Optional[str]:
    """Why vLLM's KV tensors cannot hold the configured layout, or None.

    Accepted: one tensor per layer, on the CPU, shaped
    [2, num_pages, block_size, H, D] (FlashAttention) or
    [num_pages, 2, block_size, H, D] (FlashInfer), H and D and the dtype those
    of the model config for this TP rank, as many layers as the model has.
    """
    if len(names) != config.num_layers:
        return (f"{len(names)} KV cache layers registered, the model config has "
                f"{config.num_layers}")
    want = (config.block_tokens, config.num_kv_heads, config.head_dim)
    pages = None
    for name in names:
        t = kv_caches[name]
        device = getattr(getattr(t, "device", None), "type", "cpu")
        if device != "cpu":
            return (f"layer {name}: KV cache on {device}: this version moves host "
                    "memory only (CUDA KV caches need the GPU data path, issue 13)")
        shape = tuple(t.shape)
        if len(shape) != 5 or 2 not in shape[:2]:
            return (f"layer {name}: shape {list(shape)} is neither [2, pages, block, H, D] "
                    "nor [pages, 2, block, H, D]")
        if shape[2:] != want:
            return (f"layer {name}: [block_size, num_kv_heads, head_dim] = {list(shape[2:])}, "
                    f"the model config says {list(want)}")
        dtype = kv_dtype_of_torch(t.dtype)
        if dtype != config.dtype:
            return f"layer {name}: dtype {t.dtype}, the model config says {config.dtype}"
        n = shape[1] if shape[0] == 2 and shape[1] != 2 else shape[0]
        if pages is not None and n != pages:
            return f"layer {name}: {n} pages, other layers have {pages}"
        pages = n
    return None


class WorkerSide:
    """Loads and saves (KVConnectorBase_V1's worker-side methods)."""

    def __init__(self, config: ConnectorConfig, client: "kvfabric.Client", namespace: Any):
        self._config = config
        self._client = client
        self._ns = namespace
        self._paged = None
        # Why the KV caches were refused; None while registered or not yet.
        self.layout_error: Optional[str] = "register_kv_caches was not called"
        self._inflight: list[tuple[RequestMeta, Any]] = []
        self._failed_pages: set[int] = set()
        self._failed_requests: set[str] = set()
        self.stats: Counter = Counter()  # loaded, load_failed, saved, save_failed, ...

    @property
    def namespace(self) -> Any:
        return self._ns

    def register_kv_caches(self, kv_caches: dict) -> None:
        names = layer_order(list(kv_caches))
        error = check_kv_caches(self._config, names, kv_caches)
        if error is None:
            try:
                # The page size is read from the shape (checked above).
                self._paged = kvfabric.PagedKv.vllm([kv_caches[n] for n in names])
            except kvfabric.Error as e:
                error = f"PagedKv.vllm refused the KV caches: {e}"
        self.layout_error = error
        if error is not None:
            self._paged = None
            logger.error("kvfabric: KV caches refused, no block will be loaded or saved "
                         "(vLLM recomputes): %s", error)

    # ---- loads ------------------------------------------------------------
    def start_loads(self, meta: KvfabricConnectorMetadata) -> None:
        self._failed_requests = set()
        for r in meta.loads():
            if self._paged is None:
                self._fail(r, r.load.page_ids, self.layout_error)
                continue
            try:
                transfer = self._client.start_load_pages(self._ns, unpack_chain(r.chain),
                                                         r.load.begin, self._paged,
                                                         r.load.page_ids)
            except kvfabric.Error as e:
                self._fail(r, r.load.page_ids, str(e))
                continue
            self._inflight.append((r, transfer))

    def finish_loads(self) -> None:
        """Waits for every load started this step (idempotent)."""
        inflight, self._inflight = self._inflight, []
        for r, transfer in inflight:
            try:
                results = transfer.wait()
            except kvfabric.Error as e:
                self._fail(r, r.load.page_ids, str(e))
                continue
            failed = [(page, res) for page, res in zip(r.load.page_ids, results) if not res.ok]
            self.stats["loaded"] += len(results) - len(failed)
            if failed:
                self._fail(r, [p for p, _ in failed],
                           ", ".join(sorted({f"{res.code}: {res.message}" for _, res in failed})))

    def _fail(self, r: RequestMeta, page_ids: list[int], why: Optional[str]) -> None:
        self.stats["load_failed"] += len(page_ids)
        self._failed_pages.update(page_ids)
        self._failed_requests.add(r.req_id)
        logger.warning("kvfabric: request %s: %d of blocks [%d, %d) not loaded, vLLM "
                       "recomputes them: %s", r.req_id, len(page_ids), r.load.begin,
                       r.load.end, why)

    def take_load_errors(self) -> set[int]:
        self.finish_loads()
        failed, self._failed_pages = self._failed_pages, set()
        return failed

    # ---- saves ------------------------------------------------------------
    def save(self, meta: KvfabricConnectorMetadata) -> None:
        """Stores the step's save ranges (after the forward wrote them)."""
        self.finish_loads()
        for r in meta.saves():
            if self._paged is None:
                self.stats["save_skipped"] += r.save.end - r.save.begin
                continue
            if r.req_id in self._failed_requests:
                # Its KV after the failed block was computed over a hole.
                self.stats["save_skipped"] += r.save.end - r.save.begin
                continue
            try:
                results = self._client.save_pages(self._ns, unpack_chain(r.chain), r.save.begin,
                                                  self._paged, r.save.page_ids,
                                                  codec=self._config.codec)
            except kvfabric.Error as e:
                self.stats["save_failed"] += r.save.end - r.save.begin
                logger.warning("kvfabric: request %s: saving blocks [%d, %d) failed: %s",
                               r.req_id, r.save.begin, r.save.end, e)
                continue
            bad = [res for res in results if not res.ok]
            self.stats["saved"] += len(results) - len(bad)
            if bad:
                self.stats["save_failed"] += len(bad)
                logger.warning("kvfabric: request %s: %d of blocks [%d, %d) not saved: %s",
                               r.req_id, len(bad), r.save.begin, r.save.end,
                               ", ".join(sorted({f"{res.code}: {res.message}" for res in bad})))

    def shutdown(self) -> None:
        self.finish_loads()
