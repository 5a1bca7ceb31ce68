"""Snapshots: every RNG state as checkpointable plain data, and an atomic restore."""

from __future__ import annotations

import contextlib
import warnings

from ._collection import pause_gc, resume_gc
from ._sources import SOURCES, AcceleratorSource, loaded_module, restore_all, select_sources
from ._sources._custom import is_plain_data
from ._sources._data import expect_fields, expect_int

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from ._sources import Source

__all__ = ["FORMAT", "FORMAT_VERSION", "RNGState", "install_from_rank", "restore", "snapshot"]

#: The ``format`` entry of every state dict.
FORMAT = "deterministic.RNGState"
#: The newest state-dict version this release reads and the one it writes.
FORMAT_VERSION = 1

_KEYS = ("format", "version", "rank", "world_size", "devices", "sources")


class RNGState:
    """An immutable snapshot of RNG states, with where it was taken.

    Build one with :func:`snapshot` or :meth:`from_state_dict`; install it with
    :func:`restore`. Snapshots compare with ``==``, hash, pickle, and convert to a state
    dict of built-in types only (:meth:`state_dict`), which is JSON-serialisable and loads
    with ``torch.load(weights_only=True)``.
    """

    __slots__ = ("_data", "_key", "_opaque")
    _data: dict[str, Any]
    _key: str
    _opaque: frozenset[str]

    def __init__(self, data: dict[str, Any]) -> None:
        """Copy an already validated state dict; use :func:`snapshot` or :meth:`from_state_dict`."""
        import json  # noqa: PLC0415 - json is imported on first use to keep `import deterministic` fast

        # A deep copy: nothing the caller still holds can change what restore() installs.
        object.__setattr__(self, "_data", json.loads(json.dumps(data)))
        object.__setattr__(self, "_key", json.dumps(data, sort_keys=True))
        # Sources this process did not know when the snapshot was built: kept as opaque
        # plain data, validated by their source (if registered by then) at restore().
        object.__setattr__(
            self, "_opaque", frozenset(name for name in data["sources"] if name not in SOURCES)
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("RNGState objects are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("RNGState objects are immutable")

    @property
    def sources(self) -> tuple[str, ...]:
        """The names of the sources in the snapshot."""
        return tuple(self._data["sources"])

    @property
    def rank(self) -> int | None:
        """The ``torch.distributed`` rank it was taken on, or ``None`` outside a process group."""
        rank: int | None = self._data["rank"]
        return rank

    @property
    def world_size(self) -> int | None:
        """The world size it was taken in, or ``None`` outside a process group."""
        world_size: int | None = self._data["world_size"]
        return world_size

    @property
    def devices(self) -> dict[str, int]:
        """The number of devices per accelerator whose states are in the snapshot."""
        return dict(self._data["devices"])

    def state_dict(self) -> dict[str, Any]:
        """Return the snapshot as a new dict of built-in types only.

        Returns:
            ``{"format", "version", "rank", "world_size", "devices", "sources"}``; the
            value is independent of the snapshot (changing it changes nothing).
        """
        import json  # noqa: PLC0415 - see __init__

        copy: dict[str, Any] = json.loads(self._key)
        return copy

    @classmethod
    def from_state_dict(cls, state_dict: object) -> RNGState:
        """Validate a dict from :meth:`state_dict` and return the snapshot it describes.

        Nothing in the dict is executed or imported, and no RNG is touched. A source that
        is not registered in this process is kept as opaque plain data, so a snapshot
        round-trips through a process that lacks it; :func:`restore` deals with it. Torch
        states are checked on a scratch generator when torch is installed (torch is
        imported for that), so a state torch would refuse is refused here.

        Args:
            state_dict: The dict, for example from ``json.load`` or ``torch.load``.

        Returns:
            The snapshot.

        Raises:
            ValueError: Naming the first invalid field: wrong type, wrong length, value
                out of range, a state torch refuses, data of an unregistered source that is
                not plain data, or a format version this release does not read.
        """
        data = expect_fields(state_dict, "state_dict", _KEYS)
        if data["format"] != FORMAT:
            raise ValueError(f"state_dict.format must be {FORMAT!r}, not {data['format']!r}")
        version = expect_int(data["version"], "state_dict.version", 1, 2**31)
        if version > FORMAT_VERSION:
            raise ValueError(
                f"state_dict.version {version} is newer than this release reads ({FORMAT_VERSION}); "
                f"upgrade deterministic"
            )
        rank = data["rank"]
        world_size = data["world_size"]
        if (rank is None) != (world_size is None):
            raise ValueError("state_dict.rank and state_dict.world_size must both be set or both be None")
        if world_size is not None:
            expect_int(world_size, "state_dict.world_size", 1, 2**31)
            expect_int(rank, "state_dict.rank", 0, world_size - 1)
        checked, checked_devices = _check_sources(data["sources"], data["devices"])
        return cls(
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "rank": rank,
                "world_size": world_size,
                "devices": checked_devices,
                "sources": checked,
            }
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RNGState):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __reduce__(self) -> tuple[Any, ...]:
        return (RNGState.from_state_dict, (self.state_dict(),))

    def __repr__(self) -> str:
        where = "" if self.rank is None else f", rank={self.rank}/{self.world_size}"
        return f"<RNGState sources={self.sources}{where}>"


def _check_sources(sources: object, devices: object) -> tuple[dict[str, Any], dict[str, int]]:
    """Validate the ``sources`` and ``devices`` entries of a state dict."""
    if not isinstance(devices, dict):
        raise ValueError(f"state_dict.devices must be a dict, not {type(devices).__name__}")
    if not isinstance(sources, dict):
        raise ValueError(f"state_dict.sources must be a dict, not {type(sources).__name__}")
    checked: dict[str, Any] = {}
    for name, source_data in sources.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"state_dict.sources has a key {name!r} that is not a source name")
        source = SOURCES.get(name)
        if source is None or not hasattr(source, "check_data"):
            if not is_plain_data(source_data):
                raise ValueError(
                    f"state_dict.sources.{name} (a source not registered in this process) must be plain "
                    f"data: dicts with str keys, lists, ints, floats, strs, bools and None"
                )
            checked[name] = source_data
            continue
        checked[name] = source.check_data(source_data, f"state_dict.sources.{name}")
    checked_devices: dict[str, int] = {}
    for name, count in devices.items():
        if name not in checked or not isinstance(SOURCES.get(name), AcceleratorSource):
            raise ValueError(f"state_dict.devices names {name!r}, which has no device states")
        checked_devices[name] = expect_int(count, f"state_dict.devices.{name}", 0, 2**16)
        if len(checked[name]["devices"]) != count:
            raise ValueError(f"state_dict.sources.{name}.devices must have {count} entries")
    for name in checked:
        if isinstance(SOURCES.get(name), AcceleratorSource) and name not in checked_devices:
            raise ValueError(f"state_dict.devices lacks {name!r}")
    return checked, checked_devices


