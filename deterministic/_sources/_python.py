"""Python's ``random`` module-level generator."""

from __future__ import annotations

import random
from typing import Any

__all__ = ["PythonRandomSource"]


class PythonRandomSource:
    """The generator behind ``random.random()`` and friends; its state includes ``gauss_next``."""

    name = "random"
    module = "random"

    def available(self) -> bool:
        """Return ``True``: ``random`` is always importable."""
        return True

    def capture(self) -> Any:
        """Return ``random.getstate()``, which includes the cached Gaussian."""
        return random.getstate()

    def seed(self, seed: int) -> None:
        """Call ``random.seed(seed)``, which also clears the cached Gaussian."""
        random.seed(seed)

    def restore(self, state: Any) -> None:
        """Call ``random.setstate(state)``."""
        random.setstate(state)
