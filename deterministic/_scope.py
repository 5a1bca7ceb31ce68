"""Scopes: the immutable ``deterministic`` configuration and the per-entry ``Scope``.

``deterministic`` only holds settings. Every entry builds a fresh :class:`Scope`, which
holds what was saved, and pushes it on a process-wide stack; nothing about an entry is
ever stored on the configuration, so nesting, recursion and re-use are safe.
"""

from __future__ import annotations

import _thread
import os
import sys
import warnings

from . import _collection, _interrupts
from ._collection import pause_gc, resume_gc
from ._flags import AlgorithmsMode, FlagSettings
from ._imports import watch
from ._invariance import BatchInvariance
from ._lock import ScopeLock, ThreadToken, current_token, on_thread_end
from ._seeds import SeedLike, derive_seed, draw_fresh_seed, resolve_seed
from ._sources import SOURCES, mark_imported, restore_all, select_sources

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from types import TracebackType
    from typing import Any, TypeVar

    from ._sources import Source

    _F = TypeVar("_F", bound=Callable[..., Any])

    #: Sources and the flag settings share one protocol; a scope calls them "parts".
    Part = Any

__all__ = ["Busy", "Scope", "close_scope", "deterministic", "observe", "open_scope", "seed_process"]

_LOCK = ScopeLock()
# The active scopes, innermost last. Only the thread that owns _LOCK touches it; every
# scope on it holds one count of the lock, and so does a scope being entered.
_STACK: list[Scope] = []
# Callbacks told of every entry and exit (the tracer records them); empty almost always.
_OBSERVERS: list[Callable[[str, Scope], None]] = []
# The configuration and seed the process itself was seeded with (`run`), for parts
# whose module is imported later; None almost always.
_PROCESS: tuple[deterministic, int] | None = None


def observe(callback: Callable[[str, Scope], None]) -> Callable[[], None]:
    """Call ``callback("enter" | "exit", scope)`` at every scope entry and exit, in the thread doing it.

    The callback runs with the scope lock held and automatic GC paused, after an entry
    has seeded everything and before an exit restores anything; it must not enter
    scopes. An exception it raises becomes a ``RuntimeWarning``, never propagated; a
    ``BaseException`` (``KeyboardInterrupt``) propagates after the entry is undone, or
    after the exit has restored everything.

    Args:
        callback: The function to call.

    Returns:
        A function that stops the calls.
    """
    _OBSERVERS.append(callback)

    def stop() -> None:
        if callback in _OBSERVERS:
            _OBSERVERS.remove(callback)

    return stop


def _notify(event: str, scope: Scope) -> None:
    for callback in tuple(_OBSERVERS):
        try:
            callback(event, scope)
        except Exception as error:  # noqa: BLE001 - an observer must not break a scope
            warnings.warn(f"scope observer {callback!r} raised {error!r}", RuntimeWarning, stacklevel=1)


class Busy(Exception):  # noqa: N818 - a condition, not an error users see
    """Another thread holds the scope lock and the caller asked not to wait."""