def _topology() -> tuple[int | None, int | None]:
    """Return (rank, world size) of the default process group, or (None, None)."""
    torch: Any = loaded_module("torch")
    if torch is None:
        return None, None
    distributed = torch.distributed
    if not (distributed.is_available() and distributed.is_initialized()):
        return None, None
    return int(distributed.get_rank()), int(distributed.get_world_size())


def snapshot(sources: Iterable[str] | None = None) -> RNGState:
    """Capture the current state of every available source.

    Sources whose module is not imported are left out, and so are accelerators that are
    not initialised: like a scope, a snapshot never initialises a device. Inside a scope
    the snapshot holds the scoped state.

    Args:
        sources: Names of the sources to capture, as for :class:`deterministic`; ``None``
            for all.

    Returns:
        The snapshot, with the rank and world size when ``torch.distributed`` is
        initialised and the device count of each captured accelerator.

    Raises:
        TypeError: If ``sources`` is not a collection of names.
        ValueError: If a source name is unknown.
    """
    selected = select_sources(sources)
    captured: dict[str, Any] = {}
    devices: dict[str, int] = {}
    for source in selected if selected is not None else tuple(SOURCES.values()):
        if not source.available() or not hasattr(source, "to_data"):
            continue
        paused = pause_gc()  # see pause_gc: no finaliser inside get_state
        try:
            state = source.capture()
        finally:
            resume_gc(paused)
        data = source.to_data(state)
        if data is None:  # an accelerator that is not initialised
            continue
        captured[source.name] = data
        if isinstance(source, AcceleratorSource):
            devices[source.name] = len(data["devices"])
    rank, world_size = _topology()
    return RNGState(
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "rank": rank,
            "world_size": world_size,
            "devices": devices,
            "sources": captured,
        }
    )


