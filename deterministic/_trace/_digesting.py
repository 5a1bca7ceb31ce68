"""Exact digests of tensors: XXH3-128 of the bytes of their logical elements, in logical order.

Two tensors get the same digest exactly when their elements are the same bits, in
the same order (up to a 128-bit hash collision): a contiguous tensor is hashed in
place (its elements are the bytes from ``data_ptr()`` on); any other is first copied
into logical order, with conjugate and negative bits resolved and accelerator tensors
copied to the host. Bytes of the storage outside the tensor's elements are never read,
and -0.0, 0.0 and every NaN payload are told apart. Dtype and shape are kept beside
the digest, in the description. (An xor-sum or sum of elements would not do: two
dropout masks with the same parity would collide.)

XXH3-128 is not a cryptographic hash, and it need not be: a trace compares the values
of one program against themselves, with no adversary choosing inputs to collide.
Among the ``n`` distinct values of two traces, a chance collision has probability
about ``n**2 / 2**129`` (below 1e-15 for a billion values); XXH3 passes SMHasher's
distribution and collision tests, and hashes at memory speed (see the performance page).
"""

from __future__ import annotations

import ctypes
import weakref

import xxhash

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DIGEST_NAME", "DigestCache", "args_text", "describe", "digest_bytes", "digest_tensor"]

#: The digest, as the trace header names it (traces with other digests do not compare).
DIGEST_NAME = "xxh3-128 of the bytes of the logical elements"
#: Longest argument text kept verbatim; longer ones keep a prefix and a digest.
ARGS_TEXT_LIMIT = 200
#: Longest text of one argument (a repr) kept verbatim.
ARG_LIMIT = 60

_hash = xxhash.xxh3_128_digest
_DESCRIPTIONS: dict[tuple[Any, ...], str] = {}
_DESCRIPTIONS_LIMIT = 1 << 14


def digest_bytes(data: Any) -> bytes:
    """Return the 16-byte digest of a bytes-like object."""
    return _hash(data)


def describe(tensor: Any, note: str | None = None) -> str:
    """Return ``dtype[shape]``, with ``@device`` off the CPU, the layout if not strided and ``note``.

    Never raises: a tensor that cannot report its metadata (a subclass, say) is
    described by its type.
    """
    try:
        if tensor.is_nested:
            text = _describe_nested(tensor)
        else:
            key = (tensor.dtype, tensor.shape, tensor.device, tensor.layout)
            cached = _DESCRIPTIONS.get(key)
            if cached is None:
                text = _describe(*key)
                if len(_DESCRIPTIONS) >= _DESCRIPTIONS_LIMIT:
                    _DESCRIPTIONS.clear()
                _DESCRIPTIONS[key] = text
            else:
                text = cached
            if tensor.is_quantized:
                text += f" q(scale={tensor.q_scale()!r}, zero_point={tensor.q_zero_point()})"
    except Exception:  # noqa: BLE001 - a description must never break the traced program
        text = f"{type(tensor).__name__} (metadata unreadable)"
    if type(tensor).__name__ not in ("Tensor", "Parameter"):
        text += f" {type(tensor).__name__}"
    if note is not None:
        text += f" {note}"
    return text


def _describe(dtype: Any, shape: Any, device: Any, layout: Any) -> str:
    text = f"{str(dtype).removeprefix('torch.')}[{', '.join(map(str, shape))}]"
    if device.type != "cpu":
        text += f"@{device}"
    if str(layout) != "torch.strided":
        text += f" {str(layout).removeprefix('torch.')}"
    return text


def _describe_nested(tensor: Any) -> str:
    """A nested tensor: its components' count and sizes (it has no single shape)."""
    sizes = [tuple(component.shape) for component in tensor.unbind()]
    text = f"{str(tensor.dtype).removeprefix('torch.')} nested{sizes}"
    if len(text) > ARGS_TEXT_LIMIT:
        text = f"{text[:ARGS_TEXT_LIMIT]}... #{_hash(text.encode()).hex()}"
    if tensor.device.type != "cpu":
        text += f"@{tensor.device}"
    layout = str(tensor.layout).removeprefix("torch.")
    return text if layout == "strided" else f"{text} {layout}"


