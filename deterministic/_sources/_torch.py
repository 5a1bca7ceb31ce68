"""Torch's CPU default generator."""

from __future__ import annotations

from ._data import expect_fields, expect_hex
from ._protocol import loaded_module

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

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

    def to_data(self, state: Any) -> dict[str, Any]:
        """Return a captured state as plain data: ``{"state": <hex of the state bytes>}``."""
        return {"state": bytes(state.tolist()).hex()}

    def check_data(self, data: object, field: str) -> dict[str, Any]:
        """Validate plain data from :meth:`to_data` (see ``Source.check_data``).

        Where torch is installed, the state is also installed on a scratch
        ``torch.Generator`` (never the default one), so that a state torch refuses
        (wrong size, not a valid Mersenne Twister state) is refused here, naming the field.
        """
        fields = expect_fields(data, field, ("state",))
        state = expect_hex(fields["state"], f"{field}.state")
        torch = _torch_if_installed()
        if torch is not None:
            raw = bytes.fromhex(state)
            scratch = torch.Generator()
            size = scratch.get_state().numel()
            if len(raw) != size:
                raise ValueError(
                    f"{field}.state has {len(raw)} bytes; this torch's CPU generator state has {size}"
                )
            try:
                scratch.set_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
            except RuntimeError as error:
                raise ValueError(f"{field}.state is not a state torch accepts: {error}") from None
        return {"state": state}

    def from_data(self, data: dict[str, Any]) -> Any:
        """Return a state for :meth:`restore` from validated plain data.

        Raises:
            ValueError: If the state's size is not the size of this torch's CPU generator state.
        """
        torch: Any = loaded_module(self.module)
        return _tensor_like(
            torch, bytes.fromhex(data["state"]), torch.default_generator.get_state(), "torch.state"
        )


def _torch_if_installed() -> Any:
    """Return torch, importing it if it is installed but not imported yet; else ``None``."""
    torch = loaded_module("torch")
    if torch is not None:
        return torch
    import importlib.util  # noqa: PLC0415 - only validation of torch states needs it

    if importlib.util.find_spec("torch") is None:
        return None
    import torch  # noqa: PLC0415 - the snapshot holds torch state, so restore needs torch anyway

    return torch


def _tensor_like(torch: Any, raw: bytes, current: Any, field: str) -> Any:
    """Return ``raw`` as a byte tensor shaped like the generator state ``current``."""
    if len(raw) != current.numel():
        raise ValueError(f"{field} has {len(raw)} bytes; this generator's state has {current.numel()}")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()
