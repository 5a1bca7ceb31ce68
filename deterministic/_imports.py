"""Post-import hooks: seed a source whose module is first imported inside a scope."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

__all__ = ["watch"]

_watched: set[str] = set()


def watch(name: str, on_import: Callable[[str], None]) -> None:
    """Call ``on_import(name)`` once, when module ``name`` finishes importing.

    Registered at most once per module and process, and only while the module is not
    imported: wrapt fires hooks for modules already in ``sys.modules`` immediately,
    and a module still importing must not be seeded half-initialised.

    Args:
        name: The dotted module name.
        on_import: The callback.
    """
    if name in _watched or sys.is_finalizing() or sys.modules.get(name) is not None:
        return
    _watched.add(name)

    def hook(module: ModuleType) -> None:
        on_import(name)

    import wrapt  # noqa: PLC0415 - wrapt imports asyncio; only pay for it when needed

    wrapt.register_post_import_hook(hook, name)
