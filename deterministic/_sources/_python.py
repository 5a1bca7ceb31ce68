"""Python's ``random`` module-level generator."""

from __future__ import annotations

import sys

from ._data import expect_fields, expect_float, expect_int, expect_words

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

    from ._layout import RandomLayout

__all__ = ["PythonRandomSource"]

_UNPROBED: Any = object()
_SEED_CACHE_SIZE = 64


class PythonRandomSource:
    """The generator behind ``random.random()`` and friends; its state includes ``gauss_next``.

    States are byte copies of the generator's C struct when that layout could be verified
    (see ``_layout``), else ``random.getstate()`` tuples; :meth:`public_state` converts.
    """

    name = "random"
    module = "random"

    def __init__(self) -> None:
        self._layout: RandomLayout | None = _UNPROBED
        # Seeding runs init_by_array in Python-visible steps (~6 us); the state a seed
        # produces never changes, so recent seeds keep a byte copy to install instead.
        self._seeded: dict[int, Any] = {}

    @staticmethod
    def _random() -> ModuleType:
        module = sys.modules.get("random")
        if module is not None:
            return module
        import random  # noqa: PLC0415 - `import deterministic` stays light

        return random

    def _resolve(self) -> RandomLayout | None:
        if self._layout is _UNPROBED:
            from ._layout import find_random_layout  # noqa: PLC0415 - ctypes is imported on first use

            self._layout = find_random_layout(self._random())
        return self._layout

    def available(self) -> bool:
        """Return ``True``: ``random`` is always importable."""
        return True

    def capture(self) -> Any:
        """Return the full state, including the cached Gaussian."""
        layout = self._resolve()
        random = self._random()
        return random.getstate() if layout is None else layout.capture(random._inst)

    def seed(self, seed: int) -> None:
        """Call ``random.seed(seed)``, which also clears the cached Gaussian."""
        layout = self._resolve()
        random = self._random()
        if layout is None:
            random.seed(seed)
            return
        state = self._seeded.get(seed)
        if state is None:
            random.seed(seed)
            if len(self._seeded) >= _SEED_CACHE_SIZE:
                self._seeded.clear()
            self._seeded[seed] = layout.capture(random._inst)
        else:
            layout.restore(random._inst, state)

    def restore(self, state: Any) -> None:
        """Install a state from :meth:`capture`."""
        random = self._random()
        if len(state) == 2:
            self._layout.restore(random._inst, state)  # type: ignore[union-attr]
        else:
            random.setstate(state)

    def public_state(self, state: Any) -> Any:
        """Return a captured state in the form of ``random.getstate()``."""
        return self._layout.public(state) if len(state) == 2 else state  # type: ignore[union-attr]

    def to_data(self, state: Any) -> dict[str, Any]:
        """Return a captured state as plain data: ``{"version", "state", "gauss_next"}``."""
        version, internal, gauss_next = self.public_state(state)
        return {"version": version, "state": list(internal), "gauss_next": gauss_next}

    def check_data(self, data: object, field: str) -> dict[str, Any]:
        """Validate plain data from :meth:`to_data` (see ``Source.check_data``)."""
        fields = expect_fields(data, field, ("version", "state", "gauss_next"))
        expect_int(fields["version"], f"{field}.version", 3, 3)
        words = expect_words(fields["state"], f"{field}.state", 625)
        expect_int(words[-1], f"{field}.state[624]", 0, 624)  # the position in the key
        gauss_next = expect_float(fields["gauss_next"], f"{field}.gauss_next", allow_none=True)
        return {"version": 3, "state": words, "gauss_next": gauss_next}

    def from_data(self, data: dict[str, Any]) -> Any:
        """Return a state for :meth:`restore` from validated plain data."""
        return (data["version"], tuple(data["state"]), data["gauss_next"])
