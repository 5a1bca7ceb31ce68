"""Byte copies of the C structs behind ``random`` and NumPy's legacy generator.

``random.getstate()`` builds a tuple of 625 ints and ``np.random.get_state()`` a dict and
an array; each round trip costs tens of microseconds, most of a scope's cost. Both
generators keep their whole state in a fixed-size C struct, so a copy of those bytes is an
exact, cheap snapshot. The structs' offsets are never assumed: they are *found* by
comparing the bytes of probe objects with what the public API reports, checked on a
second probe, and a write through the found layout must reproduce the public state. If
any check fails (another interpreter, a debug or free-threaded build, a changed NumPy),
the sources fall back to the public API. Both paths are tested against each other.
"""

from __future__ import annotations

import ctypes
import sys
from array import array
from types import ModuleType
from typing import Any, NamedTuple

__all__ = ["NumpyLayout", "RandomLayout", "find_numpy_layout", "find_random_layout"]

_MT_WORDS = 624
_MT_BYTES = _MT_WORDS * 4 + 4  # the key words plus a C int position
_POINTER = ctypes.sizeof(ctypes.c_void_p)
# Copies go through ctypes arrays' ``raw`` (a memcpy under the GIL): ``ctypes.memmove``
# releases the GIL, and another thread could then read a half-written state.
_MT_STRUCT = ctypes.c_char * _MT_BYTES
_GAUSS_STRUCT = ctypes.c_char * 16


def _fast_paths_possible() -> bool:
    # Without the GIL another thread could read the struct half-written.
    gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return sys.implementation.name == "cpython" and (gil_enabled is None or gil_enabled())


def _object_bytes(obj: object, size: int) -> bytes:
    return ctypes.string_at(id(obj), size)


class RandomLayout(NamedTuple):
    """Where a ``random.Random`` keeps its Mersenne Twister: ``index`` then 624 words."""

    offset: int

    def capture(self, generator: Any) -> tuple[bytes, Any]:
        """Return the struct bytes and ``gauss_next``."""
        return _MT_STRUCT.from_address(id(generator) + self.offset).raw, generator.gauss_next

    def restore(self, generator: Any, state: tuple[bytes, Any]) -> None:
        """Write back a state from :meth:`capture`."""
        _MT_STRUCT.from_address(id(generator) + self.offset).raw = state[0]
        generator.gauss_next = state[1]

    def public(self, state: tuple[bytes, Any]) -> tuple[Any, ...]:
        """Return the state as ``random.getstate()`` reports it."""
        index = int.from_bytes(state[0][:4], sys.byteorder, signed=True)
        words = array("I", state[0][4:])
        return (3, (*words, index), state[1])


def _random_expected(generator: Any) -> bytes:
    internal: tuple[int, ...] = generator.getstate()[1]
    return internal[-1].to_bytes(4, sys.byteorder, signed=True) + array("I", internal[:-1]).tobytes()


def find_random_layout(random_module: ModuleType) -> RandomLayout | None:
    """Find and verify the layout of ``random.Random``'s C state, or return ``None``.

    Args:
        random_module: The ``random`` module.

    Returns:
        The verified layout, or ``None`` to use the public API.
    """
    if not _fast_paths_possible():
        return None
    try:
        base = next(t for t in type(random_module._inst).__mro__ if t.__module__ == "_random")
        first, second = random_module.Random(20240101), random_module.Random(7)
        second.random()
        offset = _object_bytes(first, base.__basicsize__).find(_random_expected(first))
        if offset <= 0 or array("I").itemsize != 4:
            return None
        layout = RandomLayout(offset)
        if layout.capture(second)[0] != _random_expected(second):
            return None
        first.gauss(0, 1)
        layout.restore(second, layout.capture(first))
        if second.getstate() != first.getstate() or layout.public(layout.capture(first)) != first.getstate():
            return None
        return layout
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        return None