class Scope:
    """One entry of a scope: the effective seed and everything saved at entry.

    Returned by ``with deterministic(...) as scope``. Besides ``seed`` and ``config``
    it offers explicit generators derived from the seed; underscored attributes are
    private.

    Attributes:
        seed: The effective integer seed of this entry, in ``[0, 2**32)``.
    """

    __slots__ = ("_config", "_owner", "_saved", "seed")

    def __init__(self, config: deterministic, seed: int, owner: object) -> None:
        """Create the record of one entry; :func:`open_scope` fills it.

        Args:
            config: The configuration entered.
            seed: The effective seed.
            owner: The thread and asyncio task that entered, for exit matching.
        """
        self._config = config
        self.seed = seed
        self._owner = owner
        self._saved: dict[Part, Any] = {}

    @property
    def config(self) -> deterministic:
        """The configuration this scope was entered from."""
        return self._config

    def torch_generator(self, device: Any = "cpu") -> Any:
        """Return a new ``torch.Generator`` seeded with ``derive_seed(seed, "torch", str(device))``.

        Explicit generators let code move off the process-global RNGs (and are the way
        to draw in thread-based DataLoader workers). Every call returns a new generator
        starting the same stream. ``"cuda"`` and ``"cuda:0"`` are different keys.

        Args:
            device: The generator's device; a CUDA device initialises CUDA.

        Returns:
            The generator.
        """
        import torch  # noqa: PLC0415 - torch stays optional

        device = torch.device(device)
        generator = torch.Generator(device=device)
        generator.manual_seed(derive_seed(self.seed, "torch", str(device)))
        return generator

    def numpy_generator(self) -> Any:
        """Return a new ``numpy.random.Generator`` seeded with ``derive_seed(seed, "numpy")``.

        Returns:
            The generator (NumPy's default bit generator).
        """
        import numpy  # noqa: PLC0415 - NumPy is not imported by `import deterministic`

        return numpy.random.default_rng(derive_seed(self.seed, "numpy"))

    def random(self) -> Any:
        """Return a new ``random.Random`` seeded with ``derive_seed(seed, "random")``.

        Returns:
            The generator.
        """
        import random  # noqa: PLC0415 - random is not imported by `import deterministic`

        return random.Random(derive_seed(self.seed, "random"))

    def __repr__(self) -> str:
        return f"<Scope seed={self.seed} of {self._config!r}>"


def _leave_compiled_code() -> None:
    """Under ``torch.compile``, end the graph here, so that entering or leaving runs eagerly.

    A scope swaps process-global generator states, which a graph cannot capture;
    Dynamo would otherwise try to trace the scope machinery and warn about the builtins
    it meets. An explicit graph break is silent, and the values are eager's.
    """
    # Nothing can be compiling before Dynamo is imported (torch imports it lazily), and
    # touching torch._dynamo here would import it. torch < 2.3 lacks torch.compiler.is_compiling.
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is None:
        return
    try:
        # Another thread may be importing Dynamo right now: the module is then in
        # sys.modules half-initialised, and nothing can be compiling yet.
        compiling = dynamo.is_compiling()
    except Exception:  # noqa: BLE001 - the check must never break a scope's entry or exit
        return
    if compiling:
        dynamo.graph_break()


def _current_owner() -> tuple[ThreadToken, object]:
    """Return (thread token, asyncio task or None): what must match between entry and exit."""
    asyncio = sys.modules.get("asyncio")
    task = None
    if asyncio is not None:
        loop = asyncio._get_running_loop()
        if loop is not None:
            task = asyncio.current_task(loop)
    return (current_token(), task)


def _parts(config: deterministic, exclude: frozenset[str] | None = None) -> tuple[Part, ...]:
    parts = config._parts
    if parts is None:
        # All sources: read the table at entry, so that later registrations count.
        parts = tuple(SOURCES.values())
        if config._flags.touches_anything:
            parts += (config._flags,)
        if config._invariance.value is not None:
            parts += (config._invariance,)
    if exclude:
        parts = tuple(part for part in parts if getattr(part, "name", None) not in exclude)
    return parts


def open_scope(
    config: deterministic,
    seed: int | None = None,
    resume: dict[Part, Any] | None = None,
    *,
    owner: object = None,
    exclude: frozenset[str] | None = None,
    blocking: bool = True,
) -> Scope:
    """Save every available part, then seed it (or resume saved states), and push the scope.

    Args:
        config: The configuration to enter.
        seed: The effective seed; ``None`` takes the configuration's (drawing a fresh
            one if that is ``None`` too).
        resume: States to install instead of seeding, for parts that have one; used
            when a generator resumes its own stream.
        owner: What :func:`close_scope` callers match the scope by.
        exclude: Names of sources to leave alone in this entry.
        blocking: Wait for another thread's scopes; if ``False``, raise :class:`Busy`.

    Returns:
        The new scope, now innermost.

    Raises:
        Busy: If ``blocking`` is false and another thread holds the scope lock.
    """
    _leave_compiled_code()
    return _open(config, seed, resume, owner=owner, exclude=exclude, blocking=blocking)


