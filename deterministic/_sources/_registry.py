"""The table of known sources and the validation of ``sources=`` arguments."""

from __future__ import annotations

from ._accelerator import AcceleratorSource
from ._numpy import NumpySource
from ._python import PythonRandomSource
from ._torch import TorchSource

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._protocol import Source

__all__ = ["SOURCES", "select_sources"]

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
