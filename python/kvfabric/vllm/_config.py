"""The connector's settings: vLLM's config plus kv_connector_extra_config.

Everything that decides which kvfabric namespace a vLLM engine writes and
reads is derived here, once, the same way on the scheduler and on every
worker, so that the scheduler's lookups and the workers' loads and saves name
the same blocks (docs/vllm.md, "Settings").
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("kvfabric.vllm")

# kv_connector_extra_config keys and their defaults (None: derived).
EXTRA_CONFIG_DEFAULTS: dict[str, Any] = {
    "coordinator": None,  # env KVF_COORDINATOR
    "token": None,  # env KVF_TOKEN
    "token_file": None,  # env KVF_TOKEN_FILE
    "model_id": None,  # vllm_config.model_config.model
    "tenant": "",
    "hash": "xxh3_128",
    "segment_blocks": 1,
    "codec": "none",
    "ack": "primary",
    "rpc_timeout": 5.0,
    "data_timeout": 5.0,
    "ucx_tls": "",
    "data_listen_host": "",
    "tls_ca_file": "",
}

_TORCH_DTYPES = {
    "torch.float16": "fp16", "float16": "fp16", "half": "fp16", "fp16": "fp16",
    "torch.bfloat16": "bf16", "bfloat16": "bf16", "bf16": "bf16",
    "torch.float32": "fp32", "float32": "fp32", "float": "fp32", "fp32": "fp32",
}


@dataclass(frozen=True)
class ConnectorConfig:
    """What the connector needs, resolved (see from_vllm_config)."""

    coordinator: str
    token: str
    model_id: str
    tenant: str
    hash: str
    segment_blocks: int
    codec: str
    ack: str
    rpc_timeout: float
    data_timeout: float
    ucx_tls: str
    data_listen_host: str
    tls_ca_file: str
    # The KV layout of one TP rank; block_tokens is vLLM's block size.
    num_layers: int
    num_kv_heads: int
    head_dim: int
    block_tokens: int
    dtype: str  # "fp16" | "bf16" | "fp32"
    tp_size: int
    kv_role: str  # "kv_both" | "kv_producer" | "kv_consumer"

    @property
    def can_load(self) -> bool:
        return self.kv_role in ("kv_both", "kv_consumer")

    @property
    def can_save(self) -> bool:
        return self.kv_role in ("kv_both", "kv_producer")

    @staticmethod
    def from_vllm_config(vllm_config: Any, kv_cache_config: Any = None) -> "ConnectorConfig":
        """Resolves the settings; ValueError naming what is missing or
        unsupported (no coordinator, MLA, an fp8 KV cache, pipeline
        parallelism, several KV cache groups)."""
        ktc = vllm_config.kv_transfer_config
        extra = dict(getattr(ktc, "kv_connector_extra_config", None) or {})
        unknown = sorted(set(extra) - set(EXTRA_CONFIG_DEFAULTS))
        if unknown:
            logger.warning("kvfabric: unknown kv_connector_extra_config keys %s (known: %s)",
                           unknown, sorted(EXTRA_CONFIG_DEFAULTS))
        opt = {k: extra.get(k, v) for k, v in EXTRA_CONFIG_DEFAULTS.items()}

        coordinator = opt["coordinator"] or os.environ.get("KVF_COORDINATOR", "")
        if not coordinator:
            raise ValueError("kvfabric: no coordinator: set kv_connector_extra_config"
                             "['coordinator'] or KVF_COORDINATOR")
        token = _resolve_token(opt["token"], opt["token_file"])

        mc = vllm_config.model_config
        pc = vllm_config.parallel_config
        if getattr(mc, "use_mla", False):
            raise ValueError("kvfabric: MLA KV caches (one latent per token) are not supported")
        pp = int(getattr(pc, "pipeline_parallel_size", 1) or 1)
        if pp != 1:
            raise ValueError(f"kvfabric: pipeline parallelism ({pp} stages) is not supported: "
                             "the namespace does not name the stage")
        groups = getattr(kv_cache_config, "kv_cache_groups", None)
        if groups is not None and len(groups) > 1:
            raise ValueError(f"kvfabric: {len(groups)} KV cache groups (hybrid attention): "
                             "only models with one group are supported")

        model_id = opt["model_id"] or str(getattr(mc, "model", "") or "")
        if not model_id:
            raise ValueError("kvfabric: no model id: set kv_connector_extra_config['model_id']")

        return ConnectorConfig(
            coordinator=str(coordinator),
            token=token,
            model_id=model_id,
            tenant=str(opt["tenant"] or ""),
            hash=str(opt["hash"]),
            segment_blocks=int(opt["segment_blocks"]),
            codec=str(opt["codec"]),
            ack=str(opt["ack"]),
            rpc_timeout=float(opt["rpc_timeout"]),
            data_timeout=float(opt["data_timeout"]),
            ucx_tls=str(opt["ucx_tls"] or ""),
            data_listen_host=str(opt["data_listen_host"] or ""),
            tls_ca_file=str(opt["tls_ca_file"] or ""),
            num_layers=int(mc.get_num_layers(pc)),
            num_kv_heads=int(mc.get_num_kv_heads(pc)),
            head_dim=int(mc.get_head_size()),
            block_tokens=int(vllm_config.cache_config.block_size),
            dtype=_kv_dtype(vllm_config),
            tp_size=int(getattr(pc, "tensor_parallel_size", 1) or 1),
            kv_role=str(getattr(ktc, "kv_role", None) or "kv_both"),
        )


def _resolve_token(token: Any, token_file: Any) -> str:
    """The first of: the extra config's token, its token_file, env KVF_TOKEN,
    env KVF_TOKEN_FILE; empty if none."""
    if token:
        return str(token).strip()
    if token_file:
        return _read_token(str(token_file))
    if os.environ.get("KVF_TOKEN"):
        return os.environ["KVF_TOKEN"].strip()
    if os.environ.get("KVF_TOKEN_FILE"):
        return _read_token(os.environ["KVF_TOKEN_FILE"])
    return ""


def _read_token(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def _kv_dtype(vllm_config: Any) -> str:
    cache_dtype = str(getattr(vllm_config.cache_config, "cache_dtype", "auto") or "auto")
    if cache_dtype == "auto":
        name = str(getattr(vllm_config.model_config, "dtype", "float16"))
    else:
        name = cache_dtype
    dtype = _TORCH_DTYPES.get(name)
    if dtype is None:
        raise ValueError(f"kvfabric: KV cache dtype {name!r} is not supported "
                         "(fp16, bf16 and fp32 are; fp8 KV caches are not)")
    return dtype


def tp_rank_of(vllm_config: Any) -> int:
    """This worker's tensor-parallel rank: vLLM's process group when vLLM is
    there, else parallel_config.rank modulo the TP size."""
    try:  # pragma: no cover - needs vLLM
        from vllm.distributed.parallel_state import get_tensor_model_parallel_rank
        return int(get_tensor_model_parallel_rank())
    except Exception:  # noqa: BLE001 - no vLLM, or its groups are not set up
        pc = vllm_config.parallel_config
        tp = int(getattr(pc, "tensor_parallel_size", 1) or 1)
        return int(getattr(pc, "rank", 0) or 0) % tp


def kv_dtype_of_torch(dtype: Any) -> str | None:
    """kvfabric's name of a torch dtype ("fp16", "bf16", "fp32"), or None."""
    return _TORCH_DTYPES.get(str(dtype))
