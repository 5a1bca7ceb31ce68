"""Knowing when a finaliser runs inside a garbage collection, and where that collection began.

A decorated generator abandoned in a reference cycle is closed by the garbage collector,
which can start at any allocation of any code. Its cleanup must still run in its own
stream, which means swapping RNG states from inside that allocation. Two places make
that unsafe, and this module tells the wrappers when they may be inside one:

* torch's ``Generator.get_state`` (and its kin) allocates the returned tensor while
  holding the generator's mutex; a finaliser that touches the same generator then waits
  for a mutex its own thread holds, forever;
* another thread's scope holds the scope lock, and waiting for it from inside an
  allocation can deadlock on whatever the interrupted code holds.

Scope operations themselves switch automatic collection off while they run (see
:func:`pause_gc`), so a collection never starts inside them.
"""

from __future__ import annotations

import _thread
import gc
import sys
from collections import OrderedDict

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

__all__ = [
    "TORCH_GENERATOR_METHODS",
    "collecting",
    "pause_gc",
    "resume_gc",
    "torch_lock_may_be_held",
    "watch_collections",
]

#: Methods of ``torch.Generator`` (and the module functions around them) that lock a
#: generator; a collection that starts while one is being called may find its mutex held.
TORCH_GENERATOR_METHODS = frozenset(
    {
        "get_state",
        "set_state",
        "graphsafe_get_state",
        "graphsafe_set_state",
        "clone_state",
        "manual_seed",
        "manual_seed_all",
        "seed",
        "seed_all",
        "initial_seed",
        "get_offset",
        "set_offset",
        "get_rng_state",
        "get_rng_state_all",
        "set_rng_state",
        "set_rng_state_all",
        "__reduce__",
        "__getstate__",
        "__setstate__",
    }
)

#: The ident of the thread that switched automatic collection off with :func:`pause_gc`,
#: while it is off. (An ident is enough here: it is only compared in a forked child, with
#: the forking thread's, which was alive at the fork.)
paused_by: int | None = None


def pause_gc() -> bool:
    """Switch automatic garbage collection off for one scope operation or snapshot.

    A collection can start at any allocation and run finalisers, including those of
    abandoned decorated generators, which enter scopes themselves: inside a scope
    operation that would interleave two operations on the same sources, and inside
    torch's ``Generator.get_state`` (which allocates while holding the generator's
    mutex) such a finaliser deadlocks. Pausing costs two C calls.

    Returns:
        Whether it was switched off here (pass it to :func:`resume_gc`).
    """
    global paused_by
    if gc.isenabled():
        gc.disable()
        paused_by = _thread.get_ident()
        return True
    return False


def resume_gc(paused: bool) -> None:
    """Switch automatic garbage collection back on if :func:`pause_gc` switched it off.

    Args:
        paused: What :func:`pause_gc` returned.
    """
    global paused_by
    if paused:
        paused_by = None
        gc.enable()


# The collector reports each collection's start and stop to these, through C callables
# only: a Python callback would be a frame in which a pending Ctrl-C is handled, and the
# collector swallows whatever a callback raises, so the Ctrl-C would be lost. The info
# dict it passes is new for every call, which makes it a token for one collection.
#
# Per thread: the start info of the last collection that thread began.
_began = _thread._local()
# The last phase reported is the last key; "start" holds the current collection's info.
_phases: OrderedDict[str, Any] = OrderedDict(start=None, stop=None)
_CALLBACKS: tuple[Any, ...] = (_began.__setattr__, _phases.__setitem__, _phases.move_to_end)


def watch_collections() -> None:
    """Start tracking collections (once per process; the callbacks cost nanoseconds per collection)."""
    for callback in _CALLBACKS:
        if callback not in gc.callbacks:
            gc.callbacks.append(callback)


def collecting() -> bool:
    """Return whether the calling thread is inside a garbage collection (its finalisers included)."""
    # Another thread's collection may be under way (its finaliser's Python code lets
    # threads switch): only the token this thread recorded at the start tells them apart.
    return next(reversed(_phases)) == "start" and getattr(_began, "start", None) is _phases["start"]


def torch_lock_may_be_held(frame: FrameType | None) -> bool:
    """Return whether code interrupted at ``frame`` may be inside a torch generator call.

    A frame of torch's own Python code, or one whose current call is a method named in
    :data:`TORCH_GENERATOR_METHODS`, counts. It errs towards ``True``.

    Args:
        frame: The frame running when the finaliser began (the one whose allocation
            started the collection), or ``None`` when no Python code was running.

    Returns:
        ``True`` when touching torch's generators now could deadlock.
    """
    if frame is None:
        return False
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    torch_file = getattr(torch, "__file__", None) or ""
    torch_root = torch_file.rsplit("/", 1)[0] if "/" in torch_file else torch_file
    if torch_root and frame.f_code.co_filename.startswith(torch_root):
        return True
    return _called_name(frame) in TORCH_GENERATOR_METHODS


def _called_name(frame: FrameType) -> str | None:
    """Return the attribute or global name loaded last before the frame's current instruction."""
    import dis  # noqa: PLC0415 - only reached from a finaliser inside a collection

    name = None
    for instruction in dis.get_instructions(frame.f_code):
        if instruction.offset > frame.f_lasti:
            break
        if instruction.opname in ("LOAD_METHOD", "LOAD_ATTR", "LOAD_GLOBAL", "LOAD_NAME"):
            name = instruction.argval
    return name if isinstance(name, str) else None
