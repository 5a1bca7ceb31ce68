"""Decorators: one wrapper per kind of callable, and ``@seeded``.

A plain function runs inside one scope per call. Generators, coroutines and async
generators run one scope per *step*: on every resume the caller's state is saved and the
callable's own stream swapped in, on every suspension the callable's stream is saved and
the caller's swapped back. Re-entering the scope at each resume instead (as
``torch.no_grad`` does for its flag) would re-seed the stream at every step.
"""

from __future__ import annotations

import sys

from ._collection import collecting, torch_lock_may_be_held, watch_collections
from ._scope import Busy, close_scope, deterministic, open_scope, resume_above, suspend_above
from ._seeds import derive_seed
from ._sources import SOURCES

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
    from types import FrameType
    from typing import Any, TypeVar, overload

    from ._scope import Part, Scope

    _F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["decorate", "seeded"]

_UNSET: Any = object()


class _Stream:
    """The private RNG stream of one generator or coroutine call, carried between steps."""

    __slots__ = ("_config", "_open_inside", "_seed", "_states")

    def __init__(self, config: deterministic) -> None:
        self._config = config
        self._seed = config.seed
        self._states: dict[Part, Any] | None = None  # None until the first step seeds
        self._open_inside: list[Scope] = []

    def step(
        self,
        advance: Callable[[Any], Any],
        value: Any,
        exclude: frozenset[str] | None = None,
        blocking: bool = True,
    ) -> Any:
        """Run one step of the wrapped iterator with its own stream swapped in.

        Args:
            advance: The iterator's ``send`` or ``throw``.
            value: What to send or throw.
            exclude: Sources to leave alone in this step.
            blocking: Wait for another thread's scopes (else :class:`Busy` is raised).

        Returns:
            What the step yielded.
        """
        scope = open_scope(self._config, self._seed, self._states, exclude=exclude, blocking=blocking)
        # Nothing but the assignment between the entry and `try`: whatever raises after
        # the entry (a Ctrl-C included) must find the scope closed by `finally`.
        try:
            if self._seed is None:
                self._seed = scope.seed  # a fresh seed is drawn once per call, not per step
            resume_above(self._open_inside)
            return advance(value)
        finally:
            self._open_inside = suspend_above(scope)
            self._states = close_scope(scope, keep=True)

    def close(self, iterator: Any) -> None:
        """Close the wrapped iterator, running its cleanup in its own stream.

        When the garbage collector closes an abandoned generator, this runs at an
        arbitrary allocation of the thread that collects; see ``_collection`` for what
        is done differently there.

        Args:
            iterator: The wrapped generator or awaitable iterator.
        """
        if self._states is None or sys.is_finalizing():
            # Never started (no code ran), or the interpreter is shutting down and
            # must not be asked to import or restore anything.
            iterator.close()
            return

        def finish(_: Any) -> None:
            iterator.close()

        if not collecting():
            self.step(finish, None)
            return
        # torch's generator mutex may be held by the interrupted code: leave torch's
        # sources out of this one swap (the cleanup cannot draw from them either).
        # The first frame above the wrappers' own is the code the collection interrupted.
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == __file__:
            frame = frame.f_back
        exclude = _torch_sources() if torch_lock_may_be_held(frame) else None
        try:
            self.step(finish, None, exclude=exclude, blocking=False)
        except Busy:
            import warnings  # noqa: PLC0415 - a rare path

            warnings.warn(
                "an abandoned @seeded generator or coroutine was closed by the garbage "
                "collector while another thread held a deterministic scope; its cleanup "
                "ran outside its own stream (close such generators explicitly, or use "
                "contextlib.closing)",
                RuntimeWarning,
                stacklevel=1,
            )
            iterator.close()


def _torch_sources() -> frozenset[str]:
    return frozenset(name for name, source in SOURCES.items() if source.module == "torch")


