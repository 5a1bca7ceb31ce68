"""NumPy's legacy global ``RandomState`` (``np.random.rand``, ``np.random.seed``)."""

from __future__ import annotations

from ._data import expect_fields, expect_float, expect_int, expect_words
from ._protocol import loaded_module

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

    from ._layout import NumpyLayout

__all__ = ["NumpySource"]

_UNPROBED: Any = object()


class NumpySource:
    """The legacy global generator; its state includes the cached Gaussian of ``randn``.

    NumPy 2 imports ``numpy.random`` lazily, so the source is about ``numpy.random``,
    not ``numpy``: a scope never triggers that import itself. States are byte copies of
    the generator's C structs when that layout could be verified (see ``_layout``), else
    ``np.random.get_state()`` tuples; :meth:`public_state` converts.
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

    def available(self) -> bool:
        """Return whether ``numpy.random`` is imported."""
        return loaded_module(self.module) is not None

    def capture(self) -> Any:
        """Return the full state, Gaussian cache included."""
        numpy_random: Any = loaded_module(self.module)
        layout = self._resolve(numpy_random)
        if layout is None:
            return numpy_random.get_state()
        return layout.capture(numpy_random.mtrand._rand)

    def seed(self, seed: int) -> None:
        """Call ``np.random.seed(seed)``."""
        loaded_module(self.module).seed(seed)  # type: ignore[union-attr]

    def restore(self, state: Any) -> None:
        """Install a state from :meth:`capture`."""
        numpy_random: Any = loaded_module(self.module)
        if len(state) == 2:
            self._layout.restore(numpy_random.mtrand._rand, state)  # type: ignore[union-attr]
        else:
            numpy_random.set_state(state)

    def public_state(self, state: Any) -> Any:
        """Return a captured state in the form of ``np.random.get_state()`` (key as a list)."""
        if len(state) == 2:
            return self._layout.public(state)  # type: ignore[union-attr]
        name, key, pos, has_gauss, gauss = state
        return (name, [int(word) for word in key], pos, has_gauss, gauss)

    def to_data(self, state: Any) -> dict[str, Any]:
        """Return a captured state as plain data: ``{"key", "pos", "has_gauss", "gauss"}``."""
        _, key, pos, has_gauss, gauss = self.public_state(state)
        return {"key": key, "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}

    def check_data(self, data: object, field: str) -> dict[str, Any]:
        """Validate plain data from :meth:`to_data` (see ``Source.check_data``)."""
        fields = expect_fields(data, field, ("key", "pos", "has_gauss", "gauss"))
        return {
            "key": expect_words(fields["key"], f"{field}.key", 624),
            "pos": expect_int(fields["pos"], f"{field}.pos", 0, 624),
            "has_gauss": expect_int(fields["has_gauss"], f"{field}.has_gauss", 0, 1),
            "gauss": expect_float(fields["gauss"], f"{field}.gauss"),
        }

    def from_data(self, data: dict[str, Any]) -> Any:
        """Return a state for :meth:`restore` from validated plain data."""
        return ("MT19937", list(data["key"]), data["pos"], data["has_gauss"], data["gauss"])
