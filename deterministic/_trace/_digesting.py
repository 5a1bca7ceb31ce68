"""Exact digests of tensors: SHA-256 of the bytes of their logical elements, in logical order.

Two tensors get the same digest exactly when their elements are the same bits, in
the same order: a contiguous tensor is hashed in place (its elements are the bytes
from ``data_ptr()`` on); any other is first copied into logical order, with
conjugate and negative bits resolved and accelerator tensors copied to the host.
Bytes of the storage outside the tensor's elements are never read, and -0.0, 0.0
and every NaN payload are told apart. Dtype and shape are kept beside the digest, in
the description. (An xor-sum or sum of elements would not do: two dropout masks
with the same parity would collide.)
"""

from __future__ import annotations

import ctypes
import hashlib
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DigestCache", "args_text", "describe", "digest_bytes", "digest_tensor"]

#: Longest argument text kept verbatim; longer ones keep a prefix and a digest.
ARGS_TEXT_LIMIT = 200

_DTYPE_NAMES: dict[Any, str] = {}


def digest_bytes(data: Any) -> bytes:
    """Return the 16-byte digest of a bytes-like object."""
    return hashlib.sha256(data).digest()[:16]


def describe(tensor: Any, note: str | None = None) -> str:
    """Return ``dtype[shape]``, with ``@device`` off the CPU, the layout if not strided and ``note``."""
    dtype = tensor.dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    text = f"{name}[{', '.join(map(str, tensor.shape))}]"
    device = tensor.device
    if device.type != "cpu":
        text += f"@{device}"
    layout = tensor.layout
    if str(layout) != "torch.strided":
        text += f" {str(layout).removeprefix('torch.')}"
    if tensor.is_quantized:
        text += f" q(scale={tensor.q_scale()!r}, zero_point={tensor.q_zero_point()})"
    if note is not None:
        text += f" {note}"
    return text


def digest_tensor(tensor: Any) -> bytes | None:
    """Return the digest of a tensor's logical elements, or ``None`` when it has no values here.

    Args:
        tensor: A torch tensor.

    Returns:
        16 bytes, or ``None`` for a meta tensor or one whose bytes cannot be read
        (a subclass without storage).
    """
    if tensor.device.type == "meta":
        return None
    try:
        if tensor.layout is not _strided(tensor):
            tensor = tensor.to_dense()
        if tensor.is_quantized:
            tensor = tensor.int_repr()
        if tensor._is_zerotensor():
            tensor = tensor.new_zeros(tensor.shape)
        if tensor.is_conj():
            tensor = tensor.resolve_conj()
        if tensor.is_neg():
            tensor = tensor.resolve_neg()
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        size = tensor.numel() * tensor.element_size()
        if size == 0:
            return _EMPTY
        # The elements of a contiguous CPU tensor are exactly these bytes; read them in place.
        return hashlib.sha256((ctypes.c_char * size).from_address(tensor.data_ptr())).digest()[:16]
    except (RuntimeError, NotImplementedError, TypeError):
        return None


_EMPTY = hashlib.sha256(b"").digest()[:16]
_STRIDED: list[Any] = []


def _strided(tensor: Any) -> Any:
    if not _STRIDED:
        import torch  # noqa: PLC0415 - only reached with a tensor in hand

        _STRIDED.append(torch.strided)
    return _STRIDED[0]


def args_text(value: Any, tensor_type: type, generator_type: type) -> str:
    """Return the non-tensor content of an argument structure as text.

    Tensors read ``T`` and generators ``G`` (their values are recorded apart); floats
    use ``repr``, which round-trips exactly. Texts over :data:`ARGS_TEXT_LIMIT`
    characters keep a prefix and a digest of the whole.

    Args:
        value: The positional arguments, or a dict of keyword arguments.
        tensor_type: ``torch.Tensor``.
        generator_type: ``torch.Generator``.

    Returns:
        The text.
    """
    text = _text(value, tensor_type, generator_type)
    if len(text) > ARGS_TEXT_LIMIT:
        text = f"{text[:ARGS_TEXT_LIMIT]}... #{digest_bytes(text.encode()).hex()}"
    return text


def _text(value: Any, tensor_type: type, generator_type: type) -> str:
    if isinstance(value, tensor_type):
        return "T"
    kind = type(value)
    if kind is tuple or kind is list:
        return "(" + ", ".join([_text(item, tensor_type, generator_type) for item in value]) + ")"
    if kind is dict:
        return (
            "{"
            + ", ".join(f"{key}={_text(item, tensor_type, generator_type)}" for key, item in value.items())
            + "}"
        )
    if isinstance(value, generator_type):
        return "G"
    text = repr(value)
    # An object shown by address would differ between runs; its type is what can be compared.
    return f"<{kind.__name__}>" if " at 0x" in text else text