def _open(
    config: deterministic,
    seed: int | None = None,
    resume: dict[Part, Any] | None = None,
    *,
    owner: object = None,
    exclude: frozenset[str] | None = None,
    blocking: bool = True,
) -> Scope:
    """Open a scope as :func:`open_scope` does, without the graph-break check (the caller made it)."""
    if seed is None:
        seed = config._seed if config._seed is not None else draw_fresh_seed()
    token = current_token()
    armed = _take_lock(token, blocking)
    paused = pause_gc()
    try:
        scope = Scope(config, seed, owner)
        _start(scope, _parts(config, exclude), resume)
        if _OBSERVERS:
            _announce_entry(scope)
        _STACK.append(scope)
    except BaseException:
        _LOCK.release()
        _settle()
        raise
    finally:
        resume_gc(paused)
    if armed and _interrupts.pending():
        try:
            _interrupts.deliver()
        except BaseException:
            # Interrupted while entering: leave again before the interrupt propagates,
            # so that everything is as it was before the entry.
            _close_paused(scope)
            raise
    return scope


def _take_lock(token: ThreadToken, blocking: bool) -> bool:
    """Take a count of the lock, with Ctrl-C held off from here on in the main thread.

    Returns:
        Whether the interrupt guard is armed (the calling thread is the main thread).

    Raises:
        Busy: If ``blocking`` is false and another thread holds the lock.
    """
    armed = _interrupts.arm()
    if not blocking:
        if _LOCK.try_acquire(token):
            return armed
        _settle()
        raise Busy
    while not _LOCK.acquire(token, _interrupts.pending if armed else None):
        # Interrupted while waiting for another thread, before anything changed: let
        # the interrupt through (if the handler only takes note, keep waiting).
        _settle()
        armed = _interrupts.arm()
    return armed


def _settle() -> None:
    """End a scope operation: drop the interrupt guard once the main thread holds no scope, then deliver."""
    if _interrupts.installed:
        if _LOCK.owner is not current_token():
            _interrupts.disarm()
        _interrupts.deliver()


def _announce_entry(scope: Scope) -> None:
    """Tell the observers of an entry; if that is interrupted, restore what the entry saved."""
    try:
        _notify("enter", scope)
    except BaseException:
        failure = restore_all(scope._saved)
        if failure is not None:
            raise failure  # noqa: B904 - the interruption is its context
        raise


def _start(scope: Scope, parts: tuple[Part, ...], resume: dict[Part, Any] | None) -> None:
    """Capture every available part, then seed or resume each; roll back if one fails."""
    saved = scope._saved
    missing = None
    for part in parts:
        if part.available():
            saved[part] = part.capture()
        elif missing is None:
            missing = [part]
        else:
            missing.append(part)
    try:
        seed = scope.seed
        for part in saved:
            if resume is not None and part in resume:
                part.restore(resume[part])
            else:
                part.seed(seed)
        # Inside the rollback too: an entry that cannot watch a later import is undone.
        if missing is not None:
            for part in missing:
                if sys.modules.get(part.module) is None:
                    watch(part.module, _engage_imported)
    except BaseException:
        failure = restore_all(saved)
        if failure is not None:
            raise failure  # noqa: B904 - the original error is its context
        raise


def close_scope(scope: Scope, keep: bool = False) -> dict[Part, Any] | None:
    """Pop ``scope`` and restore everything it saved, attempting every part before raising.

    Args:
        scope: An active scope.
        keep: Capture the scope's own states before restoring, to resume them later.

    Returns:
        The scope's own states if ``keep``, else ``None``.

    Raises:
        RuntimeError: If the scope is not innermost (scopes exited out of order, as
            plain ``async with`` blocks in concurrent tasks do). Global state is still
            left as if both scopes had exited in order.
    """
    _leave_compiled_code()
    return _close_paused(scope, keep)