def _drive(stream: _Stream, box: list[Any]) -> Generator[Any, Any, Any]:
    """Forward ``next``/``send``/``throw``/``close`` to the iterator in ``box``, one scope per step.

    The iterator comes in a box so that callers can create this generator *before* the
    wrapped one: the garbage collector finalises a dead cycle's objects in allocation
    order, and this generator must be finalised first to close the wrapped one in its
    own stream (the wrapped one's own finaliser then finds it closed).
    """
    iterator = box.pop()
    try:
        value = stream.step(iterator.send, None)
    except StopIteration as stop:
        return stop.value
    while True:
        try:
            sent = yield value
        except GeneratorExit:
            stream.close(iterator)
            raise
        except BaseException as error:  # noqa: BLE001 - forwarded into the iterator
            advance, argument = iterator.throw, error
        else:
            advance, argument = iterator.send, sent
        try:
            value = stream.step(advance, argument)
        except StopIteration as stop:
            return stop.value


class _Steps:
    """An awaitable that drives another awaitable's iterator one scope per step."""

    __slots__ = ("_iterator", "_stream")

    def __init__(self, stream: _Stream, awaitable: Any) -> None:
        self._stream = stream
        self._iterator = awaitable.__await__()

    def __await__(self) -> Generator[Any, Any, Any]:
        return _drive(self._stream, [self._iterator])


async def _run_coroutine(stream: _Stream, box: list[Coroutine[Any, Any, Any]]) -> Any:
    return await _Steps(stream, box.pop())


async def _run_async_generator(
    stream: _Stream, box: list[AsyncGenerator[Any, Any]]
) -> AsyncGenerator[Any, Any]:
    agen = box.pop()
    advance: Callable[[Any], Any] = agen.asend
    argument: Any = None
    while True:
        try:
            value = await _Steps(stream, advance(argument))
        except StopAsyncIteration:
            return
        try:
            argument = yield value
        except GeneratorExit:
            if stream._states is None or sys.is_finalizing():
                await agen.aclose()
            else:
                await _Steps(stream, agen.aclose())
            raise
        except BaseException as error:  # noqa: BLE001 - forwarded into the generator
            advance, argument = agen.athrow, error
        else:
            advance = agen.asend


