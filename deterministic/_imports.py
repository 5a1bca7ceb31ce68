"""Post-import hooks: seed a source whose module is first imported inside a scope.

A finder first on ``sys.meta_path`` wraps the loader of each watched module, so that its
callback runs as soon as the module's code has run, as wrapt's post-import hooks do. It
does not import wrapt, which imports asyncio: every Python child of a program under
``run`` watches modules at startup, and must start fast.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

__all__ = ["watch"]

_watched: set[str] = set()
# The callback of each watched module that has not finished importing yet.
_pending: dict[str, Callable[[str], None]] = {}


class _Loader:
    """The loader of a watched module: the real one's, then the callback."""

    def __init__(self, loader: Any, name: str) -> None:
        self.loader = loader
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.loader, attribute)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        """Create the module as the real loader does."""
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        """Run the module's code with the real loader, then the callback."""
        # The module, and its code, see the real loader, as without a hook.
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self.loader
        self.loader.exec_module(module)
        callback = _pending.pop(self.name, None)
        if callback is not None:
            callback(self.name)


class _Finder:
    """Finds a watched module with the finders after it, and wraps the loader found."""

    def __init__(self) -> None:
        # Modules being looked up through another finder that asks the import system
        # again (wrapt's does): the second time through, this finder stands aside.
        self.busy: set[str] = set()

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """Return the spec the other finders give for a watched module, its loader wrapped.

        Args:
            name: The module's full name.
            path: The parent package's ``__path__``, for a submodule.
            target: The module being reloaded, if any.

        Returns:
            The spec, or ``None`` for any other module (the import system asks the next finder).
        """
        if name not in _pending or name in self.busy:
            return None
        self.busy.add(name)  # the import lock of `name` is held: no other thread is here for it
        spec: ModuleSpec | None = None
        try:
            for finder in list(sys.meta_path):
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    break
        finally:
            self.busy.discard(name)
        if spec is None:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            # A loader by its methods: importlib.abc.Loader would import importlib.resources.
            spec.loader = _Loader(spec.loader, name)  # type: ignore[assignment]
        return spec


_FINDER = _Finder()


def watch(name: str, on_import: Callable[[str], None]) -> None:
    """Call ``on_import(name)`` once, when module ``name`` finishes importing.

    Registered at most once per module and process, and only while the module is not
    imported: a module still importing must not be seeded half-initialised.

    Args:
        name: The dotted module name.
        on_import: The callback.
    """
    if name in _watched or sys.is_finalizing() or sys.modules.get(name) is not None:
        return
    _watched.add(name)
    _pending[name] = on_import
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