def _close_paused(scope: Scope, keep: bool = False) -> dict[Part, Any] | None:
    """Close a scope as :func:`close_scope` does, without the graph-break check (the caller made it)."""
    paused = pause_gc()
    try:
        return _close(scope, keep)
    finally:
        resume_gc(paused)
        _settle()


def _close(scope: Scope, keep: bool) -> dict[Part, Any] | None:
    if not _STACK or _STACK[-1] is not scope:
        _close_out_of_order(_find(scope))
        raise RuntimeError(
            "deterministic scopes exited out of order: a scope was left while a scope "
            "entered after it was still active. This happens when concurrent asyncio "
            "tasks use `async with deterministic(...)` across awaits; decorate the "
            "coroutine function with @seeded (or @deterministic(...)) instead, which "
            "keeps each task's stream separate"
        )
    kept = None
    failure: BaseException | None = None
    try:
        if _OBSERVERS:
            _notify("exit", scope)
        if keep:
            kept = {part: part.capture() for part in scope._saved}
    except BaseException as error:  # noqa: BLE001 - restore first, then raise
        failure = error
    _STACK.pop()
    restore_failure = restore_all(scope._saved)
    _LOCK.release()
    if failure is not None:
        raise failure
    if restore_failure is not None:
        raise restore_failure
    return kept


def _find(scope: Scope) -> int:
    for index in range(len(_STACK) - 1, -1, -1):
        if _STACK[index] is scope:
            return index
    raise RuntimeError(f"{scope!r} is not active")


def _close_out_of_order(index: int) -> None:
    """Remove a scope that is not innermost, handing its saved states to the scopes above."""
    scope = _STACK.pop(index)
    above = _STACK[index:]
    unclaimed: dict[Part, Any] = {}
    for part, state in scope._saved.items():
        for later in above:
            if part in later._saved:
                # The later scope saved this scope's stream; it must restore ours instead.
                later._saved[part] = state
                break
        else:
            unclaimed[part] = state
    failure = restore_all(unclaimed)
    _LOCK.release()
    if failure is not None:
        raise failure


def suspend_above(scope: Scope) -> list[Scope]:
    """Take the scopes entered after ``scope`` off the stack and return them.

    A generator that yields inside its own ``with deterministic(...)`` block leaves
    that block's scope open; it travels with the generator until the next resume.

    Args:
        scope: An active scope.

    Returns:
        The scopes above it, innermost last.
    """
    index = _find(scope)
    above = _STACK[index + 1 :]
    del _STACK[index + 1 :]
    for _ in above:
        _LOCK.release()  # the scope being stepped still holds a count
    return above


def resume_above(scopes: Sequence[Scope]) -> None:
    """Push scopes taken off by :func:`suspend_above` back, now owned by the current task.

    Args:
        scopes: The scopes to push, innermost last.
    """
    if scopes:
        owner = _current_owner()
        for scope in scopes:
            _LOCK.acquire(owner[0])  # already held by this thread: only counts
            scope._owner = owner
        _STACK.extend(scopes)


def seed_process(config: deterministic) -> int:
    """Seed every part as an entry of ``config`` would, as the process's starting state.

    Nothing is saved and no lock stays held: this is what the process starts from, not
    a block that ends (``run`` and the children it seeds use it), so scopes entered
    later, from any thread, work exactly as they do without it. Parts whose module is
    imported later are seeded when the import finishes, before any active scope takes
    them over.

    Args:
        config: The configuration whose seed and flags to apply.

    Returns:
        The effective seed.
    """
    global _PROCESS
    seed = config._seed if config._seed is not None else draw_fresh_seed()
    _take_lock(current_token(), True)  # a moment only: no other thread's scope may be half-way through
    paused = pause_gc()
    try:
        _PROCESS = (config, seed)
        for part in _parts(config):
            if part.available():
                part.seed(seed)
            elif sys.modules.get(part.module) is None:
                watch(part.module, _engage_imported)
    finally:
        resume_gc(paused)
        _LOCK.release()
        _settle()
    return seed


