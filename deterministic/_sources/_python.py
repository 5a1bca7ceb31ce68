"""Python's ``random`` module-level generator: the object ``random.random()`` and friends draw from."""

from __future__ import annotations

import sys

from ._data import expect_fields, expect_int, expect_words

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

    from ._layout import RandomLayout

__all__ = ["PythonRandomSource"]

_UNPROBED: Any = object()
_SEED_CACHE_SIZE = 64


class PythonRandomSource:
    """The generator behind ``random.random()`` and friends; its state includes ``gauss_next``.

    The module's functions are bound methods of one ``Random`` object, made at import;
    assigning ``random._inst`` later changes nothing they do. The source therefore works
    on the object ``random.getstate`` is bound to, looked up at each use, so that a
    capture is what ``random.getstate()`` returns and seeding is what ``random.seed()``
    does. A state names the object it was taken from and is restored into it. States hold
    byte copies of the generator's C struct when the object is exactly the type whose
    layout was verified (see ``_layout``), else ``getstate()`` tuples; :meth:`public_state`
    converts.
    """

    name = "random"
    module = "random"

    def __init__(self) -> None:
        self._layout: RandomLayout | None = _UNPROBED
        # Seeding runs init_by_array in Python-visible steps (~6 us); the state a seed
        # produces never changes, so recent seeds keep a byte copy to install instead.
        # The bytes are a pure function of the seed, valid for any object the layout fits.
        self._seeded: dict[int, bytes] = {}

    @staticmethod
    def _random() -> Any:
        module = sys.modules.get("random")
        if module is not None:
            return module
        import random  # noqa: PLC0415 - `import deterministic` stays light

        return random

    def _generator(self) -> Any:
        """The object the module's functions use (``random._inst`` only if they are not bound methods)."""
        module = self._random()
        generator = getattr(module.getstate, "__self__", None)
        return generator if isinstance(generator, module.Random) else module._inst

    def _resolve(self) -> RandomLayout | None:
        if self._layout is _UNPROBED:
            from ._layout import find_random_layout  # noqa: PLC0415 - ctypes is imported on first use

            self._layout = find_random_layout(self._random())
        return self._layout

    def forget_layout(self) -> None:
        """Look for the layout again at next use (after the fast-path switch changed)."""
        self._layout = _UNPROBED
        self._seeded.clear()

    def available(self) -> bool:
        """Return ``True``: ``random`` is always importable."""
        return True

    def capture(self) -> Any:
        """Return ``(generator, struct bytes or None, gauss_next or getstate())``."""
        layout = self._resolve()
        generator = self._generator()
        if layout is not None and type(generator) is layout.kind:
            return (generator, layout.read(generator), generator.gauss_next)
        return (generator, None, generator.getstate())

    def seed(self, seed: int) -> None:
        """Seed as ``random.seed(seed)`` does, which also clears the cached Gaussian."""
        generator = self._generator()
        # Seeding before anything was captured (a process's start under `run`) needs no
        # byte copies: probing the layout would import ctypes into every child.
        layout = None if self._layout is _UNPROBED else self._resolve()
        if layout is None or type(generator) is not layout.kind:
            generator.seed(seed)
            return
        raw = self._seeded.get(seed)
        if raw is None:
            generator.seed(seed)
            if len(self._seeded) >= _SEED_CACHE_SIZE:
                self._seeded.clear()
            self._seeded[seed] = layout.read(generator)
        else:
            layout.write(generator, raw)
            generator.gauss_next = None

    def restore(self, state: Any) -> None:
        """Install a captured state into the object it was captured from."""
        generator, raw, rest = state
        if raw is None:
            generator.setstate(rest)
            return
        layout = self._resolve()  # None if the fast paths were switched off since the capture
        if layout is not None and type(generator) is layout.kind:
            layout.write(generator, raw)
            generator.gauss_next = rest
        else:  # its type changed since the capture (``__class__`` assignment)
            generator.setstate(_public(raw, rest))

    def public_state(self, state: Any) -> Any:
        """Return a captured state in the form of ``random.getstate()``."""
        _, raw, rest = state
        return rest if raw is None else _public(raw, rest)

    def to_data(self, state: Any) -> dict[str, Any]:
        """Return a captured state as plain data: ``{"version", "state", "gauss_next"}``."""
        version, internal, gauss_next = self.public_state(state)
        return {"version": version, "state": list(internal), "gauss_next": gauss_next}

    def check_data(self, data: object, field: str) -> dict[str, Any]:
        """Validate plain data from :meth:`to_data` (see ``Source.check_data``).

        ``gauss_next`` may be a float, ``None`` or an int: ``random.setstate`` accepts
        all three, so a snapshot of any state Python allows round-trips.
        """
        fields = expect_fields(data, field, ("version", "state", "gauss_next"))
        expect_int(fields["version"], f"{field}.version", 3, 3)
        words = expect_words(fields["state"], f"{field}.state", 625)
        expect_int(words[-1], f"{field}.state[624]", 0, 624)  # the position in the key
        gauss_next = fields["gauss_next"]
        if gauss_next is not None and (type(gauss_next) not in (int, float)):
            raise ValueError(
                f"{field}.gauss_next must be a float, an int or None, not {type(gauss_next).__name__}"
            )
        return {"version": 3, "state": words, "gauss_next": gauss_next}

    def from_data(self, data: dict[str, Any]) -> Any:
        """Return a state for :meth:`restore` (into what the module's functions use) from validated data."""
        generator = self._generator()
        return (generator, None, (data["version"], tuple(data["state"]), data["gauss_next"]))


def _public(raw: bytes, gauss_next: Any) -> tuple[Any, ...]:
    from ._layout import RandomLayout  # noqa: PLC0415 - only reached once a layout was found

    return RandomLayout.public(raw, gauss_next)