class DigestCache:
    """Reuses the digest of a tensor whose memory torch reports unchanged.

    An entry is keyed by where the elements lie (device, address, and size, plus
    shape and strides when not contiguous), so views and aliases that cover the same
    elements share it. It holds a weak reference to the storage that was hashed
    (torch keeps a storage's Python object for as long as the storage lives) and the
    tensor's version counter. It is used only while that storage is alive and still
    at that address (so no other allocation can occupy the memory) and while the
    tensor's version counter is unchanged (views, ``detach()`` and tensors autograd
    saved share the counter, and every in-place op bumps it). Traced ops that write
    to memory drop every entry of the written storage, which covers aliases with
    their own counters (``.data``). Writes that bypass torch (through a ``.numpy()``
    view, ctypes, another process) are not seen: ``trace(rehash=True)`` hashes
    every input again instead.
    """

    #: Entries (and storages) kept at most; past it, everything is dropped.
    LIMIT = 1 << 14
    #: Entries whose storage is gone are swept out after this many new ones.
    SWEEP_EVERY = 1 << 12

    def __init__(self) -> None:
        # key -> (storage weak reference, storage address, version, digest)
        self._entries: dict[tuple[Any, ...], tuple[Any, int, int, bytes]] = {}
        self._by_storage: dict[tuple[Any, int], set[tuple[Any, ...]]] = {}
        self._stored = 0

    def digest(self, tensor: Any) -> bytes | None:
        """Return :func:`digest_tensor` of ``tensor``, from the cache when still valid."""
        found = self._look_up(tensor)
        if found is None:
            return digest_tensor(tensor)
        key, cached, storage, version = found
        if cached is not None:
            return cached
        digest = digest_tensor(tensor)
        if digest is not None:
            self._store(key, storage, version, digest)
        return digest

    def rehash(self, tensor: Any) -> tuple[bytes | None, bool]:
        """Hash ``tensor`` again; also say whether its bytes changed while torch saw no change.

        Returns:
            (digest, changed): ``changed`` is true when a valid cache entry says torch
            saw no write to this memory, yet the bytes differ: something wrote to it
            outside torch ops.
        """
        found = self._look_up(tensor)
        digest = digest_tensor(tensor)
        if found is None or digest is None:
            return digest, False
        key, cached, storage, version = found
        self._store(key, storage, version, digest)
        return digest, cached is not None and cached != digest

    def _look_up(self, tensor: Any) -> tuple[tuple[Any, ...], bytes | None, Any, int] | None:
        """(key, valid cached digest or None, storage, version), or None for an uncacheable tensor."""
        try:
            version = tensor._version
            pointer = tensor.data_ptr()
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError):  # inference, sparse, storage-less
            return None
        if tensor.is_contiguous():
            key: tuple[Any, ...] = (tensor.device, pointer, tensor.numel() * tensor.element_size())
        else:
            key = (tensor.device, pointer, tuple(tensor.shape), tensor.stride(), tensor.element_size())
        if tensor.is_conj() or tensor.is_neg():
            key += (tensor.is_conj(), tensor.is_neg())
        entry = self._entries.get(key)
        if entry is not None:
            held = entry[0]()
            if held is not None and held.data_ptr() == entry[1] and version == entry[2]:
                return key, entry[3], storage, version
        return key, None, storage, version

    def _store(self, key: tuple[Any, ...], storage: Any, version: int, digest: bytes) -> None:
        self._stored += 1
        if (
            self._stored >= self.SWEEP_EVERY
            or len(self._entries) >= self.LIMIT
            or len(self._by_storage) >= self.LIMIT
        ):
            self._sweep()
        address = storage.data_ptr()
        replaced = self._entries.get(key)
        if replaced is not None and replaced[1] != address:
            previous = self._by_storage.get((key[0], replaced[1]))
            if previous is not None:
                previous.discard(key)
                if not previous:
                    del self._by_storage[(key[0], replaced[1])]
        self._entries[key] = (weakref.ref(storage), address, version, digest)
        self._by_storage.setdefault((key[0], address), set()).add(key)

    def written(self, tensor: Any) -> None:
        """Forget every digest of memory in ``tensor``'s storage (a traced op wrote to it)."""
        try:
            storage = (tensor.device, tensor.untyped_storage().data_ptr())
        except (RuntimeError, NotImplementedError, TypeError):
            return
        for key in self._by_storage.pop(storage, ()):
            self._entries.pop(key, None)

    def _sweep(self) -> None:
        """Drop entries whose storage is gone; drop everything if most of the limit is still alive."""
        self._stored = 0
        alive = {key: entry for key, entry in list(self._entries.items()) if entry[0]() is not None}
        if len(alive) >= self.LIMIT // 2:
            alive = {}
        self._entries = alive
        self._by_storage = {}
        for key, entry in alive.items():
            self._by_storage.setdefault((key[0], entry[1]), set()).add(key)