def _plan(state: RNGState, strict: bool, topology: bool = True) -> tuple[list[tuple[Source, Any]], list[str]]:
    """Decide what to install and what to skip; validate sizes before anything changes.

    With ``topology`` false (states sent from another rank), rank, world size and device
    counts are not compared: the devices both sides have are installed.
    """
    problems: list[str] = []
    rank, world_size = _topology()
    if topology and (rank, world_size) != (state.rank, state.world_size):
        problems.append(
            f"the snapshot was taken on rank {state.rank} of {state.world_size}, "
            f"this process is rank {rank} of {world_size}"
        )
        if strict:
            raise ValueError(f"cannot restore: {problems[-1]} (pass strict=False to restore anyway)")
    plan: list[tuple[Source, Any]] = []
    for name, saved_data in state._data["sources"].items():
        source: Any = SOURCES.get(name)
        data = saved_data
        if source is None:
            problems.append(f"source {name!r} is not registered in this process")
            continue
        if name in state._opaque:  # registered since the snapshot was built: validate now
            data = source.check_data(saved_data, f"state_dict.sources.{name}")
        if not source.available():
            problems.append(f"source {name!r} is not available in this process")
            continue
        if isinstance(source, AcceleratorSource):
            count = source.device_count()
            saved = state._data["devices"][name]
            if topology and count != saved:
                problems.append(f"{name}: the snapshot has {saved} devices, this process has {count}")
                if strict:
                    continue
            if not source.initialized():
                source.initialize()
            plan.append((source, source.from_data(data, min(count, saved))))
        else:
            plan.append((source, source.from_data(data)))
    return plan, problems


def _import_needed(state: RNGState) -> None:
    """Import the modules the snapshot's sources live in, where installed (``numpy.random``, torch)."""
    import importlib  # noqa: PLC0415 - only restoring needs it

    for name in state._data["sources"]:
        source = SOURCES.get(name)
        module = getattr(source, "module", "")
        if module and loaded_module(module) is None:
            # Not installed here: the source stays unavailable, which _plan reports.
            with contextlib.suppress(ImportError):
                importlib.import_module(module)


def restore(state: RNGState, *, strict: bool = True) -> None:
    """Install a snapshot, atomically.

    Everything is validated before anything changes; if installing fails part-way, what
    was installed is rolled back. The modules the snapshot's sources need are imported
    first when installed (``numpy.random``, torch), so a fresh process can restore a
    snapshot before it has drawn anything. Accelerator states initialise their device if
    it is not initialised yet (as restoring any device state must).

    Args:
        state: The snapshot.
        strict: When ``True`` (the default), a source in the snapshot that is not
            registered or not available here, a different device count, or a different
            rank or world size is an error. When ``False``, what matches is restored (on a device-count
            mismatch, the devices both have) and a warning lists what was skipped.

    Raises:
        TypeError: If ``state`` is not an :class:`RNGState`.
        ValueError: Under ``strict``, for any mismatch; always, for a state whose sizes
            do not fit this process's generators. Nothing is changed.
    """
    if not isinstance(state, RNGState):
        raise TypeError(
            f"restore() takes an RNGState (from snapshot() or RNGState.from_state_dict()), "
            f"not {type(state).__name__}"
        )
    _import_needed(state)
    plan, problems = _plan(state, strict)
    if problems and strict:
        raise ValueError(
            "cannot restore: " + "; ".join(problems) + " (pass strict=False to restore what matches)"
        )
    _install(plan)
    if problems:
        warnings.warn("restore skipped: " + "; ".join(problems), RuntimeWarning, stacklevel=2)


def install_from_rank(state: RNGState) -> None:
    """Install a snapshot sent from another rank: no rank or device-count comparison.

    Args:
        state: The snapshot.

    Raises:
        ValueError: If a source in it is not registered or not available here, or a
            state does not fit this process's generators. Nothing is changed then.
    """
    _import_needed(state)
    plan, problems = _plan(state, strict=True, topology=False)
    if problems:
        raise ValueError("cannot install the other rank's RNG states: " + "; ".join(problems))
    _install(plan)


def _install(plan: list[tuple[Source, Any]]) -> None:
    """Install planned states atomically: roll back what was installed if one fails."""
    paused = pause_gc()  # see pause_gc: no finaliser inside get_state
    try:
        previous = {source: source.capture() for source, _ in plan}
        installed: dict[Any, Any] = {}
        try:
            for source, new_state in plan:
                installed[source] = previous[source]
                source.restore(new_state)
        except BaseException as error:
            failure = restore_all(installed)
            if failure is not None and hasattr(error, "add_note"):
                error.add_note(f"rolling back also failed: {failure!r}")
            raise
    finally:
        resume_gc(paused)
