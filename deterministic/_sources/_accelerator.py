"""Per-device generators of torch accelerators (CUDA, XPU, MTIA, MPS), without ever initialising one."""

from __future__ import annotations

from types import ModuleType
from typing import Any, NamedTuple

from ._protocol import loaded_module

__all__ = ["AcceleratorSource"]


class _Initialized(NamedTuple):
    """The state of an initialised device module: one generator state per device."""

    states: tuple[Any, ...]


class _Pending(NamedTuple):
    """The state of a device module not yet initialised: the seeds torch has queued for it."""

    seed_all: Any
    seed_one: Any
    call_order: Any


class AcceleratorSource:
    """Every device of one torch device module, through torch's generic device-module API.

    Reading a device state (``torch.cuda.get_rng_state``) initialises the device, so the
    source only reads states once the module reports ``is_initialized()``. Before that it
    works on torch's queue of lazy seeds: seeding queues a seed for all devices, and
    restoring puts the queue back as it was. If a scope's body initialises the device,
    the restore resets every device to a fresh generator and replays the seeds that were
    queued at entry, which is the state initialisation would have produced without the
    scope. Devices in a forked child that cannot use them ("bad fork") are skipped.
    """

    module = "torch"

    def __init__(self, device_type: str) -> None:
        """Create the source for ``torch.<device_type>``.

        Args:
            device_type: ``"cuda"``, ``"xpu"``, ``"mtia"`` or ``"mps"``.
        """
        self.name = device_type
        # (device module, compiled?) cached per module object: whether torch was built
        # with this backend cannot change within a process.
        self._compiled: tuple[ModuleType, bool] | None = None
        self._fresh_seed: int | None = None

    def _device_module(self) -> ModuleType | None:
        torch = loaded_module("torch")
        return None if torch is None else getattr(torch, self.name, None)

    def _is_compiled(self, device: ModuleType) -> bool:
        cached = self._compiled
        if cached is not None and cached[0] is device:
            return cached[1]
        probe = getattr(device, "_is_compiled", None)
        if probe is None:
            probe = getattr(device, "is_available", None)
        compiled = bool(probe()) if probe is not None else False
        self._compiled = (device, compiled)
        return compiled

    def available(self) -> bool:
        """Return whether torch is imported with this backend built in and usable in this process."""
        device = self._device_module()
        if device is None or not self._is_compiled(device):
            return False
        in_bad_fork = getattr(device, "_is_in_bad_fork", None)
        return not (in_bad_fork is not None and in_bad_fork())

    @staticmethod
    def _initialized(device: ModuleType) -> bool:
        is_initialized = getattr(device, "is_initialized", None)
        # A module without lazy initialisation (MPS) is usable as soon as it is available.
        return True if is_initialized is None else bool(is_initialized())

    @staticmethod
    def _generators(device: ModuleType) -> tuple[Any, ...]:
        generators = getattr(device, "default_generators", None)
        if generators is not None:
            return tuple(generators)
        # MPS has a single device and exposes its generator only through functions.
        return (device._get_default_mps_generator(),)

    def capture(self) -> Any:
        """Return every device's state if initialised, else the queue of pending lazy seeds."""
        device = self._device_module()
        assert device is not None
        if self._initialized(device):
            return _Initialized(tuple(g.get_state() for g in self._generators(device)))
        tracker = device._lazy_seed_tracker
        return _Pending(tracker.manual_seed_all_cb, tracker.manual_seed_cb, tracker.call_order)

    def seed(self, seed: int) -> None:
        """Seed every device as ``torch.<device>.manual_seed_all(seed)`` does, lazily if need be."""
        device = self._device_module()
        assert device is not None
        if self._initialized(device):
            for generator in self._generators(device):
                generator.manual_seed(seed)
        else:
            device.manual_seed_all(seed)

    def restore(self, state: Any) -> None:
        """Install a state from :meth:`capture`; see the class docstring for the lazy case."""
        device = self._device_module()
        assert device is not None
        if isinstance(state, _Initialized):
            for generator, device_state in zip(self._generators(device), state.states, strict=True):
                generator.set_state(device_state)
            return
        tracker = device._lazy_seed_tracker
        tracker.manual_seed_all_cb = state.seed_all
        tracker.manual_seed_cb = state.seed_one
        tracker.call_order = state.call_order
        if self._initialized(device):
            # Initialised inside the scope: rebuild what initialisation would have
            # produced without it, i.e. fresh generators plus the seeds queued at entry.
            fresh = self._default_seed()
            for generator in self._generators(device):
                generator.manual_seed(fresh)
            for queued in state.call_order:
                if queued:
                    queued[0]()

    def _default_seed(self) -> int:
        if self._fresh_seed is None:
            torch = loaded_module("torch")
            assert torch is not None
            # Every torch generator starts from the same default seed.
            self._fresh_seed = int(torch.Generator().initial_seed())
        return self._fresh_seed
