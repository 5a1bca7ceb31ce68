"""The process-wide lock that keeps scopes of different threads from interleaving.

Ownership is by :class:`ThreadToken`, an object created once per thread and never shared:
thread idents are reused as soon as a thread ends, so an ident cannot tell a new thread
from a dead one that left a scope open.
"""

from __future__ import annotations

import _thread
import os
import sys
import warnings
from collections.abc import Callable

__all__ = ["ScopeLock", "ThreadToken", "current_token", "on_thread_end"]

#: Seconds a thread waits for another thread's scope before it warns (once per wait).
WAIT_WARNING_SECONDS = 10.0
# How often the main thread, waiting for another thread's scope, looks for a held-off Ctrl-C.
_SLICE_SECONDS = 0.05

_local = _thread._local()
_thread_end_handlers: list[Callable[[ThreadToken], None]] = []


class ThreadToken:
    """The identity of one thread for the scope machinery; a new thread never gets an old one.

    Attributes:
        ident: The thread's ident when the token was made (for messages only).
        name: The thread's name when the token was made.
        pid: The process that made the token (a forked child is not that thread).
    """

    __slots__ = ("__weakref__", "ident", "name", "pid")

    def __init__(self, ident: int, name: str, pid: int) -> None:
        self.ident = ident
        self.name = name
        self.pid = pid

    def __repr__(self) -> str:
        return f"<thread {self.name!r}>"


class _Sentinel:
    """Lives in the thread's locals; its finaliser runs when the thread's state is cleared."""

    __slots__ = ("token",)

    def __init__(self, token: ThreadToken) -> None:
        self.token = token

    # Bound as defaults: at interpreter shutdown module globals may already be gone.
    def __del__(
        self, _getpid: Callable[[], int] = os.getpid, _finalizing: Callable[[], bool] = sys.is_finalizing
    ) -> None:
        token = self.token
        # In a forked child the other threads' locals are cleared during the fork; the
        # child's own at-fork handler deals with their scopes.
        if _finalizing() or token.pid != _getpid():
            return
        for handler in _thread_end_handlers:
            handler(token)


def current_token() -> ThreadToken:
    """Return the calling thread's token, making it on the thread's first use.

    Returns:
        The token.
    """
    try:
        token: ThreadToken = _local.token
    except AttributeError:
        import threading  # noqa: PLC0415 - threading costs milliseconds at import; once per thread

        token = ThreadToken(_thread.get_ident(), threading.current_thread().name, os.getpid())
        _local.token = token
        _local.sentinel = _Sentinel(token)
    return token


def on_thread_end(handler: Callable[[ThreadToken], None]) -> None:
    """Call ``handler(token)`` in a thread that ends after having used :func:`current_token`.

    Args:
        handler: The callback; it must not raise.
    """
    _thread_end_handlers.append(handler)


class ScopeLock:
    """A re-entrant lock owned by one thread at a time, counted per hold.

    RNG state is process-global, so a scope is only exact if no other thread's scope
    runs while it is active. Every active scope holds one count, and so does a scope
    being entered; the lock is free when the count drops to zero. Counting (rather than
    "release when the stack is empty") keeps the lock held when a finaliser enters and
    leaves a scope in the middle of another scope's entry or exit.
    """

    def __init__(self) -> None:
        """Create an unowned lock."""
        self._lock = _thread.allocate_lock()
        self.owner: ThreadToken | None = None
        self.count = 0

    def acquire(self, token: ThreadToken, interrupted: Callable[[], bool] | None = None) -> bool:
        """Take one count, waiting for another thread's scopes and warning once if that takes long.

        Args:
            token: The calling thread's token.
            interrupted: Asked at least every few milliseconds while waiting; once it
                returns true, the wait is abandoned (for a Ctrl-C held off meanwhile).

        Returns:
            ``True`` once the count is taken; ``False`` if the wait was abandoned.
        """
        if self.owner is token:
            self.count += 1
            return True
        if not self._lock.acquire(False) and not self._wait(token, interrupted):
            return False
        self.owner = token
        self.count = 1
        return True

    def _wait(self, token: ThreadToken, interrupted: Callable[[], bool] | None) -> bool:
        import time  # noqa: PLC0415 - only when another thread holds a scope

        holder = self.owner
        start = time.monotonic()
        warned = False
        # With a held-off interrupt to look out for, wait in short slices: a signal
        # arriving during a wait is handled (and held off) without ending the wait.
        slice_seconds = _SLICE_SECONDS if interrupted is not None else WAIT_WARNING_SECONDS
        while not self._lock.acquire(True, slice_seconds):
            if interrupted is not None and interrupted():
                return False
            if not warned and time.monotonic() - start >= WAIT_WARNING_SECONDS:
                warned = True
                warnings.warn(
                    f"thread {token.name!r} has waited {WAIT_WARNING_SECONDS:g} s to enter a "
                    f"deterministic scope while thread {_name(holder)!r} holds one; if that "
                    f"thread waits for this one inside its scope, this is a deadlock",
                    RuntimeWarning,
                    stacklevel=6,
                )
        return True

    def try_acquire(self, token: ThreadToken) -> bool:
        """Take one count if that needs no waiting.

        Args:
            token: The calling thread's token.

        Returns:
            Whether the count was taken.
        """
        if self.owner is token:
            self.count += 1
            return True
        if not self._lock.acquire(False):
            return False
        self.owner = token
        self.count = 1
        return True

    def release(self) -> None:
        """Give one count back; the last one frees the lock."""
        self.count -= 1
        if self.count == 0:
            self.owner = None
            self._lock.release()

    def release_all(self) -> None:
        """Give every count back (the holding thread is ending)."""
        self.owner = None
        self.count = 0
        self._lock.release()

    def reset(self) -> None:
        """Free the lock in a forked child, where its holder is a thread of the parent."""
        self.owner = None
        self.count = 0
        # A fresh lock: the old one may be held by a thread that no longer exists.
        self._lock = _thread.allocate_lock()


def _name(token: ThreadToken | None) -> str:
    return "<none>" if token is None else token.name
