"""The scheduler-side half of the connector: lookups and per-step metadata.

Lives in vLLM's scheduler process. It hashes each request's prompt into the
chain kvfabric stores it under (the binding's hash_tokens: exactly the C++
HashSequence keys), asks the cluster for the longest stored prefix, and each
step tells the workers which blocks to load into which vLLM blocks and which
newly computed full blocks to save.

Thread-safety: vLLM calls the scheduler side from one thread; so must others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import kvfabric

from ._config import ConnectorConfig
from ._metadata import BlockRange, KvfabricConnectorMetadata, RequestMeta, pack_chain

logger = logging.getLogger("kvfabric.vllm")


@dataclass
class _RequestState:
    chain: Any  # kvfabric.Chain of the prompt's full blocks
    num_blocks: int  # len(chain)
    local_tokens: int = 0  # vLLM's own prefix-cache hit, last lookup
    hit_blocks: int = 0  # blocks [0, hit) are local or in the cluster, last lookup
    saved_blocks: int = 0  # blocks [0, saved) need no save
    # Tokens vLLM will have computed after the last step emitted (None before
    # the first): fewer at the next step means vLLM rolled the request back.
    expected_computed: Optional[int] = None
    # hit_blocks if a lookup ran since the last step emitted (a new or a
    # resumed request), else 0.
    fresh_hit: int = 0
    block_ids: list[int] = field(default_factory=list)  # the request's vLLM blocks
    pending_load: Optional[BlockRange] = None  # for the next build_connector_meta


def first_group(block_ids: Any) -> list[int]:
    """vLLM's block ids of KV cache group 0, from KVCacheBlocks, a tuple of
    per-group lists (NewRequestData.block_ids) or a flat list."""
    if block_ids is None:
        return []
    if hasattr(block_ids, "get_block_ids"):
        block_ids = block_ids.get_block_ids()
    block_ids = list(block_ids)
    if block_ids and isinstance(block_ids[0], (list, tuple)):
        return [int(b) for b in block_ids[0]]
    return [int(b) for b in block_ids]


def request_extra(request: Any) -> bytes:
    """What besides the token ids decides a request's KV, hashed into every
    key of its chain (hash_tokens' `extra`): its LoRA adapter, its cache salt
    and its multimodal inputs' hashes, as vLLM's own prefix cache keys them.
    Empty for a plain text request, whose chain is then exactly
    HashSequence(tokens). Multimodal hashes go into every block (vLLM puts
    them into the blocks they overlap): correct, with less sharing."""
    parts = []
    lora = getattr(request, "lora_request", None)
    if lora is not None:
        parts.append(f"lora={getattr(lora, 'lora_name', '')}/{getattr(lora, 'lora_int_id', '')}")
    salt = getattr(request, "cache_salt", None)
    if salt:
        parts.append(f"salt={salt}")
    mm = [getattr(f, "identifier", None) or getattr(f, "mm_hash", None)
          for f in (getattr(request, "mm_features", None) or [])]
    mm = [str(h) for h in mm if h] or [str(h) for h in (getattr(request, "mm_hashes", None) or [])]
    if mm:
        parts.append("mm=" + ",".join(mm))
    return "\n".join(parts).encode()


def _resumed_ids(cached: Any) -> set:
    """Requests whose block list is replaced this step (resumed after a
    preemption): vLLM's resumed_req_ids, or the older resumed_from_preemption
    flags."""
    ids = getattr(cached, "resumed_req_ids", None)
    if ids is not None:
        return set(ids)
    flags = getattr(cached, "resumed_from_preemption", None) or []
    return {rid for rid, f in zip(cached.req_ids, flags) if f}


class SchedulerSide:
    """Lookups and metadata (KVConnectorBase_V1's scheduler-side methods)."""

    def __init__(self, config: ConnectorConfig, client: "kvfabric.Client",
                 namespaces: list):
        self._config = config
        self._client = client
        # One namespace per TP rank: a prefix counts only where every rank
        # stored its shard of it.
        self._namespaces = namespaces
        self._requests: dict[str, _RequestState] = {}

    @property
    def block_tokens(self) -> int:
        return self._config.block_tokens

    def _state(self, request: Any) -> Optional[_RequestState]:
        rid = request.request_id
        state = self._requests.get(rid)
        if state is None:
            tokens = getattr(request, "prompt_token_ids", None)
            if tokens is None:  # prompt embeddings: nothing to hash
                return None
            chain = self._namespaces[0].hash_tokens(list(tokens), extra=request_extra(request))
            state = _RequestState(chain=chain, num_blocks=len(chain))
            self._requests[rid] = state
        return state

    def get_num_new_matched_tokens(self, request: Any,
                                   num_computed_tokens: int) -> tuple[int, bool]:
        state = self._state(request)
        if state is None:
            return 0, False
        bs = self.block_tokens
        local_blocks = num_computed_tokens // bs
        # vLLM computes at least the last token itself (it needs its logits).
        cap = min(state.num_blocks, max(0, request.num_tokens - 1) // bs)
        hit = local_blocks
        if cap > local_blocks:
            # A producer looks up too: what is stored needs no save.
            try:
                prefix = min(self._client.lookup(ns, state.chain, local_blocks, cap).prefix
                             for ns in self._namespaces)
            except kvfabric.Error as e:
                logger.warning("kvfabric: lookup for request %s failed, computing it: %s",
                               request.request_id, e)
                prefix = 0
            hit = local_blocks + prefix
        state.local_tokens = num_computed_tokens
        state.hit_blocks = state.fresh_hit = hit
        if not self._config.can_load:
            return 0, False
        return max(0, hit * bs - num_computed_tokens), False

    def update_state_after_alloc(self, request: Any, blocks: Any,
                                 num_external_tokens: int) -> None:
        state = self._state(request)
        if state is None:
            return
        bs = self.block_tokens
        # What the cluster or vLLM's own cache holds needs no save.
        state.saved_blocks = max(state.saved_blocks, state.hit_blocks)
        state.pending_load = None
        if num_external_tokens <= 0:
            return
        block_ids = first_group(blocks)
        begin = state.local_tokens // bs
        end = (state.local_tokens + num_external_tokens) // bs
        if end > len(block_ids) or end > state.num_blocks:
            # Not vLLM's contract; the tokens it counts on could not be loaded.
            raise ValueError(f"kvfabric: request {request.request_id}: load of blocks "
                             f"[{begin}, {end}) but {len(block_ids)} blocks allocated")
        state.block_ids = block_ids
        state.pending_load = BlockRange(begin, end, block_ids[begin:end])

    def build_connector_meta(self, scheduler_output: Any) -> KvfabricConnectorMetadata:
        meta = KvfabricConnectorMetadata()
        scheduled = scheduler_output.num_scheduled_tokens
        for new in scheduler_output.scheduled_new_reqs:
            state = self._requests.get(new.req_id)
            if state is None:
                continue
            state.block_ids = first_group(new.block_ids)
            self._emit(meta, new.req_id, state, new.num_computed_tokens,
                       scheduled.get(new.req_id, 0))
        cached = scheduler_output.scheduled_cached_reqs
        resumed = _resumed_ids(cached)
        for i, rid in enumerate(cached.req_ids):
            state = self._requests.get(rid)
            if state is None:
                continue
            new_ids = cached.new_block_ids[i]
            if rid in resumed:
                state.block_ids = first_group(new_ids)
            elif new_ids is not None:
                state.block_ids.extend(first_group(new_ids))
            self._emit(meta, rid, state, cached.num_computed_tokens[i], scheduled.get(rid, 0))
        return meta

    def _emit(self, meta: KvfabricConnectorMetadata, rid: str, state: _RequestState,
              computed_before: int, num_scheduled: int) -> None:
        bs = self.block_tokens
        load, state.pending_load = state.pending_load, None
        # vLLM rolled the request back: after a failed load it recomputes
        # from the first failed block, after a preemption from what its own
        # cache and the cluster hold (the lookup it just made). What it
        # recomputes is saved again.
        if state.expected_computed is not None and computed_before < state.expected_computed:
            state.saved_blocks = min(state.saved_blocks,
                                     max(computed_before // bs, state.fresh_hit))
        state.fresh_hit = 0
        state.expected_computed = computed_before + num_scheduled
        save = None
        full = min(state.num_blocks, (computed_before + num_scheduled) // bs)
        if self._config.can_save and full > state.saved_blocks and full <= len(state.block_ids):
            save = BlockRange(state.saved_blocks, full, state.block_ids[state.saved_blocks:full])
            state.saved_blocks = full
        if load is None and save is None:
            return
        end = max(load.end if load else 0, save.end if save else 0)
        meta.requests.append(RequestMeta(rid, pack_chain(state.chain, end), load, save))

    def request_finished(self, request: Any, block_ids: list) -> tuple[bool, None]:
        # Saves are synchronous (wait_for_save): the blocks may be freed now.
        self._requests.pop(request.request_id, None)
        return False, None