def digest_tensor(tensor: Any) -> bytes | None:
    """Return the digest of a tensor's logical elements, or ``None`` when it has no values here.

    Args:
        tensor: A torch tensor.

    Returns:
        16 bytes, or ``None`` for a meta tensor or one whose bytes cannot be read
        (a subclass without storage).
    """
    try:
        if tensor.is_meta:
            return None
        if tensor.is_nested:
            # The components in order, each with its shape: equal exactly when every one is.
            parts = [
                repr(tuple(part.shape)).encode() + (digest_tensor(part) or b"?") for part in tensor.unbind()
            ]
            return _hash(b"".join(parts))
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
        if not tensor.is_cpu:
            tensor = tensor.cpu()
        size = tensor.numel() * tensor.element_size()
        if size == 0:
            return _EMPTY
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
        # The elements of a contiguous CPU tensor are exactly these bytes; read them in place.
        return _hash((ctypes.c_char * size).from_address(tensor.data_ptr()))
    except Exception:  # noqa: BLE001 - subclasses raise anything; an unreadable value has no digest
        return None


_EMPTY = _hash(b"")
_STRIDED: list[Any] = []


def _strided(tensor: Any) -> Any:
    if not _STRIDED:
        import torch  # noqa: PLC0415 - only reached with a tensor in hand

        _STRIDED.append(torch.strided)
    return _STRIDED[0]


def args_text(value: Any, tensor_type: type, generator_type: type) -> str:
    """Return the non-tensor content of an argument structure as text.

    Tensors read ``T`` and generators ``G`` (their values are recorded apart); floats
    use ``repr``, which round-trips exactly. A storage reads as its type and size (its
    bytes are recorded through the tensors that view it), and other objects as their
    type when their ``repr`` shows an address or is long. Texts over
    :data:`ARGS_TEXT_LIMIT` characters keep a prefix and a digest of the whole.

    Args:
        value: The positional arguments, or a dict of keyword arguments.
        tensor_type: ``torch.Tensor``.
        generator_type: ``torch.Generator``.

    Returns:
        The text.
    """
    text = _text(value, tensor_type, generator_type)
    if len(text) > ARGS_TEXT_LIMIT:
        text = f"{text[:ARGS_TEXT_LIMIT]}... #{_hash(text.encode()).hex()}"
    return text


_PLAIN = (int, float, bool, type(None), str)


def _text(value: Any, tensor_type: type, generator_type: type) -> str:  # noqa: PLR0911 - one per kind
    kind = type(value)
    if kind in _PLAIN:
        return repr(value) if kind is not str or len(value) <= ARG_LIMIT else f"<str of {len(value)}>"
    if isinstance(value, tensor_type):
        return "T"
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
    nbytes = getattr(value, "nbytes", None)
    if kind.__name__.endswith("Storage") and callable(nbytes):
        return f"<{kind.__name__} of {nbytes()} bytes>"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a repr must never break the traced program
        return f"<{kind.__name__}>"
    # An object shown by address would differ between runs; its type is what can be compared.
    if " at 0x" in text or len(text) > ARG_LIMIT or "\n" in text:
        return f"<{kind.__name__}>"
    return text