def _engage_imported(module: str) -> None:
    """Seed the parts that ``module``'s import made available: the process's, then every active scope's.

    Only the thread owning the active scopes engages them: a scope's saved states must
    not change under it from another thread (and waiting for the lock inside an import
    could deadlock on the import lock).
    """
    mark_imported(module)
    process = _PROCESS
    if process is not None:
        # First, so that a scope active now saves the process's starting state, not torch's default.
        for part in _parts(process[0]):
            if part.module == module and part.available():
                part.seed(process[1])
    if _LOCK.owner is not current_token():
        return
    for scope in _STACK:
        for part in _parts(scope._config):
            if part.module == module and part not in scope._saved and part.available():
                scope._saved[part] = part.capture()
                part.seed(scope.seed)


def _close_all(scopes: list[Scope]) -> BaseException | None:
    """Restore what each scope saved, innermost first, skipping parts unusable here."""
    failure = None
    for scope in reversed(scopes):
        usable = {part: state for part, state in scope._saved.items() if part.available()}
        restore_failure = restore_all(usable)  # every scope is attempted, whatever failed before
        failure = failure or restore_failure
    return failure


def _thread_ended(token: ThreadToken) -> None:
    """Close the scopes of a thread that ended inside them, so their saved states are not lost."""
    if sys.is_finalizing() or _LOCK.owner is not token:
        return
    scopes = list(_STACK)
    _STACK.clear()
    failure = _close_all(scopes)
    _LOCK.release_all()
    warnings.warn(
        f"thread {token.name!r} ended with {len(scopes)} deterministic scope(s) still open; "
        f"they were closed and the RNG states and flags they saved were restored"
        + ("" if failure is None else f" except where restoring failed: {failure!r}"),
        RuntimeWarning,
        stacklevel=1,
    )


on_thread_end(_thread_ended)


