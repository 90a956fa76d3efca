"""kvfabric's vLLM v1 KV connector (docs/vllm.md).

vLLM loads it by module path:

    vllm serve MODEL --kv-transfer-config '{"kv_connector": "KvfabricConnector",
        "kv_connector_module_path": "kvfabric.vllm", "kv_role": "kv_both",
        "kv_connector_extra_config": {"coordinator": "HOST:PORT", "token_file": "PATH"}}'

Without vLLM installed the connector derives from stand-ins of vLLM's base
classes (kvfabric.vllm._compat), which the tests drive the way vLLM does.
"""

from ._compat import HAVE_VLLM, KVConnectorBase_V1, KVConnectorMetadata, KVConnectorRole
from ._config import ConnectorConfig
from ._metadata import BlockRange, KvfabricConnectorMetadata, RequestMeta
from .connector import KvfabricConnector

__all__ = [
    "HAVE_VLLM",
    "BlockRange",
    "ConnectorConfig",
    "KVConnectorBase_V1",
    "KVConnectorMetadata",
    "KVConnectorRole",
    "KvfabricConnector",
    "KvfabricConnectorMetadata",
    "RequestMeta",
]
