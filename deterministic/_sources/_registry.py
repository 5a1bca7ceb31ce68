"""The table of known sources and the validation of ``sources=`` arguments."""

from __future__ import annotations

from ._accelerator import AcceleratorSource
from ._custom import CustomSource
from ._numpy import NumpySource
from ._python import PythonRandomSource
from ._torch import TorchSource

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from ._protocol import Source

__all__ = ["SOURCES", "register_source", "select_sources", "unregister_source"]

#: Every known source by name, in the order scopes capture them.
SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        PythonRandomSource(),
        NumpySource(),
        TorchSource(),
        AcceleratorSource("cuda"),
        AcceleratorSource("xpu"),
        AcceleratorSource("mtia"),
        AcceleratorSource("mps"),
    )
}


def select_sources(names: Iterable[str] | None) -> tuple[Source, ...] | None:
    """Validate a ``sources=`` argument and return the sources it names, in table order.

    Args:
        names: Source names, or ``None`` for every known source.

    Returns:
        The selected sources, or ``None`` for "all sources known at entry".

    Raises:
        TypeError: If ``names`` is a single string or not an iterable of strings.
        ValueError: If a name is unknown; the message lists the valid names.
    """
    if names is None:
        return None
    if isinstance(names, (str, bytes)):
        raise TypeError(
            f"sources must be a collection of source names such as ('random', 'numpy'), "
            f"not a single {type(names).__name__}"
        )
    try:
        wanted = list(names)
    except TypeError:
        raise TypeError(f"sources must be a collection of source names, not {type(names).__name__}") from None
    for name in wanted:
        if not isinstance(name, str):
            raise TypeError(f"source names must be str, not {type(name).__name__}")
        if name not in SOURCES:
            valid = ", ".join(repr(known) for known in SOURCES)
            raise ValueError(f"unknown source {name!r}; valid sources are {valid}")
    return tuple(source for name, source in SOURCES.items() if name in wanted)


def register_source(
    name: str,
    capture: Callable[[], Any],
    seed: Callable[[int], None],
    restore: Callable[[Any], None],
) -> None:
    """Add a process-global RNG so that scopes, snapshots and ``seed_worker`` cover it.

    Register at import time of the module that owns the RNG, so that DataLoader workers
    started with ``spawn`` (which re-import modules) know it too. The name becomes valid
    in ``sources=``, and scopes with the default ``sources=None`` include it.

    Args:
        name: The source's name, e.g. ``"cupy"``.
        capture: Returns the full current state. When it returns plain data (dicts,
            lists, ints, floats, strs, bools, ``None``) the source is part of snapshots.
        seed: Seeds the RNG with an int in ``[0, 2**32)``.
        restore: Installs a state returned by ``capture``.

    Raises:
        TypeError: If the name is not a str or a function is not callable.
        ValueError: If the name is empty or already registered.
    """
    if not isinstance(name, str):
        raise TypeError(f"the source name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("the source name must not be empty")
    for label, function in (("capture", capture), ("seed", seed), ("restore", restore)):
        if not callable(function):
            raise TypeError(f"{label} must be callable, not {type(function).__name__}")
    if name in SOURCES:
        raise ValueError(f"a source named {name!r} is already registered")
    SOURCES[name] = CustomSource(name, capture, seed, restore)


def unregister_source(name: str) -> None:
    """Remove a source added with :func:`register_source`.

    Args:
        name: The name it was registered under.

    Raises:
        ValueError: If no registered source has that name (built-in sources cannot be removed).
    """
    if not isinstance(SOURCES.get(name), CustomSource):
        raise ValueError(f"no source named {name!r} was registered with register_source()")
    del SOURCES[name]