def _reset_after_fork() -> None:
    # Only the forking thread exists in the child. Scopes of another thread can never
    # exit here, so the child continues from the states they saved, as if they had exited.
    token = current_token()
    if _LOCK.owner is not None and _LOCK.owner is not token:
        scopes = list(_STACK)
        _STACK.clear()
        _close_all(scopes)
        _LOCK.reset()
    if _collection.paused_by not in (None, _thread.get_ident()):
        resume_gc(True)  # switched off by a thread of the parent that will never switch it on


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class deterministic:  # noqa: N801 - reads like a function, as time-machine's `travel`
    """A scope that seeds every RNG and sets determinism flags, then restores them exactly.

    The object is an immutable, reusable configuration: the constructor validates its
    arguments and touches no global state. Use it as ``with``, ``async with`` or as a
    decorator; each entry saves the Python, NumPy, torch CPU and accelerator RNG states
    and the flags, seeds and sets them, and restores them all on exit.

    Args:
        seed: An int in ``[0, 2**32)`` (used verbatim, as the classic recipe does), any
            other int, a str or bytes (mapped through :func:`derive_seed`), or ``None``
            to draw a fresh seed from OS entropy at each entry (logged on the
            ``deterministic`` logger).
        cudnn_deterministic: ``torch.backends.cudnn.deterministic`` in the scope.
        cudnn_benchmark: ``torch.backends.cudnn.benchmark`` in the scope.
        cudnn_enabled: ``torch.backends.cudnn.enabled`` in the scope.
        deterministic_algorithms: ``True``, ``False``, ``"warn"`` (warn-only mode) or
            ``None``, as ``torch.use_deterministic_algorithms``.
        fill_uninitialized_memory: ``torch.utils.deterministic.fill_uninitialized_memory``.
        batch_invariant: ``True`` computes matrix products and convolutions so that each
            row's result does not depend on the batch size or the other rows (see
            "Evaluation that does not depend on the batch size" in the docs); ``False``
            switches an enclosing scope's ``True`` off; ``None`` leaves torch as it is.
        sources: Names of the sources to touch (``"random"``, ``"numpy"``,
            ``"torch"``, ``"cuda"``, ``"xpu"``, ``"mtia"``, ``"mps"``); ``None`` for all.

    A flag keyword of ``None`` leaves that flag as it is during the scope; when any
    flag keyword is set, every flag is restored on exit.

    Raises:
        TypeError: If the seed or a keyword has a type that is not accepted.
        ValueError: If ``sources`` names an unknown source or
            ``deterministic_algorithms`` is an unknown string.
    """

    __slots__ = ("_flags", "_invariance", "_parts", "_seed", "_sources")
    _seed: int | None
    _flags: FlagSettings
    _invariance: BatchInvariance
    _sources: tuple[Source, ...] | None
    _parts: tuple[Part, ...] | None

    def __init__(
        self,
        seed: SeedLike,
        *,
        cudnn_deterministic: bool | None = True,
        cudnn_benchmark: bool | None = False,
        cudnn_enabled: bool | None = None,
        deterministic_algorithms: AlgorithmsMode = None,
        fill_uninitialized_memory: bool | None = None,
        batch_invariant: bool | None = None,
        sources: Iterable[str] | None = None,
    ) -> None:
        object.__setattr__(self, "_seed", resolve_seed(seed))
        object.__setattr__(
            self,
            "_flags",
            FlagSettings(
                cudnn_deterministic,
                cudnn_benchmark,
                cudnn_enabled,
                deterministic_algorithms,
                fill_uninitialized_memory,
            ),
        )
        object.__setattr__(self, "_invariance", BatchInvariance(batch_invariant))
        object.__setattr__(self, "_sources", select_sources(sources))
        parts: tuple[Part, ...] | None = None
        if self._sources is not None:
            parts = self._sources + ((self._flags,) if self._flags.touches_anything else ())
            if batch_invariant is not None:
                parts += (self._invariance,)
        object.__setattr__(self, "_parts", parts)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} objects are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} objects are immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through the constructor, so that configurations travel to spawned workers.
        flags = self._flags
        return (
            _rebuild,
            (
                self._seed,
                flags.cudnn_deterministic,
                flags.cudnn_benchmark,
                flags.cudnn_enabled,
                flags.deterministic_algorithms,
                flags.fill_uninitialized_memory,
                self.sources,
                self._invariance.value,
            ),
        )

    @property
    def seed(self) -> int | None:
        """The effective seed, or ``None`` when each entry draws a fresh one."""
        return self._seed

    @property
    def sources(self) -> tuple[str, ...] | None:
        """The names of the selected sources, or ``None`` for all."""
        return None if self._sources is None else tuple(s.name for s in self._sources)

    @property
    def cudnn_deterministic(self) -> bool | None:
        """The ``cudnn.deterministic`` value set in the scope (``None``: untouched)."""
        return self._flags.cudnn_deterministic

    @property
    def cudnn_benchmark(self) -> bool | None:
        """The ``cudnn.benchmark`` value set in the scope (``None``: untouched)."""
        return self._flags.cudnn_benchmark

    @property
    def cudnn_enabled(self) -> bool | None:
        """The ``cudnn.enabled`` value set in the scope (``None``: untouched)."""
        return self._flags.cudnn_enabled

    @property
    def deterministic_algorithms(self) -> AlgorithmsMode:
        """The deterministic-algorithms mode in the scope (``None``: untouched)."""
        return self._flags.deterministic_algorithms

    @property
    def fill_uninitialized_memory(self) -> bool | None:
        """The ``fill_uninitialized_memory`` value in the scope (``None``: untouched)."""
        return self._flags.fill_uninitialized_memory

    @property
    def batch_invariant(self) -> bool | None:
        """The ``batch_invariant`` value in the scope (``None``: torch as it is)."""
        return self._invariance.value

    def _key(self) -> tuple[object, ...]:
        return (self._seed, self._flags, self._invariance, self.sources)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, deterministic):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        flags = self._flags
        return (
            f"deterministic({self._seed!r}, cudnn_deterministic={flags.cudnn_deterministic!r}, "
            f"cudnn_benchmark={flags.cudnn_benchmark!r}, cudnn_enabled={flags.cudnn_enabled!r}, "
            f"deterministic_algorithms={flags.deterministic_algorithms!r}, "
            f"fill_uninitialized_memory={flags.fill_uninitialized_memory!r}, "
            f"batch_invariant={self._invariance.value!r}, sources={self.sources!r})"
        )

    def __enter__(self) -> Scope:
        """Enter a new scope.

        Inside a function compiled with ``torch.compile``, entering (and leaving) is a
        graph break: the scope runs eagerly, silently, with eager's values.

        Returns:
            The per-entry :class:`Scope`; its ``seed`` is the effective seed.
        """
        _leave_compiled_code()  # before _current_owner, which Dynamo cannot trace
        return _open(self, owner=_current_owner())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Leave this configuration's innermost scope entered by the current thread or task.

        Raises:
            RuntimeError: If no such scope is active, or it is not the innermost one.
        """
        _leave_compiled_code()  # before _innermost_entry, which Dynamo cannot trace
        _close_paused(self._innermost_entry())

    async def __aenter__(self) -> Scope:
        """Enter a new scope; other tasks see the scoped state while this one awaits.

        Returns:
            The per-entry :class:`Scope`.
        """
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Leave the scope entered by the current task (see :meth:`__exit__`)."""
        self.__exit__(exc_type, exc, traceback)

    def _innermost_entry(self) -> Scope:
        owner = _current_owner()
        if _LOCK.owner is owner[0]:
            for scope in reversed(_STACK):
                if scope._config is self and scope._owner == owner:
                    return scope
        raise RuntimeError(f"{self!r} has no active scope in this thread or task")

    def __call__(self, wrapped: _F) -> _F:
        """Decorate a function so that each call runs in a fresh scope (see :func:`seeded`).

        Args:
            wrapped: A function, generator function, coroutine function, async
                generator function, method, classmethod or staticmethod.

        Returns:
            The decorated callable.

        Raises:
            TypeError: If ``wrapped`` is a class or not callable.
        """
        from ._wrappers import decorate  # noqa: PLC0415 - the wrappers build on this module

        return decorate(self, wrapped)


