"""KvfabricConnector: vLLM's v1 KV connector over kvfabric (docs/vllm.md).

vLLM makes one instance per process: role SCHEDULER in the scheduler process
(lookups, per-step metadata: _scheduler.py) and role WORKER in each worker
(loads and saves of vLLM's pages: _worker.py). Each instance connects its own
kvfabric.Client.

    --kv-transfer-config '{"kv_connector": "KvfabricConnector",
                           "kv_connector_module_path": "kvfabric.vllm",
                           "kv_role": "kv_both",
                           "kv_connector_extra_config": {"coordinator": "10.0.0.1:7700"}}'

Loads are synchronous (get_num_new_matched_tokens answers load_kv_async =
False): the step that schedules a hit loads it before its forward, layer by
layer (wait_for_layer_load waits for one layer of the step's loads). Saves are
synchronous too: wait_for_save stores the step's new full blocks before vLLM
may reuse their pages, so request_finished never delays freeing blocks.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import kvfabric

from ._compat import KVConnectorBase_V1, KVConnectorRole
from ._config import ConnectorConfig, tp_rank_of
from ._metadata import KvfabricConnectorMetadata
from ._scheduler import SchedulerSide
from ._worker import WorkerSide

logger = logging.getLogger("kvfabric.vllm")


def connect(config: ConnectorConfig, name: str) -> "kvfabric.Client":
    return kvfabric.Client(config.coordinator, token=config.token,
                           tls_ca_file=config.tls_ca_file,
                           data_listen_host=config.data_listen_host, ucx_tls=config.ucx_tls,
                           rpc_timeout=config.rpc_timeout, data_timeout=config.data_timeout,
                           ack=config.ack, name=name)


def register_namespace(client: "kvfabric.Client", config: ConnectorConfig, tp_rank: int):
    layout = kvfabric.KvLayout(num_layers=config.num_layers, num_kv_heads=config.num_kv_heads,
                               head_dim=config.head_dim, block_tokens=config.block_tokens,
                               dtype=config.dtype)
    return client.register_namespace(model_id=config.model_id, layout=layout, tp_rank=tp_rank,
                                     tp_size=config.tp_size, tenant=config.tenant,
                                     hash=config.hash, segment_blocks=config.segment_blocks)


class KvfabricConnector(KVConnectorBase_V1):
    """vLLM KV connector storing and loading prefix KV blocks in kvfabric.

    Construction raises ValueError for a configuration it cannot serve (no
    coordinator, MLA, fp8 KV cache, pipeline parallelism) and kvfabric.Error
    when the coordinator cannot be reached.
    """

    def __init__(self, vllm_config: Any, role: KVConnectorRole, kv_cache_config: Any = None):
        try:
            super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        except TypeError:  # vLLM before kv_cache_config was passed to connectors
            super().__init__(vllm_config=vllm_config, role=role)
        self._config = ConnectorConfig.from_vllm_config(vllm_config, kv_cache_config)
        cfg = self._config
        self._scheduler: Optional[SchedulerSide] = None
        self._worker: Optional[WorkerSide] = None
        if role == KVConnectorRole.SCHEDULER:
            client = connect(cfg, "kvf-vllm-scheduler")
            namespaces = [register_namespace(client, cfg, r) for r in range(cfg.tp_size)]
            self._scheduler = SchedulerSide(cfg, client, namespaces)
        else:
            rank = tp_rank_of(vllm_config)
            client = connect(cfg, f"kvf-vllm-worker{rank}")
            self._worker = WorkerSide(cfg, client, register_namespace(client, cfg, rank))
        logger.info("kvfabric: %s connector for %s (layers=%d heads=%d head_dim=%d block=%d "
                    "%s, tp %d, role %s) at %s", role.name.lower(), cfg.model_id,
                    cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, cfg.block_tokens,
                    cfg.dtype, cfg.tp_size, cfg.kv_role, cfg.coordinator)

    @property
    def requires_kv_delivery(self) -> bool:
        """A best-effort cache: a save that does not happen is a later miss,
        never a request that cannot finish (vLLM asks this of producers)."""
        return False

    @property
    def config(self) -> ConnectorConfig:
        return self._config

    @property
    def worker(self) -> WorkerSide:
        """The worker half (its stats, layout_error); worker role only."""
        assert self._worker is not None, "not a worker-role connector"
        return self._worker

    # ==== worker side =======================================================
    def register_kv_caches(self, kv_caches: dict) -> None:
        """Describes vLLM's per-layer KV tensors (host or CUDA, every layer on
        one device). Tensors that do not match the configured layout are
        refused: logged, and every load is then reported failed and nothing
        is saved."""
        self.worker.register_kv_caches(kv_caches)

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        meta = self._get_connector_metadata()
        assert isinstance(meta, KvfabricConnectorMetadata)
        self.worker.start_loads(meta)

    def wait_for_layer_load(self, layer_name: str) -> None:
        """Waits until this layer of every load of the step is in vLLM's
        pages: uncompressed blocks land layer by layer, so layer l's forward
        runs while later layers still land (compressed blocks land whole).
        The last layer's wait collects the loads' results."""
        self.worker.wait_for_layer(layer_name)

    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any,
                      **kwargs: Any) -> None:
        """Nothing per layer: a block is stored whole, by wait_for_save."""
        return

    def wait_for_save(self) -> None:
        meta = self._get_connector_metadata()
        assert isinstance(meta, KvfabricConnectorMetadata)
        self.worker.save(meta)

    def get_finished(self, finished_req_ids: set) -> tuple[None, None]:
        return None, None  # no asynchronous loads or saves

    def get_block_ids_with_load_errors(self) -> set[int]:
        return self.worker.take_load_errors()

    def shutdown(self) -> None:
        if self._worker is not None:
            self._worker.shutdown()

    # ==== scheduler side ====================================================
    def get_num_new_matched_tokens(self, request: Any,
                                   num_computed_tokens: int) -> tuple[int, bool]:
        """Tokens beyond num_computed_tokens whose KV the cluster holds: the
        longest stored prefix of the prompt's full blocks, never the whole
        prompt (vLLM computes at least its last token)."""
        assert self._scheduler is not None
        return self._scheduler.get_num_new_matched_tokens(request, num_computed_tokens)

    def update_state_after_alloc(self, request: Any, blocks: Any,
                                 num_external_tokens: int) -> None:
        assert self._scheduler is not None
        self._scheduler.update_state_after_alloc(request, blocks, num_external_tokens)

    def build_connector_meta(self, scheduler_output: Any) -> KvfabricConnectorMetadata:
        assert self._scheduler is not None
        return self._scheduler.build_connector_meta(scheduler_output)

    def request_finished(self, request: Any, block_ids: list) -> tuple[bool, None]:
        assert self._scheduler is not None
        return self._scheduler.request_finished(request, block_ids)
