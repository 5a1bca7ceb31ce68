"""The protocol every RNG source follows: capture, seed, restore."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Protocol

__all__ = ["Source", "loaded_module", "mark_imported", "restore_all"]

# Modules whose import hook has fired: their code has run to the end, although the
# import system only clears ``__spec__._initializing`` after the hooks return.
_imported: set[str] = set()


def mark_imported(name: str) -> None:
    """Record that module ``name`` finished executing (called from its post-import hook).

    Args:
        name: The module's dotted name.
    """
    _imported.add(name)


def loaded_module(name: str) -> ModuleType | None:
    """Return the module ``name`` if it is imported and fully initialised, else ``None``.

    ``sys.modules[name] = None`` means "not available"; a module still executing its
    import has ``__spec__._initializing`` set and must not be touched yet.

    Args:
        name: The module's dotted name.

    Returns:
        The module, or ``None``.
    """
    module = sys.modules.get(name)
    if module is None:
        return None
    if getattr(getattr(module, "__spec__", None), "_initializing", False) and name not in _imported:
        return None
    return module


def restore_all(saved: dict[Any, Any]) -> BaseException | None:
    """Restore every saved source, last saved first, attempting each even if one fails.

    Args:
        saved: Sources (or flag settings) mapped to states from their ``capture``.

    Returns:
        The first failure (later ones attached as notes), or ``None``.
    """
    failure: BaseException | None = None
    for source, state in reversed(saved.items()):
        try:
            source.restore(state)
        except BaseException as error:  # noqa: BLE001 - every source must be attempted
            if failure is None:
                failure = error
            elif hasattr(failure, "add_note"):
                failure.add_note(f"restoring {source.name!r} also failed: {error!r}")
    return failure


if TYPE_CHECKING:

    class Source(Protocol):
        """A process-global RNG that a scope saves, seeds and restores.

        Attributes:
            name: The name users pass in ``sources=``.
            module: The module whose import makes the source available; a scope entered
                before that import seeds the source when the import completes.
        """

        name: str
        module: str

        def available(self) -> bool:
            """Return whether the source can be used now, without importing or initialising anything."""

        def capture(self) -> Any:
            """Return the full current state, including any cached values."""

        def seed(self, seed: int) -> None:
            """Seed the source exactly as the classic recipe does for ``seed``."""

        def restore(self, state: Any) -> None:
            """Install a state returned by :meth:`capture`."""

        def to_data(self, state: Any) -> dict[str, Any] | None:
            """Return a captured state as plain data for snapshots (``None``: not capturable)."""

        def check_data(self, data: object, field: str) -> dict[str, Any]:
            """Validate plain data from :meth:`to_data` without touching any RNG.

            Args:
                data: The plain data.
                field: Its path in the state dict, for error messages.

            Returns:
                A validated copy.

            Raises:
                ValueError: Naming the first invalid field.
            """

        def from_data(self, data: dict[str, Any]) -> Any:
            """Return a state for :meth:`restore` from data checked by :meth:`check_data`."""
