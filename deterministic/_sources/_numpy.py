"""NumPy's legacy global ``RandomState`` (``np.random.rand``, ``np.random.seed``), any bit generator."""

from __future__ import annotations

from ._data import expect_fields, expect_float, expect_int, expect_words
from ._protocol import loaded_module

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

    from ._layout import NumpyLayout

__all__ = ["BIT_GENERATORS", "NumpySource"]

_UNPROBED: Any = object()
_U32 = (0, 2**32 - 1)
_U64 = (0, 2**64 - 1)
_U128 = (0, 2**128 - 1)
_FLAG = (0, 1)
_PCG = {"state": {"state": _U128, "inc": _U128}, "has_uint32": _FLAG, "uinteger": _U32}

#: The plain-data shape of each bit generator's state other than MT19937: an int range,
#: ``[count, range]`` for a list of ints (a ``uint64`` array in NumPy), or a dict of those.
BIT_GENERATORS: dict[str, dict[str, Any]] = {
    "PCG64": _PCG,
    "PCG64DXSM": _PCG,
    "Philox": {
        "state": {"counter": [4, _U64], "key": [2, _U64]},
        "buffer": [4, _U64],
        "buffer_pos": (0, 4),
        "has_uint32": _FLAG,
        "uinteger": _U32,
    },
    "SFC64": {"state": {"state": [4, _U64]}, "has_uint32": _FLAG, "uinteger": _U32},
}


class NumpySource:
    """The legacy global generator (``numpy.random.mtrand._rand``), its Gaussian cache included.

    NumPy 2 imports ``numpy.random`` lazily, so the source is about ``numpy.random``,
    not ``numpy``: a scope never triggers that import itself. The global generator may
    draw from any bit generator (``np.random.set_bit_generator``): an ``MT19937`` is
    seeded as ``np.random.seed(seed)`` does, any other bit generator ``X`` is given the
    state of ``type(X)(seed)``. A state names the ``RandomState`` and the bit generator
    it was taken from, and restoring it puts both back if they were replaced. States
    are byte copies of the C structs when the verified layout applies to those very
    objects (see ``_layout``), else ``get_state(legacy=False)`` dicts.
    """

    name = "numpy"
    module = "numpy.random"

    def __init__(self) -> None:
        self._layout: NumpyLayout | None = _UNPROBED

    def _resolve(self, numpy_random: Any) -> NumpyLayout | None:
        if self._layout is _UNPROBED:
            from ._layout import find_numpy_layout  # noqa: PLC0415 - ctypes is imported on first use

            self._layout = find_numpy_layout(numpy_random)
        return self._layout

    def forget_layout(self) -> None:
        """Look for the layout again at next use (after the fast-path switch changed)."""
        self._layout = _UNPROBED

    def available(self) -> bool:
        """Return whether ``numpy.random`` is imported."""
        return loaded_module(self.module) is not None

    def capture(self) -> Any:
        """Return ``(RandomState, bit generator, struct bytes or None, get_state dict or None)``."""
        numpy_random: Any = loaded_module(self.module)
        state_object = numpy_random.mtrand._rand
        bit_generator = state_object._bit_generator
        layout = self._resolve(numpy_random)
        if layout is not None:
            address = layout.mt_address(state_object, bit_generator)
            if address is not None:
                with bit_generator.lock:
                    return (state_object, bit_generator, layout.read(state_object, address), None)
        return (state_object, bit_generator, None, state_object.get_state(legacy=False))

    def seed(self, seed: int) -> None:
        """Seed as ``np.random.seed(seed)`` does, or as ``type(X)(seed)`` for another bit generator ``X``."""
        numpy_random: Any = loaded_module(self.module)
        state_object = numpy_random.mtrand._rand
        bit_generator = state_object._bit_generator
        if isinstance(bit_generator, numpy_random.MT19937):
            state_object.seed(seed)
            return
        fresh: dict[str, Any] = type(bit_generator)(seed).state
        fresh["has_gauss"] = 0
        fresh["gauss"] = 0.0
        state_object.set_state(fresh)

    def restore(self, state: Any) -> None:
        """Put the captured ``RandomState`` and bit generator back if replaced, and install the state."""
        state_object, bit_generator, raw, public = state
        numpy_random: Any = loaded_module(self.module)
        mtrand = numpy_random.mtrand
        if mtrand._rand is not state_object:
            mtrand._rand = state_object
        if state_object._bit_generator is not bit_generator:
            mtrand.set_bit_generator(bit_generator)  # acts on mtrand._rand, just put back
        if raw is not None:
            layout = self._resolve(numpy_random)  # None if the fast paths were switched off meanwhile
            address = None if layout is None else layout.mt_address(state_object, bit_generator)
            if address is not None:
                with bit_generator.lock:
                    layout.write(state_object, address, raw)  # type: ignore[union-attr]
                return
            public = _mt_public(raw)
        state_object.set_state(_to_numpy(public))

    def public_state(self, state: Any) -> dict[str, Any]:
        """Return a captured state as ``get_state(legacy=False)`` does, with arrays as lists of ints."""
        _, _, raw, public = state
        if raw is not None:
            return _mt_public(raw)
        plain: dict[str, Any] = _to_plain(public)
        return plain

    def to_data(self, state: Any) -> dict[str, Any]:
        """Return a captured state as plain data.

        An MT19937 gives ``{"key", "pos", "has_gauss", "gauss"}``; another bit generator
        gives ``{"bit_generator", "state", "has_gauss", "gauss"}``, where ``state`` is its
        ``.state`` without the name, arrays as lists of ints.

        Raises:
            ValueError: For a bit generator other than MT19937, PCG64, PCG64DXSM, Philox or SFC64.
        """
        public = self.public_state(state)
        name = public["bit_generator"]
        if name == "MT19937":
            mt = public["state"]
            return {
                "key": mt["key"],
                "pos": int(mt["pos"]),
                "has_gauss": int(public["has_gauss"]),
                "gauss": float(public["gauss"]),
            }
        if name not in BIT_GENERATORS:
            supported = ", ".join(["MT19937", *BIT_GENERATORS])
            raise ValueError(
                f"cannot snapshot NumPy's global generator drawing from a {name} bit generator; "
                f"snapshots support {supported} (leave 'numpy' out of sources= to snapshot the rest)"
            )
        rest = {
            key: value for key, value in public.items() if key not in ("bit_generator", "has_gauss", "gauss")
        }
        return {
            "bit_generator": name,
            "state": rest,
            "has_gauss": int(public["has_gauss"]),
            "gauss": float(public["gauss"]),
        }

    def check_data(self, data: object, field: str) -> dict[str, Any]:
        """Validate plain data from :meth:`to_data` (see ``Source.check_data``)."""
        if isinstance(data, dict) and "bit_generator" in data:
            fields = expect_fields(data, field, ("bit_generator", "state", "has_gauss", "gauss"))
            name = fields["bit_generator"]
            if name not in BIT_GENERATORS:
                supported = ", ".join(repr(known) for known in BIT_GENERATORS)
                raise ValueError(
                    f"{field}.bit_generator must be one of {supported} (an MT19937 state has "
                    f"the fields key, pos, has_gauss and gauss), not {name!r}"
                )
            return {
                "bit_generator": name,
                "state": _check_shape(fields["state"], BIT_GENERATORS[name], f"{field}.state"),
                "has_gauss": expect_int(fields["has_gauss"], f"{field}.has_gauss", 0, 1),
                "gauss": expect_float(fields["gauss"], f"{field}.gauss"),
            }
        fields = expect_fields(data, field, ("key", "pos", "has_gauss", "gauss"))
        return {
            "key": expect_words(fields["key"], f"{field}.key", 624),
            "pos": expect_int(fields["pos"], f"{field}.pos", 0, 624),
            "has_gauss": expect_int(fields["has_gauss"], f"{field}.has_gauss", 0, 1),
            "gauss": expect_float(fields["gauss"], f"{field}.gauss"),
        }

    def from_data(self, data: dict[str, Any]) -> Any:
        """Return a state for :meth:`restore` from validated plain data.

        The current global ``RandomState`` keeps its bit generator when that is of the
        snapshot's kind; otherwise a new bit generator of that kind is installed.
        """
        numpy_random: Any = loaded_module(self.module)
        state_object = numpy_random.mtrand._rand
        bit_generator = state_object._bit_generator
        name = data.get("bit_generator", "MT19937")
        if name == "MT19937":
            public = {
                "bit_generator": name,
                "state": {"key": data["key"], "pos": data["pos"]},
                "has_gauss": data["has_gauss"],
                "gauss": data["gauss"],
            }
        else:
            public = {
                "bit_generator": name,
                **data["state"],
                "has_gauss": data["has_gauss"],
                "gauss": data["gauss"],
            }
        kind = getattr(numpy_random, name)
        if not isinstance(bit_generator, kind):
            bit_generator = kind()
        return (state_object, bit_generator, None, _to_numpy(public))


