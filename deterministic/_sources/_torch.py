"""Torch's CPU default generator."""

from __future__ import annotations

from typing import Any

from ._protocol import loaded_module

__all__ = ["TorchSource"]


class TorchSource:
    """``torch.default_generator``, seeded through the generator itself.

    ``torch.manual_seed`` is avoided on purpose: besides being ~90x slower, it queues a
    lazy seed for every accelerator that no later restore can take back. Accelerators
    are separate sources.
    """

    name = "torch"
    module = "torch"

    def available(self) -> bool:
        """Return whether torch is imported."""
        return loaded_module(self.module) is not None

    def capture(self) -> Any:
        """Return the CPU generator's state tensor."""
        return loaded_module(self.module).default_generator.get_state()  # type: ignore[union-attr]

    def seed(self, seed: int) -> None:
        """Seed the CPU generator as ``torch.manual_seed(seed)`` does."""
        loaded_module(self.module).default_generator.manual_seed(seed)  # type: ignore[union-attr]

    def restore(self, state: Any) -> None:
        """Install a state tensor from :meth:`capture`."""
        loaded_module(self.module).default_generator.set_state(state)  # type: ignore[union-attr]
