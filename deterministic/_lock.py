"""The process-wide lock that keeps scopes of different threads from interleaving."""

from __future__ import annotations

import threading
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
        self._lock = threading.Lock()
        self.owner: int | None = None
        self._owner_name = ""

    def acquire(self) -> None:
        """Take the lock, warning once if another thread's scope holds it for long."""
        if not self._lock.acquire(blocking=False):
            holder = self._owner_name
            if not self._lock.acquire(timeout=WAIT_WARNING_SECONDS):
                warnings.warn(
                    f"thread {threading.current_thread().name!r} has waited "
                    f"{WAIT_WARNING_SECONDS:g} s to enter a deterministic scope while thread "
                    f"{holder!r} holds one; if that thread waits for this one inside its "
                    f"scope, this is a deadlock",
                    RuntimeWarning,
                    stacklevel=4,
                )
                self._lock.acquire()
        self.owner = threading.get_ident()
        self._owner_name = threading.current_thread().name

    def release(self) -> None:
        """Give the lock up."""
        self.owner = None
        self._owner_name = ""
        self._lock.release()
