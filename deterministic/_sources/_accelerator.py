"""Per-device generators of torch accelerators (CUDA, XPU, MTIA, MPS), without ever initialising one."""

from __future__ import annotations

from ._data import expect_fields, expect_hex
from ._protocol import loaded_module

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

__all__ = ["AcceleratorSource"]


class _Initialized:
    """The state of an initialised device module: one generator state per device."""

    __slots__ = ("states",)

    def __init__(self, states: tuple[Any, ...]) -> None:
        self.states = states


class _Pending:
    """The state of a device module not yet initialised: the seeds torch has queued for it."""

    __slots__ = ("call_order", "seed_all", "seed_one")

    def __init__(self, seed_all: Any, seed_one: Any, call_order: Any) -> None:
        self.seed_all = seed_all
        self.seed_one = seed_one
        self.call_order = call_order


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

    def device_count(self) -> int:
        """Return the number of devices (0 when the source is unavailable)."""
        device = self._device_module()
        return int(device.device_count()) if device is not None and self.available() else 0

    def initialized(self) -> bool:
        """Return whether the device module is initialised (so states can be read)."""
        device = self._device_module()
        return device is not None and self.available() and self._initialized(device)

    def initialize(self) -> None:
        """Initialise the device module, as its first use would (for restoring a snapshot)."""
        device = self._device_module()
        assert device is not None
        init = getattr(device, "init", None)
        if init is not None:
            init()

    def to_data(self, state: Any) -> dict[str, Any] | None:
        """Return a captured state as ``{"devices": [<hex>, ...]}``, or ``None`` if not initialised."""
        if not isinstance(state, _Initialized):
            return None
        return {"devices": [bytes(device.tolist()).hex() for device in state.states]}

    def check_data(self, data: object, field: str) -> dict[str, Any]:
        """Validate plain data from :meth:`to_data`, touching no device (see ``Source.check_data``)."""
        fields = expect_fields(data, field, ("devices",))
        devices = fields["devices"]
        if not isinstance(devices, list):
            raise ValueError(f"{field}.devices must be a list, not {type(devices).__name__}")
        return {"devices": [expect_hex(d, f"{field}.devices[{i}]") for i, d in enumerate(devices)]}

    def from_data(self, data: dict[str, Any], count: int | None = None) -> Any:
        """Return a state for :meth:`restore` for the first ``count`` devices of validated data.

        Raises:
            ValueError: If a device state's size differs from this device's generator state.
        """
        import torch  # noqa: PLC0415 - only reached when torch is loaded

        device = self._device_module()
        assert device is not None
        generators = self._generators(device)
        hex_states = data["devices"][: len(generators) if count is None else count]
        states = []
        for index, (generator, hex_state) in enumerate(zip(generators, hex_states, strict=False)):
            raw = bytes.fromhex(hex_state)
            current = generator.get_state()
            if len(raw) != current.numel():
                raise ValueError(
                    f"{self.name}.devices[{index}] has {len(raw)} bytes; "
                    f"the device's state has {current.numel()}"
                )
            states.append(torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone())
        return _Initialized(tuple(states) + tuple(g.get_state() for g in generators[len(states) :]))