def _rebuild(  # noqa: PLR0917 - mirrors the constructor's keywords, in order
    seed: int | None,
    cudnn_deterministic: bool | None,
    cudnn_benchmark: bool | None,
    cudnn_enabled: bool | None,
    deterministic_algorithms: AlgorithmsMode,
    fill_uninitialized_memory: bool | None,
    sources: tuple[str, ...] | None,
    batch_invariant: bool | None = None,
) -> deterministic:
    """Unpickle a configuration (see ``deterministic.__reduce__``)."""
    return deterministic(
        seed,
        cudnn_deterministic=cudnn_deterministic,
        cudnn_benchmark=cudnn_benchmark,
        cudnn_enabled=cudnn_enabled,
        deterministic_algorithms=deterministic_algorithms,
        fill_uninitialized_memory=fill_uninitialized_memory,
        batch_invariant=batch_invariant,
        sources=sources,
    )


# Every function that changes the lock, the stack, GC or the sources' states on the way
# in or out of a scope (and the entry points that lead to them) holds a Ctrl-C off until
# it is done; a frame of any of them on the main thread's stack is enough.
_interrupts.protect(
    open_scope,
    close_scope,
    _open,
    _settle,
    _take_lock,
    _announce_entry,
    _start,
    _close_paused,
    _close,
    _close_out_of_order,
    suspend_above,
    resume_above,
    _engage_imported,
    _close_all,
    seed_process,
    deterministic.__enter__,
    deterministic.__exit__,
    deterministic.__aenter__,
    deterministic.__aexit__,
)
