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


def _stream_handle(stream):
    """The cudaStream_t value the paged calls take: None -> 0 (the default
    stream), an int as is, else the object's .cuda_stream (torch.cuda.Stream,
    torch.cuda.ExternalStream)."""
    if stream is None:
        return 0
    handle = getattr(stream, "cuda_stream", stream)
    if isinstance(handle, bool) or not isinstance(handle, int) or handle < 0:
        raise InvalidArgumentError(
            "INVALID_ARGUMENT",
            f"stream must be None, a cudaStream_t (a non-negative int) or an object with "
            f".cuda_stream (torch.cuda.Stream), not {stream!r}")
    return handle


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

    def save_pages(self, ns, chain, begin, pages, page_ids, *, codec="none", stream=None):
        """Stores blocks begin.. of `chain` from the engine's pages; one
        BlockResult per block (docs/python.md, "Paged KV").

        `pages` may be in host or CUDA device memory. For device pages the
        gather runs on `stream` (a torch.cuda.Stream, a raw cudaStream_t int,
        or None for the default stream) and reads the pages after the work
        already queued on it, so pass the stream that wrote them."""
        return _kvfabric._save_pages(self, ns, chain, begin, pages._desc, page_ids, codec,
                                     _stream_handle(stream))

    def load_pages(self, ns, chain, begin, pages, page_ids, *, stream=None):
        """Loads blocks begin.. of `chain` into the engine's pages; a block
        that fails leaves its pages untouched and reports why.

        For device pages the scatter runs on `stream` (as save_pages); the
        pages are written when this returns, for kernels on any stream."""
        return _kvfabric._load_pages(self, ns, chain, begin, pages._desc, page_ids,
                                     _stream_handle(stream))

    def start_save_pages(self, ns, chain, begin, pages, page_ids, *, codec="none", stream=None):
        """save_pages on a background thread: a PagedTransfer (wait(), done()).
        The pages must stay unchanged until wait() returns."""
        return _kvfabric._start_save_pages(self, ns, chain, begin, pages._desc, page_ids, codec,
                                           _stream_handle(stream))

    def start_load_pages(self, ns, chain, begin, pages, page_ids, *, stream=None):
        """load_pages on a background thread: a PagedTransfer (wait(), done(),
        layer_ready(l), wait_layer(l)). Uncompressed blocks land layer by
        layer: wait_layer(l) returns once every block's layer l is in the
        pages (or the load finished), so layer l can be used while later
        layers still land; compressed blocks land whole. The per-block
        results come from wait()."""
        return _kvfabric._start_load_pages(self, ns, chain, begin, pages._desc, page_ids,
                                           _stream_handle(stream))

    def open_sequence(self, ns, name_or_id):
        """Opens a sequence by name (str) or (hi, lo) id (docs/sequences.md)."""
        return _kvfabric._open_sequence(self, ns, name_or_id, ns.spec["hash"])
