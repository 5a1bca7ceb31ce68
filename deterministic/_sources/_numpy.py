"""NumPy's legacy global ``RandomState`` (``np.random.rand``, ``np.random.seed``)."""

from __future__ import annotations

from typing import Any

from ._protocol import loaded_module

__all__ = ["NumpySource"]


class NumpySource:
    """The legacy global generator; its state includes the cached Gaussian of ``randn``.

    NumPy 2 imports ``numpy.random`` lazily, so the source is about ``numpy.random``,
    not ``numpy``: a scope never triggers that import itself.
    """

    name = "numpy"
    module = "numpy.random"

    def available(self) -> bool:
        """Return whether ``numpy.random`` is imported."""
        return loaded_module(self.module) is not None

    def capture(self) -> Any:
        """Return ``np.random.get_state()`` (the legacy tuple, Gaussian cache included)."""
        return loaded_module(self.module).get_state()  # type: ignore[union-attr]

    def seed(self, seed: int) -> None:
        """Call ``np.random.seed(seed)``."""
        loaded_module(self.module).seed(seed)  # type: ignore[union-attr]

    def restore(self, state: Any) -> None:
        """Call ``np.random.set_state(state)``."""
        loaded_module(self.module).set_state(state)  # type: ignore[union-attr]
