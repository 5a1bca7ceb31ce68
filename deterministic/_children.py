"""Seeding the Python processes that a program run under ``python -m deterministic run`` starts.

A child started with ``multiprocessing``'s ``spawn`` or ``forkserver`` method, or a
``subprocess`` running Python, is a fresh interpreter: without help it seeds itself from
OS entropy and draws differently on every run. ``run`` therefore passes the seed to every
child through the environment, and a startup hook (``_startup/sitecustomize.py`` on
``PYTHONPATH``, the mechanism coverage.py uses to reach child interpreters) calls
:func:`start_child` before the child's own code runs.
"""

from __future__ import annotations

import os
import sys

from ._scope import deterministic
from ._seeds import derive_seed

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CHILD_SEED_VARIABLE", "STARTUP_DIRECTORY", "child_environment", "start_child", "watch_processes"]

#: The environment variable that carries the run's effective seed to child interpreters.
CHILD_SEED_VARIABLE = "DETERMINISTIC_CHILD_SEED"
#: The directory whose ``sitecustomize`` seeds child interpreters.
STARTUP_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_startup")


class _Hook:
    """A live object for ``multiprocessing.util.register_after_fork`` (it keeps a weak reference)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed


_hooks: list[_Hook] = []


def child_environment(env: dict[str, str], seed: int) -> dict[str, str]:
    """Return ``env`` with what children need: the seed and the startup directory on ``PYTHONPATH``.

    Args:
        env: The environment of the program ``run`` starts.
        seed: The run's effective seed.

    Returns:
        A new environment.
    """
    result = dict(env)
    result[CHILD_SEED_VARIABLE] = str(seed)
    existing = result.get("PYTHONPATH")
    result["PYTHONPATH"] = STARTUP_DIRECTORY if not existing else STARTUP_DIRECTORY + os.pathsep + existing
    return result


def _run_seed() -> int | None:
    text = os.environ.get(CHILD_SEED_VARIABLE, "")
    return int(text) if text.isdigit() else None


def start_child() -> None:
    """Seed this interpreter if it is a child of a ``run`` (called by the startup hook).

    The child runs inside ``deterministic(derive_seed(N, "child", *argv))`` for its whole
    life, where ``argv`` is its full command line without the executable
    (``sys.orig_argv[1:]``): the same command gets the same stream in every run. A
    ``multiprocessing`` process is then reseeded once it knows its name (see
    :func:`watch_processes`).
    """
    seed = _run_seed()
    arguments = list(getattr(sys, "orig_argv", sys.argv))[1:]
    if seed is None or arguments[:2] == ["-m", "deterministic._runner"]:
        return  # not under run, or the program run itself (its runner seeds it)
    deterministic(derive_seed(seed, "child", *arguments)).__enter__()
    watch_processes(seed)


def watch_processes(seed: int) -> None:
    """Reseed every ``multiprocessing`` process this interpreter starts, from its name.

    ``multiprocessing`` names processes from a counter (``Process-1``,
    ``SpawnPoolWorker-2``), so the same program gives the same names in every run. Each
    process, once started (fork, spawn or forkserver), enters
    ``deterministic(derive_seed(N, "process", <name>))``: workers get distinct streams, the
    same in every run.

    Args:
        seed: The run's effective seed.
    """
    from ._imports import watch  # noqa: PLC0415 - only runs under `run`

    hook = _Hook(seed)
    _hooks.append(hook)

    def register(_: str) -> None:
        util: Any = sys.modules["multiprocessing.util"]
        util.register_after_fork(hook, _reseed_process)

    if "multiprocessing.util" in sys.modules:
        register("multiprocessing.util")
    else:
        watch("multiprocessing.util", register)


def _reseed_process(hook: _Hook) -> None:
    import multiprocessing  # noqa: PLC0415 - imported already: this runs inside it

    name = multiprocessing.current_process().name
    deterministic(derive_seed(hook.seed, "process", name)).__enter__()
