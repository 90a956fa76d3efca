"""The worker-side half of the connector: moves KV between vLLM's pages and
kvfabric.

Lives in each vLLM worker process (one per TP rank). register_kv_caches
describes vLLM's per-layer KV tensors once (kvfabric.PagedKv.vllm), after
checking them against the layout the namespace was registered with; each
step it starts the loads the scheduler asked for, waits for each layer before
vLLM's forward of that layer, and stores the step's newly computed full
blocks after the forward.

Loads pipeline per layer: uncompressed blocks land layer by layer (every
block's layer l, then l + 1), and wait_for_layer_load(layer) waits only until
that layer of every load of the step is in the pages
(PagedTransfer.wait_layer), so vLLM computes layer l while later layers are
still landing. Blocks stored compressed land whole (their first layer waits
for all of them). The per-block results (and so the load errors) are
collected once, at the last layer's wait, or at the latest by wait_for_save /
get_block_ids_with_load_errors / shutdown, so nothing is lost if vLLM skips a
wait.

KV caches may be host tensors or CUDA tensors (all on one device). For CUDA
ones a save runs on the torch CUDA stream current when it starts
(torch.cuda.current_stream()), so it reads the pages after the forward queued
there wrote them. Loads run on a stream of their own, made to wait for the
work already on the current stream (the pages they fill are free by then):
were they on the compute stream, the forward's kernels would queue behind
every layer's scatter and nothing would pipeline. A load's layer is in the
pages, for any stream, once its wait returns (the wait ends when the
scatter's work on the device has).

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


def current_stream_of(device: Any) -> int:
    """The cudaStream_t of torch's current stream on `device` when it is a
    CUDA device, else 0 (the default stream; what host pages ignore). Never
    fails: a torch without CUDA answers 0."""
    if getattr(device, "type", None) != "cuda":
        return 0
    try:
        import torch
        return int(torch.cuda.current_stream(device).cuda_stream)
    except Exception as e:  # noqa: BLE001 - a torch without CUDA: the default stream
        logger.debug("kvfabric: no current CUDA stream on %s (%s); using the default stream",
                     device, e)
        return 0


def check_kv_caches(config: ConnectorConfig, names: list[str], kv_caches: dict) -> Optional[str]:
    """Why vLLM's KV tensors cannot hold the configured layout, or None.

    Accepted: one tensor per layer, every one on the CPU or every one on the
    same CUDA device, shaped
    [2, num_pages, block_size, H, D] (FlashAttention) or
    [num_pages, 2, block_size, H, D] (FlashInfer), H and D and the dtype those
    of the model config for this TP rank, as many layers as the model has.
    """
    if len(names) != config.num_layers:
        return (f"{len(names)} KV cache layers registered, the model config has "
                f"{config.num_layers}")
    want = (config.block_tokens, config.num_kv_heads, config.head_dim)
    pages = None
    first_device = None
    for name in names:
        t = kv_caches[name]
        device = getattr(t, "device", None)
        kind = getattr(device, "type", "cpu")
        if kind not in ("cpu", "cuda"):
            return (f"layer {name}: KV cache on {device}: kvfabric moves host or CUDA "
                    "device memory only")
        if first_device is None:
            first_device = device
        elif device != first_device:
            return (f"layer {name}: KV cache on {device}, other layers on {first_device} "
                    "(every layer must be on one device)")
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
        # Layer name -> index in the registered layer order.
        self._layer_index: dict[str, int] = {}
        self._cuda_device = None  # the torch.device of CUDA KV caches, else None
        self._load_stream = None  # torch.cuda.Stream of the loads (CUDA caches)
        self._failed_pages: set[int] = set()
        self._failed_requests: set[str] = set()
        self.stats: Counter = Counter()  # loaded, load_failed, saved, save_failed, ...

    @property
    def namespace(self) -> Any:
        return self._ns

    def register_kv_caches(self, kv_caches: dict) -> None:
        names = layer_order(list(kv_caches))
        self._layer_index = {name: i for i, name in enumerate(names)}
        error = check_kv_caches(self._config, names, kv_caches)
        if error is None:
            try:
                # The page size is read from the shape (checked above).
                self._paged = kvfabric.PagedKv.vllm([kv_caches[n] for n in names])
            except kvfabric.Error as e:
                error = f"PagedKv.vllm refused the KV caches: {e}"
        self.layout_error = error
        self._cuda_device = None
        if error is None:
            device = getattr(kv_caches[names[0]], "device", None)
            if getattr(device, "type", "cpu") == "cuda":
                self._cuda_device = device
        if error is not None:
            self._paged = None
            logger.error("kvfabric: KV caches refused, no block will be loaded or saved "
                         "(vLLM recomputes): %s", error)

    def _stream(self) -> int:
        return current_stream_of(self._cuda_device)

    def _load_stream_handle(self) -> int:
        """The loads' own CUDA stream (made once), ordered after the work on
        the current stream; 0 for host caches or a torch without CUDA."""
        if self._cuda_device is None:
            return 0
        try:
            import torch
            if self._load_stream is None:
                self._load_stream = torch.cuda.Stream(self._cuda_device)
            self._load_stream.wait_stream(torch.cuda.current_stream(self._cuda_device))
            return int(self._load_stream.cuda_stream)
        except Exception as e:  # noqa: BLE001 - fall back to the current stream
            logger.debug("kvfabric: no load stream on %s (%s)", self._cuda_device, e)
            return self._stream()

    # ---- loads ------------------------------------------------------------
    def start_loads(self, meta: KvfabricConnectorMetadata) -> None:
        self.finish_loads()  # a previous step's, should its waits have been skipped
        self._failed_requests = set()
        stream = self._load_stream_handle()
        for r in meta.loads():
            if self._paged is None:
                self._fail(r, r.load.page_ids, self.layout_error)
                continue
            try:
                transfer = self._client.start_load_pages(self._ns, unpack_chain(r.chain),
                                                         r.load.begin, self._paged,
                                                         r.load.page_ids, stream=stream)
            except kvfabric.Error as e:
                self._fail(r, r.load.page_ids, str(e))
                continue
            self._inflight.append((r, transfer))

    @property
    def pending_loads(self) -> int:
        """Loads started this step whose results are not collected yet."""
        return len(self._inflight)

    def wait_for_layer(self, layer_name: str) -> None:
        """Waits until layer `layer_name` of every load of the step is in the
        pages (or its load finished). At the last layer, collects the loads'
        results (finish_loads). A name that is not a registered layer waits
        for everything."""
        index = self._layer_index.get(layer_name)
        if index is None:
            self.finish_loads()
            return
        for r, transfer in self._inflight:
            try:
                transfer.wait_layer(index)
            except kvfabric.Error as e:
                # Not expected (the index is in range): wait for the whole
                # step instead; wait() reports each load's blocks.
                logger.warning("kvfabric: request %s: waiting for layer %d: %s", r.req_id,
                               index, e)
                self.finish_loads()
                return
        if index == len(self._layer_index) - 1:
            self.finish_loads()

    def finish_loads(self) -> None:
        """Waits for every load started this step and collects its per-block
        results (idempotent)."""
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
        stream = self._stream()  # where vLLM's forward wrote the pages
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
                                                  codec=self._config.codec, stream=stream)
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