class NumpyLayout(NamedTuple):
    """Where NumPy's ``RandomState`` keeps its MT19937 state and its Gaussian cache."""

    bitgen_offset: int  # of the bitgen_t whose first field points at the MT19937 state
    gauss_offset: int  # of has_gauss (an int) followed, 8-aligned, by the cached double

    def capture(self, state_object: Any) -> tuple[bytes, bytes]:
        """Return the MT19937 bytes and the Gaussian-cache bytes of a ``RandomState``."""
        address = id(state_object)
        mt_address = ctypes.c_void_p.from_address(address + self.bitgen_offset).value
        with state_object._bit_generator.lock:
            return (
                _MT_STRUCT.from_address(mt_address).raw,  # type: ignore[arg-type]
                _GAUSS_STRUCT.from_address(address + self.gauss_offset).raw,
            )

    def restore(self, state_object: Any, state: tuple[bytes, bytes]) -> None:
        """Write back a state from :meth:`capture`."""
        address = id(state_object)
        mt_address = ctypes.c_void_p.from_address(address + self.bitgen_offset).value
        with state_object._bit_generator.lock:
            _MT_STRUCT.from_address(mt_address).raw = state[0]  # type: ignore[arg-type]
            _GAUSS_STRUCT.from_address(address + self.gauss_offset).raw = state[1]

    def public(self, state: tuple[bytes, bytes]) -> tuple[Any, ...]:
        """Return the state as ``np.random.get_state()`` reports it (key as a list)."""
        key = array("I", state[0][: _MT_WORDS * 4]).tolist()
        pos = int.from_bytes(state[0][_MT_WORDS * 4 :], sys.byteorder, signed=True)
        has_gauss = int.from_bytes(state[1][:4], sys.byteorder, signed=True)
        gauss = ctypes.c_double.from_buffer_copy(state[1][8:]).value
        return ("MT19937", key, pos, has_gauss, gauss)


def _numpy_public(state_object: Any) -> tuple[Any, ...]:
    name, key, pos, has_gauss, gauss = state_object.get_state()
    return (name, key.tolist(), pos, has_gauss, gauss)


def _find_pointer(memory: bytes, value: int) -> int:
    target = value.to_bytes(_POINTER, sys.byteorder)
    for offset in range(0, len(memory) - _POINTER + 1, _POINTER):
        if memory[offset : offset + _POINTER] == target:
            return offset
    return -1


def find_numpy_layout(numpy_random: ModuleType) -> NumpyLayout | None:
    """Find and verify the layout of NumPy's legacy ``RandomState``, or return ``None``.

    The ``RandomState`` holds a copy of its bit generator's ``bitgen_t`` (whose first
    field points at the MT19937 state) and an ``aug_bitgen_t`` (a pointer to that
    ``bitgen_t``, then ``has_gauss`` and ``gauss``); both are located by those pointers.

    Args:
        numpy_random: The ``numpy.random`` module.

    Returns:
        The verified layout, or ``None`` to use the public API.
    """
    if not _fast_paths_possible():
        return None
    try:
        global_state = numpy_random.mtrand._rand
        state_type = type(global_state)
        if type(global_state._bit_generator) is not numpy_random.MT19937:
            return None
        probe = state_type(12345)
        size = state_type.__basicsize__
        memory = _object_bytes(probe, size)
        bitgen_offset = _find_pointer(memory, probe._bit_generator.ctypes.state_address)
        if bitgen_offset < 0:
            return None
        aug_offset = _find_pointer(memory, id(probe) + bitgen_offset)
        if aug_offset < 0:
            return None
        layout = NumpyLayout(bitgen_offset, aug_offset + _POINTER)
        return layout if _numpy_layout_works(layout, probe, state_type(99)) else None
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        return None


def _numpy_layout_works(layout: NumpyLayout, probe: Any, other: Any) -> bool:
    """Check reads and writes through ``layout`` against the public API, with and without a Gaussian."""
    for count in (1, 2):
        for _ in range(count):
            probe.standard_normal()
        other.standard_normal()
        if layout.public(layout.capture(probe)) != _numpy_public(probe):
            return False
        layout.restore(other, layout.capture(probe))
        if _numpy_public(other) != _numpy_public(probe) or other.standard_normal() != probe.standard_normal():
            return False
    return True