def _function_wrapper(config: deterministic) -> Callable[..., Any]:
    def call(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        scope = open_scope(config)
        try:
            return wrapped(*args, **kwargs)
        finally:
            close_scope(scope)

    return call


# Each wrapper creates its driving object before calling the wrapped function: see _drive.


def _generator_wrapper(config: deterministic) -> Callable[..., Any]:
    def call(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        box: list[Any] = []
        driver = _drive(_Stream(config), box)
        box.append(wrapped(*args, **kwargs))
        return driver

    return call


def _coroutine_wrapper(config: deterministic) -> Callable[..., Any]:
    def call(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        box: list[Any] = []
        driver = _run_coroutine(_Stream(config), box)
        try:
            box.append(wrapped(*args, **kwargs))
        except BaseException:
            driver.close()  # never awaited, and no need to warn about it
            raise
        return driver

    return call


def _async_generator_wrapper(config: deterministic) -> Callable[..., Any]:
    def call(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        box: list[Any] = []
        driver = _run_async_generator(_Stream(config), box)
        box.append(wrapped(*args, **kwargs))
        return driver

    return call


def _target(wrapped: Any) -> Any:
    """Return the function behind a classmethod or staticmethod, else ``wrapped``."""
    if isinstance(wrapped, (classmethod, staticmethod)):
        return wrapped.__func__
    return wrapped


def decorate(config: deterministic, wrapped: _F) -> _F:
    """Return ``wrapped`` decorated so that each call (or step) runs in a scope of ``config``.

    Args:
        config: The scope configuration.
        wrapped: A function, generator function, coroutine function, async generator
            function, method, classmethod or staticmethod.

    Returns:
        A ``wrapt`` proxy that keeps name, docstring, signature and binding.

    Raises:
        TypeError: If ``wrapped`` is a class or not callable.
    """
    import inspect  # noqa: PLC0415 - inspect costs milliseconds; only decorating needs it

    if inspect.isclass(wrapped):
        raise TypeError(
            f"cannot decorate class {wrapped.__qualname__}: decorate its methods (or "
            f"functions), not the class"
        )
    target = _target(wrapped)
    if not callable(target):
        raise TypeError(
            f"can only decorate functions, methods, generators and coroutines, not {type(wrapped).__name__}"
        )
    if inspect.isasyncgenfunction(target):
        make = _async_generator_wrapper
    elif inspect.iscoroutinefunction(target):
        make = _coroutine_wrapper
    elif inspect.isgeneratorfunction(target):
        make = _generator_wrapper
    else:
        make = _function_wrapper
    if make is not _function_wrapper:
        watch_collections()  # what they return can be closed by the garbage collector
    wrapper = make(config)
    # wrapt imports asyncio; importing it here keeps `import deterministic` light.
    import wrapt  # noqa: PLC0415

    return wrapt.FunctionWrapper(wrapped, wrapper)  # type: ignore[return-value]


def _name_seed(wrapped: Any) -> int:
    """The seed of a bare ``@seeded``: derived from the function's module and qualified name."""
    target = _target(wrapped)
    module = getattr(target, "__module__", None) or ""
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", "")
    return derive_seed("seeded", module, qualname)


if TYPE_CHECKING:

    @overload
    def seeded(wrapped: _F, /) -> _F: ...

    @overload
    def seeded(
        wrapped: int | str | bytes | None = ...,
        /,
        *,
        seed: Any = _UNSET,
        cudnn_deterministic: bool | None = True,
        cudnn_benchmark: bool | None = False,
        cudnn_enabled: bool | None = None,
        deterministic_algorithms: bool | str | None = None,
        fill_uninitialized_memory: bool | None = None,
        batch_invariant: bool | None = None,
        sources: Any = None,
    ) -> Callable[[_F], _F]: ...


def seeded(wrapped: Any = _UNSET, /, *, seed: Any = _UNSET, **keywords: Any) -> Any:
    """Run each call of the decorated function in a fresh ``deterministic`` scope.

    Forms: ``@seeded``, ``@seeded()``, ``@seeded(42)``, ``@seeded(seed=42, **keywords)``.
    Without a seed the seed is :func:`derive_seed` of ``"seeded"``, the function's
    module and its qualified name: every call gives the same result, two functions get
    different streams, and the value is stable across processes. A seed of ``None``,
    given either way (``@seeded(None)`` or ``@seeded(seed=None)``), draws a fresh seed
    per call, as ``@deterministic(None)`` does, and logs it. Generators, coroutines and
    async generators keep their own stream across suspensions. Place it outside
    ``@classmethod``/``@staticmethod``.

    Args:
        wrapped: The function, or a seed when used as ``@seeded(42)``.
        seed: The seed, as for :class:`deterministic`.
        **keywords: The flag and ``sources`` keywords of :class:`deterministic`.

    Returns:
        The decorated function, or a decorator when called without one.

    Raises:
        TypeError: For a seed given twice, an unaccepted seed or keyword, or when
            decorating a class.
        ValueError: For an unknown source name or algorithms mode.
    """
    if callable(wrapped) or isinstance(wrapped, (classmethod, staticmethod)):
        config_seed = _name_seed(wrapped) if seed is _UNSET else seed
        return decorate(deterministic(config_seed, **keywords), wrapped)
    if wrapped is not _UNSET:
        if seed is not _UNSET:
            raise TypeError("seeded() got the seed both positionally and as seed=")
        seed = wrapped
    if seed is not _UNSET:
        config = deterministic(seed, **keywords)  # validate now, not at decoration

        def with_seed(function: Any) -> Any:
            return decorate(config, function)

        return with_seed
    deterministic(0, **keywords)  # validate the keywords now

    def with_name_seed(function: Any) -> Any:
        return decorate(deterministic(_name_seed(function), **keywords), function)

    return with_name_seed
