"""The process-wide lock that keeps scopes of different threads from interleaving."""

from __future__ import annotations

import _thread
import warnings

__all__ = ["ScopeLock"]

#: Seconds a thread waits for another thread's scope before it warns (once per wait).
WAIT_WARNING_SECONDS = 10.0


class ScopeLock:
    """A lock owned by one thread at a time, which names its holder when a waiter warns.

    RNG state is process-global, so a scope is only exact if no other thread's scope
    runs while it is active. The owning thread may enter any number of scopes; the
    scope module releases the lock when the thread's last scope exits.
    """

    def __init__(self) -> None:
        """Create an unowned lock."""
        self._lock = _thread.allocate_lock()
        self.owner: int | None = None

    def acquire(self) -> None:
        """Take the lock, warning once if another thread's scope holds it for long."""
        if not self._lock.acquire(False):
            holder = self.owner
            if not self._lock.acquire(True, WAIT_WARNING_SECONDS):
                warnings.warn(
                    f"thread {_thread_name(_thread.get_ident())!r} has waited "
                    f"{WAIT_WARNING_SECONDS:g} s to enter a deterministic scope while thread "
                    f"{_thread_name(holder)!r} holds one; if that thread waits for this one "
                    f"inside its scope, this is a deadlock",
                    RuntimeWarning,
                    stacklevel=4,
                )
                self._lock.acquire()
        self.owner = _thread.get_ident()

    def release(self) -> None:
        """Give the lock up."""
        self.owner = None
        self._lock.release()


def _thread_name(ident: int | None) -> str:
    """Return the name of the thread with this ident (only needed when warning)."""
    import threading  # noqa: PLC0415 - threading costs milliseconds at import

    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return f"<thread {ident}>"