class DigestCache:
    """Remembers, per tensor object, its digest and the traced op that produced it.

    An entry belongs to one tensor object (by identity, through a weak reference, so a
    later object at the same address never inherits it) and holds the tensor's version
    counter, its data pointer, the digest (or ``None`` until one is needed) and the
    index of the op that produced the value. It is used while the object is alive,
    its version counter is unchanged (every in-place op bumps it, and views,
    ``detach()`` and tensors autograd saved share it) and its data pointer is the same
    (``.data =`` and ``set_`` move it). A traced op that writes to memory drops the
    entries of every tensor on the written storage, which covers aliases with counters
    of their own (``.data``). Writes that bypass torch (through a ``.numpy()`` view,
    ctypes, another process) are not seen: ``trace(rehash=True)`` hashes every input
    again instead.
    """

    #: Entries kept at most; past it, those of dead tensors are swept, then all if needed.
    LIMIT = 1 << 14

    def __init__(self) -> None:
        # id(tensor) -> (weak reference, version, data pointer, storage address, digest,
        # producer, description). Storages are told apart by address alone: host and
        # device memory share one virtual address space.
        self._entries: dict[int, tuple[Any, int, int, int, bytes | None, int | None, str | None]] = {}
        self._by_storage: dict[int, list[int]] = {}
        self._stores = 0  # since the last sweep: bounds the storage lists' stale keys too

    def valid(self, tensor: Any) -> tuple[Any, ...] | None:
        """The entry of this very tensor object, if its memory is unchanged since; else ``None``."""
        entry = self._entries.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        try:
            if entry[1] == tensor._version and entry[2] == tensor.data_ptr():
                return entry
        except Exception:  # noqa: BLE001 - uncacheable after all
            return None
        return None

    def producer(self, tensor: Any) -> int | None:
        """The index of the traced op that produced ``tensor``'s current value, if known."""
        entry = self.valid(tensor)
        return None if entry is None else entry[5]

    def read(
        self, tensor: Any, rehash: bool = False, description: str | None = None
    ) -> tuple[bytes | None, int | None, bool]:
        """Return (digest, producer, changed) of a tensor an op consumes.

        Args:
            tensor: The tensor.
            rehash: Hash it even when the cached digest is valid, and report in
                ``changed`` whether its bytes differ from it (a write outside torch ops).
            description: Its description, kept with the digest.
        """
        entry = self.valid(tensor)
        if entry is not None and entry[4] is not None and not rehash:
            return entry[4], entry[5], False
        digest = digest_tensor(tensor)
        producer = None if entry is None else entry[5]
        changed = entry is not None and entry[4] is not None and digest != entry[4]
        if digest is not None:
            self.store(tensor, digest, producer, description)
        return digest, producer, changed

    def store(
        self, tensor: Any, digest: bytes | None, producer: int | None, description: str | None = None
    ) -> None:
        """Remember ``tensor``'s digest (``None``: hash it when read), producing op and description."""
        try:
            version = tensor._version
            pointer = tensor.data_ptr()
            storage = tensor.untyped_storage().data_ptr()
            reference = weakref.ref(tensor)
        except Exception:  # noqa: BLE001 - inference tensors, sparse, storage-less subclasses
            return
        self._stores += 1
        if len(self._entries) >= self.LIMIT or self._stores >= 4 * self.LIMIT:
            self._sweep()
        key = id(tensor)
        self._entries[key] = (reference, version, pointer, storage, digest, producer, description)
        self._by_storage.setdefault(storage, []).append(key)

    def written(self, tensor: Any) -> None:
        """Forget every entry of memory in ``tensor``'s storage (a traced op wrote to it)."""
        try:
            storage = tensor.untyped_storage().data_ptr()
        except Exception:  # noqa: BLE001 - storage-less: never cached
            return
        keys = self._by_storage.pop(storage, None)
        if keys:
            entries = self._entries
            for key in keys:
                entries.pop(key, None)

    def _sweep(self) -> None:
        """Drop the entries of dead tensors; drop everything if most are still alive."""
        self._stores = 0
        alive = {key: entry for key, entry in list(self._entries.items()) if entry[0]() is not None}
        if len(alive) >= self.LIMIT // 2:
            alive = {}
        self._entries = alive
        by_storage: dict[int, list[int]] = {}
        for key, entry in alive.items():
            by_storage.setdefault(entry[3], []).append(key)
        self._by_storage = by_storage
