"""Byte copies of the C structs behind ``random`` and NumPy's legacy generator.

``random.getstate()`` builds a tuple of 625 ints and ``np.random.get_state()`` a dict and
an array; each round trip costs tens of microseconds, most of a scope's cost. Both
generators keep their whole state in a fixed-size C struct, so a copy of those bytes is an
exact, cheap snapshot. The structs' offsets are never assumed: they are *found* by
comparing the bytes of probe objects with what the public API reports, checked on a
second probe, and a write through the found layout must reproduce the public state. If
any check fails (another interpreter, a debug or free-threaded build, a changed NumPy),
the sources fall back to the public API. Both paths are tested against each other.

A layout is only ever valid for the exact types it was verified on. The objects behind
the module-level generators can be replaced at any time (``random._inst = ...``,
``np.random.set_bit_generator(...)``), so every read and write first checks that the
object in hand is of those types and, for NumPy, that its state pointer leads into the
bit generator it names. Anything else goes through the public API.
"""

from __future__ import annotations

import ctypes
import os
import sys
from array import array
from types import ModuleType
from typing import Any, NamedTuple

__all__ = [
    "FAST_PATHS_VARIABLE",
    "NumpyLayout",
    "RandomLayout",
    "fast_paths_enabled",
    "find_numpy_layout",
    "find_random_layout",
]

_MT_WORDS = 624
_MT_BYTES = _MT_WORDS * 4 + 4  # the key words plus a C int position
_POINTER = ctypes.sizeof(ctypes.c_void_p)
# Copies go through ctypes arrays' ``raw`` (a memcpy under the GIL): ``ctypes.memmove``
# releases the GIL, and another thread could then read a half-written state.
_MT_STRUCT = ctypes.c_char * _MT_BYTES
_GAUSS_STRUCT = ctypes.c_char * 16


#: Set to ``0`` to make every source use the public API (a diagnostic: results must not change).
FAST_PATHS_VARIABLE = "DETERMINISTIC_FAST_PATHS"


def fast_paths_enabled() -> bool:
    """Return whether byte copies may be used here: CPython with a GIL, not switched off.

    Without the GIL another thread could read a struct half-written. The environment
    variable is read each time a source looks for its layout (once per process, or after
    :func:`forget_layouts`).

    Returns:
        ``False`` when ``DETERMINISTIC_FAST_PATHS=0`` or the interpreter rules them out.
    """
    if os.environ.get(FAST_PATHS_VARIABLE, "1").strip() == "0":
        return False
    gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return sys.implementation.name == "cpython" and (gil_enabled is None or gil_enabled())


def _object_bytes(obj: object, size: int) -> bytes:
    return ctypes.string_at(id(obj), size)


class RandomLayout(NamedTuple):
    """Where a ``random.Random`` keeps its Mersenne Twister: ``index`` then 624 words.

    The layout was verified for objects of exactly ``kind``; callers check
    ``type(generator) is kind`` before every read or write (:meth:`fits`).
    """

    offset: int
    kind: Any  # the exact class the layout was verified on (``random.Random``)

    def fits(self, generator: object) -> bool:
        """Return whether ``generator`` is of the exact type this layout was verified for."""
        return type(generator) is self.kind

    def read(self, generator: Any) -> bytes:
        """Return the struct bytes of a generator that :meth:`fits`."""
        return _MT_STRUCT.from_address(id(generator) + self.offset).raw

    def write(self, generator: Any, raw: bytes) -> None:
        """Write struct bytes from :meth:`read` into a generator that :meth:`fits`."""
        _MT_STRUCT.from_address(id(generator) + self.offset).raw = raw

    @staticmethod
    def public(raw: bytes, gauss_next: Any) -> tuple[Any, ...]:
        """Return struct bytes and ``gauss_next`` as ``random.getstate()`` reports them."""
        index = int.from_bytes(raw[:4], sys.byteorder, signed=True)
        words = array("I", raw[4:])
        return (3, (*words, index), gauss_next)


def _random_expected(generator: Any) -> bytes:
    internal: tuple[int, ...] = generator.getstate()[1]
    return internal[-1].to_bytes(4, sys.byteorder, signed=True) + array("I", internal[:-1]).tobytes()


def find_random_layout(random_module: ModuleType) -> RandomLayout | None:  # noqa: PLR0911
    """Find and verify the layout of ``random.Random``'s C state, or return ``None``.

    Args:
        random_module: The ``random`` module.

    Returns:
        The verified layout (for objects of exactly ``random.Random``), or ``None`` to
        use the public API.
    """
    if not fast_paths_enabled():
        return None
    try:
        kind = random_module.Random
        base = next(t for t in kind.__mro__ if t.__module__ == "_random")
        first, second = kind(20240101), kind(7)
        second.random()
        offset = _object_bytes(first, base.__basicsize__).find(_random_expected(first))
        if offset <= 0 or array("I").itemsize != 4:
            return None
        layout = RandomLayout(offset, kind)
        if layout.read(second) != _random_expected(second):
            return None
        first.gauss(0, 1)
        layout.write(second, layout.read(first))
        second.gauss_next = first.gauss_next
        if second.getstate() != first.getstate():
            return None
        if layout.public(layout.read(first), first.gauss_next) != first.getstate():
            return None
        return layout
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        return None


