"""vLLM's KV-connector base classes, or stand-ins that mirror them.

With vLLM installed, this module re-exports vLLM's own `KVConnectorBase_V1`,
`KVConnectorRole` and `KVConnectorMetadata`
(vllm/distributed/kv_transfer/kv_connector/v1/base.py), so the connector is a
real vLLM connector. Without vLLM (this repository's CI, the test harness),
it defines stand-ins with the same names, method names and signatures, and the
same default behaviour for the optional methods, so that the connector's code
is identical either way. `HAVE_VLLM` says which one is in use.

The stand-in mirrors the v1 interface as of vLLM's base.py at commit
13f4ad0f55b08ca1d37d1459f50ce950feaeb547 (docs/vllm.md, "vLLM versions"):
the subset a connector implements or vLLM calls on it. It is not a vLLM
reimplementation; nothing in it schedules or runs anything.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Any, Optional

try:  # pragma: no cover - depends on the environment
    from vllm.distributed.kv_transfer.kv_connector.v1.base import (  # type: ignore
        KVConnectorBase_V1,
        KVConnectorMetadata,
        KVConnectorRole,
    )

    HAVE_VLLM = True
except ImportError:
    HAVE_VLLM = False

    class KVConnectorRole(enum.Enum):
        """Where a connector instance runs (vLLM: one per process and role)."""

        SCHEDULER = 0  # the scheduler process: lookups, metadata
        WORKER = 1  # each worker process: moves the KV bytes

    class KVConnectorMetadata(ABC):  # noqa: B024 - as in vLLM
        """What the scheduler-side connector sends the worker-side connectors
        each step (pickled across processes by vLLM)."""

    class KVConnectorBase_V1(ABC):  # noqa: N801 - vLLM's name
        """Stand-in for vLLM's KVConnectorBase_V1 (same contract).

        Worker side: bind_connector_metadata, start_load_kv,
        wait_for_layer_load, save_kv_layer, wait_for_save, get_finished,
        get_block_ids_with_load_errors, clear_connector_metadata,
        register_kv_caches, shutdown. Scheduler side:
        get_num_new_matched_tokens, update_state_after_alloc,
        build_connector_meta, update_connector_output, request_finished,
        take_events.
        """

        def __init__(self, vllm_config: Any, role: KVConnectorRole,
                     kv_cache_config: Any = None):
            self._connector_metadata: Optional[KVConnectorMetadata] = None
            self._vllm_config = vllm_config
            if getattr(vllm_config, "kv_transfer_config", None) is None:
                raise ValueError("kv_transfer_config must be set for KVConnectorBase_V1")
            self._kv_transfer_config = vllm_config.kv_transfer_config
            self._kv_cache_config = kv_cache_config
            self._role = role

        @property
        def role(self) -> KVConnectorRole:
            return self._role

        # ---- worker side -------------------------------------------------
        def bind_connector_metadata(self, connector_metadata: KVConnectorMetadata) -> None:
            self._connector_metadata = connector_metadata

        def clear_connector_metadata(self) -> None:
            self._connector_metadata = None

        def _get_connector_metadata(self) -> KVConnectorMetadata:
            assert self._connector_metadata is not None
            return self._connector_metadata

        def has_connector_metadata(self) -> bool:
            return self._connector_metadata is not None

        def register_kv_caches(self, kv_caches: dict) -> None:
            return

        def handle_preemptions(self, *args: Any, **kwargs: Any) -> None:
            return

        @abstractmethod
        def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None: ...

        @abstractmethod
        def wait_for_layer_load(self, layer_name: str) -> None: ...

        @abstractmethod
        def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any,
                          **kwargs: Any) -> None: ...

        @abstractmethod
        def wait_for_save(self) -> None: ...

        def get_finished(self, finished_req_ids: set) -> tuple:
            return None, None

        def get_block_ids_with_load_errors(self) -> set:
            return set()

        def shutdown(self) -> None:
            return None

        def get_kv_connector_stats(self) -> Any:
            return None

        def get_kv_connector_kv_cache_events(self) -> Any:
            return None

        def get_handshake_metadata(self) -> Any:
            return None

        # ---- scheduler side ----------------------------------------------
        @abstractmethod
        def get_num_new_matched_tokens(self, request: Any,
                                       num_computed_tokens: int) -> tuple: ...

        @abstractmethod
        def update_state_after_alloc(self, request: Any, blocks: Any,
                                     num_external_tokens: int) -> None: ...

        @abstractmethod
        def build_connector_meta(self, scheduler_output: Any) -> KVConnectorMetadata: ...

        def update_connector_output(self, connector_output: Any) -> None:
            return

        def request_finished(self, request: Any, block_ids: list) -> tuple:
            return False, None

        def take_events(self):
            return ()

        @classmethod
        def get_required_kvcache_layout(cls, vllm_config: Any) -> Optional[str]:
            return None

        def get_finished_count(self) -> Optional[int]:
            return None

        def reset_cache(self) -> Optional[bool]:
            return None


__all__ = ["HAVE_VLLM", "KVConnectorBase_V1", "KVConnectorMetadata", "KVConnectorRole"]
