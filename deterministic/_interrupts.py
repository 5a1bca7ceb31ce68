"""Holding Ctrl-C off while a scope is entered or left, so that it never lands half-way.

Python runs a signal handler in the main thread between two bytecodes, wherever that
thread is. A ``KeyboardInterrupt`` raised between taking the scope lock and recording its
owner, or between seeding one source and the next, would leave the lock held by nobody,
a scope half-entered or the generators seeded. No ordering of statements avoids that: the
interrupt can land at the first bytecode of ``__exit__`` itself.

So while the main thread has a scope open (and while it enters or leaves one), a *guard*
stands in front of the process's ``SIGINT`` handler. When a signal arrives, the guard
looks at the frames the main thread is executing: if one of the scope machinery's
functions is among them, it records the signal and returns; the operation finishes (an
entry is then undone) and the recorded signal is handed to the original handler at its
end. Anywhere else, for instance in the body of a ``with`` block, the original handler runs
at once, exactly as without the guard. The guard is removed when the main thread's last
scope closes, so ``signal.getsignal(SIGINT)`` shows it only while a scope is open there.

Only the main thread needs this: Python runs signal handlers nowhere else.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module: `signal` converts to enums (microseconds)
import _thread
import os

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import CodeType, FrameType
    from typing import Any

__all__ = ["arm", "deliver", "disarm", "installed", "pending", "protect"]

# Code objects of the functions inside which an interrupt is held off.
_PROTECTED: set[CodeType] = set()
# The handler the guard stands in front of, while it is installed.
_original: Any = None
# A signal held off: (signal number, frame), or None.
_held: tuple[int, FrameType | None] | None = None
_main_ident: int | None = None
#: Whether the guard was installed by :func:`arm` and not yet removed by :func:`disarm`.
installed = False


def protect(*functions: Callable[..., Any]) -> None:
    """Hold interrupts off while any of ``functions`` runs in the main thread (or anything they call).

    Args:
        *functions: Plain functions; their code objects are registered.
    """
    for function in functions:
        _PROTECTED.add(function.__code__)


def _guard(signum: int, frame: FrameType | None) -> None:
    """Stand in front of the original ``SIGINT`` handler: hold the signal off inside the scope machinery."""
    global _held
    current = frame
    while current is not None:
        if current.f_code in _PROTECTED:
            _held = (signum, frame)
            return
        current = current.f_back
    handler = _original
    if callable(handler):
        handler(signum, frame)


def _is_main_thread() -> bool:
    global _main_ident
    ident = _main_ident
    if ident is None:
        import threading  # noqa: PLC0415 - imported already: current_token() needs it first

        ident = _main_ident = threading.main_thread().ident
    return ident == _thread.get_ident()


def arm() -> bool:
    """Install the guard if the calling thread is the main thread and it is not installed.

    Returns:
        Whether interrupts are now held off inside the scope machinery of this thread.
    """
    if not _is_main_thread():
        return False
    global _original, installed
    current = _signal.getsignal(_signal.SIGINT)
    if current is _guard:
        installed = True
        return True
    if not callable(current):
        return False  # SIG_IGN, SIG_DFL or a handler set from C: no Python exception can arise
    # Stored before the switch: once the guard is installed, an interrupt at the call's
    # return is already held off, and the guard must know whom to hand it to.
    _original = current
    installed = True
    _signal.signal(_signal.SIGINT, _guard)
    return True


def disarm() -> None:
    """Put the original handler back if the guard is still the installed one (main thread only)."""
    global installed
    if not _is_main_thread():
        return
    installed = False
    if _signal.getsignal(_signal.SIGINT) is _guard:
        _signal.signal(_signal.SIGINT, _original)


def pending() -> bool:
    """Return whether a signal is being held off."""
    return _held is not None


def deliver() -> None:
    """Hand a held-off signal to the original handler now (which raises ``KeyboardInterrupt``)."""
    global _held
    held = _held
    if held is None or not _is_main_thread():
        return
    _held = None
    handler = _original
    if callable(handler):
        handler(*held)


def _after_fork() -> None:
    global _main_ident
    _main_ident = None  # the forking thread is the child's main thread


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
