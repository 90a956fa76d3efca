"""kvfabric: a distributed KV cache for LLM inference (docs/python.md).

    import kvfabric
    c = kvfabric.Client.from_env()       # KVF_COORDINATOR, KVF_TOKEN / KVF_TOKEN_FILE
    ns = c.register_namespace("llama-3-8b", kvfabric.KvLayout(32, 8, 128, 16))
    chain = ns.hash_tokens(token_ids)
    hit = c.lookup(ns, chain).prefix

The C++ client (client/client.h) does the work; this package adds Python
types around it. Every call that waits on the cluster releases the GIL.
"""

import os

from kvfabric import _kvfabric
from kvfabric._kvfabric import (BlockHolding, BlockKey, BlockResult, Chain, KvLayout,
                                LookupResult, Namespace, PagedTransfer, Sequence, advise_codec,
                                hash_tokens)
from kvfabric.errors import (AbortedError, AlreadyExistsError, CancelledError, DataLossError,
                             DeadlineExceededError, Error, FailedPreconditionError, InternalError,
                             InvalidArgumentError, NotFoundError, OutOfRangeError,
                             PermissionDeniedError, ResourceExhaustedError, UnauthenticatedError,
                             UnavailableError, UnimplementedError)
from kvfabric.paged import PagedKv

__all__ = [
    "Client", "KvLayout", "Namespace", "BlockKey", "Chain", "BlockResult", "BlockHolding",
    "LookupResult", "PagedKv", "PagedTransfer", "Sequence", "advise_codec", "hash_tokens",
    "token_from_env",
    "Error", "NotFoundError", "InvalidArgumentError", "UnavailableError", "PermissionDeniedError",
    "UnauthenticatedError", "ResourceExhaustedError", "FailedPreconditionError",
    "DeadlineExceededError", "DataLossError", "UnimplementedError", "InternalError",
    "AbortedError", "AlreadyExistsError", "CancelledError", "OutOfRangeError",
]


def token_from_env(environ=os.environ):
    """KVF_TOKEN, else the first line of the file KVF_TOKEN_FILE names, else ""."""
    if environ.get("KVF_TOKEN"):
        return environ["KVF_TOKEN"]
    path = environ.get("KVF_TOKEN_FILE")
    if path:
        with open(path) as f:
            return f.readline().strip()
    return ""


class Client(_kvfabric.Client):
    """A connection to a kvfabric cluster (client/client.h); thread-safe."""

    @classmethod
    def from_env(cls, environ=os.environ, **kwargs):
        """Connects to KVF_COORDINATOR with KVF_TOKEN or KVF_TOKEN_FILE, as
        `kvf-launch local -- python ...` exports them."""
        coordinator = environ.get("KVF_COORDINATOR")
        if not coordinator:
            raise InvalidArgumentError("INVALID_ARGUMENT", "KVF_COORDINATOR is not set")
        return cls(coordinator, token_from_env(environ), **kwargs)

    def save_pages(self, ns, chain, begin, pages, page_ids, *, codec="none"):
        """Stores blocks begin.. of `chain` from the engine's pages; one
        BlockResult per block (docs/python.md, "Paged KV")."""
        return _kvfabric._save_pages(self, ns, chain, begin, pages._desc, page_ids, codec)

    def load_pages(self, ns, chain, begin, pages, page_ids):
        """Loads blocks begin.. of `chain` into the engine's pages; a block
        that fails leaves its pages untouched and reports why."""
        return _kvfabric._load_pages(self, ns, chain, begin, pages._desc, page_ids)

    def start_save_pages(self, ns, chain, begin, pages, page_ids, *, codec="none"):
        """save_pages on a background thread: a PagedTransfer (wait(), done())."""
        return _kvfabric._start_save_pages(self, ns, chain, begin, pages._desc, page_ids, codec)

    def start_load_pages(self, ns, chain, begin, pages, page_ids):
        """load_pages on a background thread: a PagedTransfer (wait(), done())."""
        return _kvfabric._start_load_pages(self, ns, chain, begin, pages._desc, page_ids)

    def open_sequence(self, ns, name_or_id):
        """Opens a sequence by name (str) or (hi, lo) id (docs/sequences.md)."""
        return _kvfabric._open_sequence(self, ns, name_or_id, ns.spec["hash"])