def _mt_public(raw: tuple[bytes, bytes]) -> dict[str, Any]:
    from ._layout import NumpyLayout  # noqa: PLC0415 - only reached once a layout was found

    return NumpyLayout.public(raw)


def _to_plain(value: Any) -> Any:
    """Return a ``get_state(legacy=False)`` value with NumPy arrays and scalars as Python ints."""
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _to_numpy(public: dict[str, Any]) -> dict[str, Any]:
    """Return a state dict for ``RandomState.set_state``: lists become the arrays NumPy expects."""
    import numpy  # noqa: PLC0415 - loaded already: numpy.random is

    dtype = numpy.uint32 if public["bit_generator"] == "MT19937" else numpy.uint64

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        if isinstance(value, list):
            return numpy.array(value, dtype=dtype)
        return value

    converted: dict[str, Any] = convert(public)
    return converted


def _check_shape(value: object, shape: Any, field: str) -> Any:
    """Validate ``value`` against a shape from :data:`BIT_GENERATORS` and return a copy."""
    if isinstance(shape, dict):
        fields = expect_fields(value, field, tuple(shape))
        return {key: _check_shape(fields[key], shape[key], f"{field}.{key}") for key in shape}
    if isinstance(shape, list):
        count, (low, high) = shape
        if not isinstance(value, list):
            raise ValueError(f"{field} must be a list, not {type(value).__name__}")
        if len(value) != count:
            raise ValueError(f"{field} must have {count} entries, not {len(value)}")
        return [expect_int(item, f"{field}[{index}]", low, high) for index, item in enumerate(value)]
    low, high = shape
    return expect_int(value, field, low, high)
