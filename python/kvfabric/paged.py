"""PagedKv: an engine's paged KV cache, described for kvfabric's gather and
scatter (kernels/core/paged.h; docs/python.md, "Paged KV").

Element (page p, K|V kv, slot s, head h, d) of layer l lives at
    layer_ptr[l] + (p*page_stride + kv*kv_stride + s*token_stride + h*head_stride + d) * elem
so any layout whose `head_dim` elements are contiguous can be described.

The tensors may be in host memory or on a CUDA device (every layer on the
same one); the paged calls gather and scatter device pages with CUDA kernels
on the stream they are given (Client.save_pages(..., stream=...)).
"""

from kvfabric import _kvfabric
from kvfabric.errors import InvalidArgumentError, UnimplementedError

_DTYPES = {"torch.float16": "fp16", "torch.bfloat16": "bf16", "torch.float32": "fp32"}


def _dtype_name(tensor):
    name = _DTYPES.get(str(tensor.dtype))
    if name is None:
        raise InvalidArgumentError("INVALID_ARGUMENT",
                                   f"KV tensors of {tensor.dtype} are not supported "
                                   f"(fp16, bf16, fp32)")
    return name


def _check_devices(tensors):
    """Every layer in host memory, or every layer on one CUDA device."""
    first = tensors[0].device
    for t in tensors:
        if t.device.type not in ("cpu", "cuda"):
            raise UnimplementedError(
                "UNIMPLEMENTED",
                f"a KV cache on '{t.device}': pages must be in host memory or CUDA device memory")
        if t.device != first:
            raise InvalidArgumentError(
                "INVALID_ARGUMENT",
                f"KV tensors on '{first}' and '{t.device}': every layer must be on one device")


class PagedKv:
    """A descriptor of KV pages plus the tensors it points into (kept alive).
    Host (CPU) or CUDA tensors, every layer on one device."""

    def __init__(self, desc):
        self._desc = desc

    num_layers = property(lambda self: self._desc.num_layers)
    num_kv_heads = property(lambda self: self._desc.num_kv_heads)
    head_dim = property(lambda self: self._desc.head_dim)
    page_size = property(lambda self: self._desc.page_size)
    num_pages = property(lambda self: self._desc.num_pages)
    dtype = property(lambda self: self._desc.dtype)

    @classmethod
    def vllm(cls, layer_tensors):
        """vLLM's per-layer KV tensors, in layer order. Shapes:
        [2, num_pages, page_size, H, D] (FlashAttention) or
        [num_pages, 2, page_size, H, D] (FlashInfer); told apart by where the
        dimension of size 2 is (a cache of exactly 2 pages is ambiguous: it is
        read as FlashAttention's)."""
        layer_tensors = list(layer_tensors)
        if not layer_tensors:
            raise InvalidArgumentError("INVALID_ARGUMENT", "no KV tensors")
        first = layer_tensors[0]
        if first.dim() != 5:
            raise InvalidArgumentError("INVALID_ARGUMENT",
                                       f"a vLLM KV tensor has 5 dimensions, not {first.dim()} "
                                       f"(shape {tuple(first.shape)})")
        _check_devices(layer_tensors)
        for t in layer_tensors:
            if t.shape != first.shape or t.stride() != first.stride() or t.dtype != first.dtype:
                raise InvalidArgumentError("INVALID_ARGUMENT",
                                           "every layer's KV tensor must have one shape, "
                                           "stride and dtype")
        shape, stride = tuple(first.shape), first.stride()
        if shape[0] == 2:  # FlashAttention: [2, pages, page_size, H, D]
            kv_dim, page_dim = 0, 1
        elif shape[1] == 2:  # FlashInfer: [pages, 2, page_size, H, D]
            kv_dim, page_dim = 1, 0
        else:
            raise InvalidArgumentError("INVALID_ARGUMENT",
                                       f"shape {shape} is neither [2, pages, page_size, H, D] "
                                       f"nor [pages, 2, page_size, H, D]")
        return cls.from_strides(
            layer_tensors, num_pages=shape[page_dim], page_size=shape[2], num_kv_heads=shape[3],
            head_dim=shape[4], page_stride=stride[page_dim], kv_stride=stride[kv_dim],
            token_stride=stride[2], head_stride=stride[3], dim_stride=stride[4])

    @classmethod
    def layer_major(cls, tensor, num_layers):
        """One tensor [L, 2, num_pages, page_size, H, D] (a layer-major pool)."""
        if tensor.dim() != 6 or tensor.shape[0] != num_layers or tensor.shape[1] != 2:
            raise InvalidArgumentError("INVALID_ARGUMENT",
                                       f"expected [{num_layers}, 2, pages, page_size, H, D], "
                                       f"got {tuple(tensor.shape)}")
        _check_devices([tensor])
        st = tensor.stride()
        layers = [tensor[l] for l in range(num_layers)]
        return cls.from_strides(
            layers, num_pages=tensor.shape[2], page_size=tensor.shape[3],
            num_kv_heads=tensor.shape[4], head_dim=tensor.shape[5], page_stride=st[2],
            kv_stride=st[1], token_stride=st[3], head_stride=st[4], dim_stride=st[5])

    @classmethod
    def from_strides(cls, layer_tensors, *, num_pages, page_size, num_kv_heads, head_dim,
                     page_stride, kv_stride, token_stride, head_stride, dim_stride=1):
        """Any layout: per-layer tensors and element strides."""
        layer_tensors = list(layer_tensors)
        if dim_stride != 1:
            raise InvalidArgumentError("INVALID_ARGUMENT",
                                       "the head_dim elements of a head must be contiguous")
        if not layer_tensors:
            raise InvalidArgumentError("INVALID_ARGUMENT", "no KV tensors")
        _check_devices(layer_tensors)
        first = layer_tensors[0]
        desc = _kvfabric._PagedKv(
            num_layers=len(layer_tensors), num_kv_heads=num_kv_heads, head_dim=head_dim,
            page_size=page_size, num_pages=num_pages, dtype=_dtype_name(first),
            page_stride=page_stride, kv_stride=kv_stride, token_stride=token_stride,
            head_stride=head_stride, layer_ptrs=[t.data_ptr() for t in layer_tensors],
            layer_bytes=_storage_bytes_each(layer_tensors),
            owners=tuple(layer_tensors))
        return cls(desc)


def _storage_bytes_each(tensors):
    """Bytes reachable from each layer's base (the smallest over the layers):
    its storage from the base on, so the descriptor is proved in bounds."""
    return min((t.storage().size() - t.storage_offset()) * t.element_size() for t in tensors)