class NumpyLayout(NamedTuple):
    """Where NumPy's ``RandomState`` keeps its MT19937 state and its Gaussian cache.

    The ``RandomState`` holds a copy of its bit generator's ``bitgen_t``, whose first
    field points at the state inside the bit generator object, and an ``aug_bitgen_t``
    (a pointer to that ``bitgen_t``, then ``has_gauss`` and ``gauss``). The global
    ``RandomState`` can be given another bit generator at any time
    (``np.random.set_bit_generator``), so :meth:`mt_address` checks, at every use, that
    the object is a ``state_type``, its bit generator exactly a ``bitgen_type``, and the
    pointer really leads into that bit generator.
    """

    bitgen_offset: int  # of the bitgen_t in the RandomState
    gauss_offset: int  # of has_gauss (an int) followed, 8-aligned, by the cached double
    state_offset: int  # of the MT19937 state inside the MT19937 object
    state_type: type
    bitgen_type: type

    def mt_address(self, state_object: Any, bit_generator: Any) -> int | None:
        """Return the address of the MT19937 state that ``state_object`` draws from, if verified.

        Args:
            state_object: A ``RandomState``.
            bit_generator: Its ``_bit_generator``, read by the caller.

        Returns:
            The address, or ``None`` when the layout does not apply to these objects.
        """
        if type(state_object) is not self.state_type or type(bit_generator) is not self.bitgen_type:
            return None
        address = ctypes.c_void_p.from_address(id(state_object) + self.bitgen_offset).value
        return address if address == id(bit_generator) + self.state_offset else None

    def read(self, state_object: Any, mt_address: int) -> tuple[bytes, bytes]:
        """Return the MT19937 bytes and the Gaussian-cache bytes (hold the bit generator's lock)."""
        return (
            _MT_STRUCT.from_address(mt_address).raw,
            _GAUSS_STRUCT.from_address(id(state_object) + self.gauss_offset).raw,
        )

    def write(self, state_object: Any, mt_address: int, raw: tuple[bytes, bytes]) -> None:
        """Write back bytes from :meth:`read` (hold the bit generator's lock)."""
        _MT_STRUCT.from_address(mt_address).raw = raw[0]
        _GAUSS_STRUCT.from_address(id(state_object) + self.gauss_offset).raw = raw[1]

    @staticmethod
    def public(raw: tuple[bytes, bytes]) -> dict[str, Any]:
        """Return bytes from :meth:`read` as ``get_state(legacy=False)`` reports them (key as a list)."""
        key = array("I", raw[0][: _MT_WORDS * 4]).tolist()
        pos = int.from_bytes(raw[0][_MT_WORDS * 4 :], sys.byteorder, signed=True)
        has_gauss = int.from_bytes(raw[1][:4], sys.byteorder, signed=True)
        gauss = ctypes.c_double.from_buffer_copy(raw[1][8:]).value
        return {
            "bit_generator": "MT19937",
            "state": {"key": key, "pos": pos},
            "has_gauss": has_gauss,
            "gauss": gauss,
        }


def _numpy_public(state_object: Any) -> dict[str, Any]:
    public: dict[str, Any] = state_object.get_state(legacy=False)
    public["state"] = {"key": public["state"]["key"].tolist(), "pos": public["state"]["pos"]}
    return public


def _find_pointer(memory: bytes, value: int) -> int:
    target = value.to_bytes(_POINTER, sys.byteorder)
    for offset in range(0, len(memory) - _POINTER + 1, _POINTER):
        if memory[offset : offset + _POINTER] == target:
            return offset
    return -1


def find_numpy_layout(numpy_random: ModuleType) -> NumpyLayout | None:
    """Find and verify the layout of NumPy's legacy ``RandomState`` with an MT19937, or return ``None``.

    Both the ``bitgen_t`` copy and the ``aug_bitgen_t`` are located by the pointers they
    hold, on probe objects that are not the global generator.

    Args:
        numpy_random: The ``numpy.random`` module.

    Returns:
        The verified layout, or ``None`` to use the public API.
    """
    if not fast_paths_enabled():
        return None
    try:
        state_type = numpy_random.RandomState
        bitgen_type = numpy_random.MT19937
        probe = state_type(bitgen_type(12345))
        probe.seed(12345)
        bit_generator = probe._bit_generator
        state_address = bit_generator.ctypes.state_address
        memory = _object_bytes(probe, state_type.__basicsize__)
        bitgen_offset = _find_pointer(memory, state_address)
        if bitgen_offset < 0:
            return None
        aug_offset = _find_pointer(memory, id(probe) + bitgen_offset)
        if aug_offset < 0:
            return None
        layout = NumpyLayout(
            bitgen_offset,
            aug_offset + _POINTER,
            state_address - id(bit_generator),
            state_type,
            bitgen_type,
        )
        return layout if _numpy_layout_works(layout, probe, state_type(bitgen_type(99))) else None
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        return None


def _numpy_layout_works(layout: NumpyLayout, probe: Any, other: Any) -> bool:
    """Check reads and writes through ``layout`` against the public API, with and without a Gaussian."""
    other.seed(99)
    for count in (1, 2):
        for _ in range(count):
            probe.standard_normal()
        other.standard_normal()
        source = layout.mt_address(probe, probe._bit_generator)
        target = layout.mt_address(other, other._bit_generator)
        if source is None or target is None:
            return False
        if layout.public(layout.read(probe, source)) != _numpy_public(probe):
            return False
        layout.write(other, target, layout.read(probe, source))
        if _numpy_public(other) != _numpy_public(probe) or other.standard_normal() != probe.standard_normal():
            return False
    return True
