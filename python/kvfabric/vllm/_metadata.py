"""What the scheduler-side connector tells the workers each step.

vLLM pickles the metadata from the scheduler process to every worker, so it
holds plain data only: per request, the chain keys it needs (packed, 16 bytes
a key) and at most one load and one save, each a range of chain blocks and the
vLLM block ids (one page per block) that hold them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import kvfabric

from ._compat import KVConnectorMetadata

KEY_BYTES = 16


@dataclass
class BlockRange:
    """Chain blocks [begin, end) and the vLLM block ids holding them:
    page_ids[i] holds block begin + i."""

    begin: int
    end: int
    page_ids: list[int]

    def __post_init__(self) -> None:
        if len(self.page_ids) != self.end - self.begin:
            raise ValueError(f"{len(self.page_ids)} page ids for blocks "
                             f"[{self.begin}, {self.end})")


@dataclass
class RequestMeta:
    req_id: str
    chain: bytes  # keys [0, n): a block is placed by its segment's first key
    load: Optional[BlockRange] = None  # blocks to fetch into the pages
    save: Optional[BlockRange] = None  # blocks to store from the pages


@dataclass
class KvfabricConnectorMetadata(KVConnectorMetadata):
    requests: list[RequestMeta] = field(default_factory=list)

    def loads(self):
        return [r for r in self.requests if r.load is not None]

    def saves(self):
        return [r for r in self.requests if r.save is not None]


def pack_chain(chain: "kvfabric.Chain", end: int) -> bytes:
    """Keys [0, end) of `chain`, 16 bytes each (bytes(BlockKey): big-endian
    hi then lo)."""
    return b"".join(bytes(chain[i]) for i in range(end))


def unpack_chain(data: bytes) -> "kvfabric.Chain":
    """The Chain that pack_chain packed."""
    if len(data) % KEY_BYTES:
        raise ValueError(f"a packed chain of {len(data)} bytes")
    keys = []
    for off in range(0, len(data), KEY_BYTES):
        hi = int.from_bytes(data[off:off + 8], "big")
        lo = int.from_bytes(data[off + 8:off + KEY_BYTES], "big")
        keys.append(kvfabric.BlockKey(hi, lo))
    return kvfabric.Chain(keys)
