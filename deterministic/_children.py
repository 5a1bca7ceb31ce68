"""Seeding the Python processes that a program run under ``python -m deterministic run`` starts.

A child started with ``multiprocessing``'s ``spawn`` or ``forkserver`` method, or a
``subprocess`` running Python, is a fresh interpreter: without help it seeds itself from
OS entropy and draws differently on every run. ``run`` therefore passes the seed to every
child through the environment, and a startup hook (``_startup/sitecustomize.py`` on
``PYTHONPATH``, the mechanism coverage.py uses to reach child interpreters) calls
:func:`start_child` before the child's own code runs.

A child's seed depends on its place in the family, never on anything that differs between
runs: its parent (the seed the parent exports in ``DETERMINISTIC_CHILD_PARENT``), its
command line with temporary directories written as ``<tmp>``, and how many children with
that command the parent started before it (counted in a directory ``run`` makes).

This module is imported at the start of every child: it imports only what seeding needs.
"""

from __future__ import annotations

import os
import sys

from ._imports import watch
from ._scope import deterministic, seed_process
from ._seeds import derive_seed

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CHILD_SEED_VARIABLE",
    "COUNT_VARIABLE",
    "PARENT_VARIABLE",
    "STARTUP_DIRECTORY",
    "TEMPORARY",
    "VERBOSE_VARIABLE",
    "child_environment",
    "start_child",
    "watch_processes",
]

# The startup hook cannot import this module where the library is missing, so it spells
# the names of CHILD_SEED_VARIABLE and VERBOSE_VARIABLE out itself: keep them in step.
#: The environment variable that carries the run's effective seed to child interpreters.
CHILD_SEED_VARIABLE = "DETERMINISTIC_CHILD_SEED"
#: The seed of the process whose children these are; absent for the program ``run`` runs.
PARENT_VARIABLE = "DETERMINISTIC_CHILD_PARENT"
#: The directory in which the children of one ``run`` count themselves.
COUNT_VARIABLE = "DETERMINISTIC_CHILD_COUNTS"
#: Set by ``run --verbose``: every seeded child prints one line to stderr.
VERBOSE_VARIABLE = "DETERMINISTIC_CHILD_VERBOSE"
#: What a temporary directory's own entry in a child's command line is replaced with.
TEMPORARY = "<tmp>"
#: The directory whose ``sitecustomize`` seeds child interpreters.
STARTUP_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_startup")

# Characters that may not come before a temporary directory's path in an argument (they
# would make it part of a longer name: /var/tmp is not /tmp), and those that end the entry.
_NAME_CHARACTERS = "_-.~"
_ENTRY_ENDS = frozenset(
    filter(None, (os.sep, os.altsep, os.pathsep, ",", ";", "=", "'", '"', " ", "\t", "\n"))
)


class _Hook:
    """A live object for ``multiprocessing.util.register_after_fork`` (it keeps a weak reference)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed


_hooks: list[_Hook] = []


def child_environment(env: dict[str, str], seed: int, verbose: bool = False) -> dict[str, str]:
    """Return ``env`` with what children need to be seeded.

    That is the seed, the startup directory first on ``PYTHONPATH``, and a new directory
    in which the children count themselves, removed when this process exits.

    Args:
        env: The environment of the program ``run`` starts.
        seed: The run's effective seed.
        verbose: Whether every seeded child says so on stderr.

    Returns:
        A new environment.
    """
    import atexit  # noqa: PLC0415 - only run needs these: children must not pay for them
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    result = dict(env)
    result[CHILD_SEED_VARIABLE] = str(seed)
    result.pop(PARENT_VARIABLE, None)  # the program heads a new family
    counts = tempfile.mkdtemp(prefix="deterministic-children-")
    atexit.register(shutil.rmtree, counts, ignore_errors=True)
    result[COUNT_VARIABLE] = counts
    if verbose:
        result[VERBOSE_VARIABLE] = "1"
    else:
        result.pop(VERBOSE_VARIABLE, None)
    existing = result.get("PYTHONPATH")
    result["PYTHONPATH"] = STARTUP_DIRECTORY if not existing else STARTUP_DIRECTORY + os.pathsep + existing
    return result


def _run_seed() -> int | None:
    text = os.environ.get(CHILD_SEED_VARIABLE, "")
    return int(text) if text.isdigit() else None


def _temporary_roots() -> list[str]:
    """Where ``tempfile`` may put temporary files, as given and as real paths, longest first.

    ``tempfile.gettempdir()`` picks the first usable of these; the child cannot know which
    one its parent's ``tempfile`` picked, and importing ``tempfile`` costs milliseconds.
    """
    candidates = [os.environ.get(name, "") for name in ("TMPDIR", "TEMP", "TMP")]
    if os.name == "nt":
        candidates += [
            os.path.expanduser(r"~\AppData\Local\Temp"),
            os.path.expandvars(r"%SYSTEMROOT%\Temp"),
            r"c:\temp",
            r"c:\tmp",
            r"\temp",
            r"\tmp",
        ]
    else:
        candidates += ["/tmp", "/var/tmp", "/usr/tmp"]
    roots: set[str] = set()
    for candidate in filter(None, candidates):
        path = os.path.abspath(candidate)
        roots.update((path, os.path.realpath(path)))
    roots = {root for root in roots if os.path.dirname(root) != root}  # never a filesystem root
    return sorted(roots, key=len, reverse=True)


def _without_temporary(argument: str, roots: list[str]) -> str:
    """Write the entry of a temporary directory in each path ``argument`` holds as ``<tmp>``.

    ``tempfile.mkdtemp()`` and its kin name that entry from an OS-seeded generator:
    ``/tmp/tmpk3j_x9q2/data.json`` becomes ``<tmp>/data.json``, whatever the run.
    """
    for root in roots:
        for separator in filter(None, (os.sep, os.altsep)):
            prefix = root + separator
            start = argument.find(prefix)
            while start != -1:
                before = argument[start - 1] if start else " "
                if before.isalnum() or before in _NAME_CHARACTERS:
                    start = argument.find(prefix, start + 1)
                    continue
                end = start + len(prefix)
                while end < len(argument) and argument[end] not in _ENTRY_ENDS:
                    end += 1
                argument = argument[:start] + TEMPORARY + argument[end:]
                start = argument.find(prefix, start + len(TEMPORARY))
    return argument


def _started_by_multiprocessing(arguments: list[str]) -> bool:
    """Whether ``multiprocessing`` started this interpreter (a spawn or forkserver worker, its helpers)."""
    if arguments[-1:] == ["--multiprocessing-fork"]:
        arguments = arguments[:-1]
    return arguments[-2:-1] == ["-c"] and arguments[-1].startswith("from multiprocessing.")


def _ordinal(parent: str, command: list[str]) -> int:
    """How many children with ``command`` this interpreter's parent started before it.

    Each child appends one byte to a file of the run's count directory named after its
    parent (process id and seed) and command; the file's offset after an append is
    atomic, so children started at once still get distinct numbers. Without the
    directory (the run is over, or the environment was copied elsewhere) it is 0.
    """
    directory = os.environ.get(COUNT_VARIABLE)
    if not directory:
        return 0
    name = f"{os.getppid()}-{derive_seed('count', parent, *command)}"
    try:
        descriptor = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        return 0
    try:
        os.write(descriptor, b"+")
        return os.lseek(descriptor, 0, os.SEEK_CUR) - 1
    finally:
        os.close(descriptor)


def _command(arguments: list[str]) -> list[str]:
    """``arguments`` with every temporary directory's own entry written as ``<tmp>``."""
    roots = _temporary_roots()
    return [_without_temporary(argument, roots) for argument in arguments]


def _shown(arguments: list[str]) -> str:
    """A command line on one line: arguments with spaces or line breaks quoted."""
    return " ".join(
        argument if argument and not any(c.isspace() for c in argument) else repr(argument)
        for argument in arguments
    )


def start_child() -> None:
    """Seed this interpreter if it is a child of a ``run`` (called by the startup hook).

    The child starts seeded as an entry of ``deterministic(derive_seed(N, "child", parent,
    ordinal, *command))`` would seed it (see :func:`~deterministic._scope.seed_process`;
    no scope stays held), where ``parent`` is the seed of the process that started it
    (``""`` for the program ``run`` runs), ``command`` its command line without the
    executable (``sys.orig_argv[1:]``) with temporary directories' entries written as
    ``<tmp>``, and ``ordinal`` how many children with that command the parent started
    before it. The child then exports its seed as the parent of its own children.

    An interpreter that ``multiprocessing`` starts belongs to no family of its own: it
    starts from ``derive_seed(N, "multiprocessing", parent)``, and a spawned worker is
    reseeded from its name as soon as it learns it, before its main module is imported
    (see :func:`watch_processes` for the name's seed).
    """
    seed = _run_seed()
    arguments = sys.orig_argv[1:]
    if seed is None or arguments[:2] == ["-m", "deterministic._runner"]:
        return  # not under run, or the program run itself (its runner seeds it)
    parent = os.environ.get(PARENT_VARIABLE, "")
    if _started_by_multiprocessing(arguments):
        own = derive_seed(seed, "multiprocessing", parent)
        if arguments[-1:] == ["--multiprocessing-fork"]:
            watch("multiprocessing.spawn", lambda _: _seed_when_named(seed))
    else:
        command = _command(arguments)
        own = derive_seed(seed, "child", parent, _ordinal(parent, command), *command)
        os.environ[PARENT_VARIABLE] = str(own)
        _tell(f"seeded child {os.getpid()} with {own}: {_shown(sys.orig_argv)}")
    seed_process(deterministic(own))
    watch_processes(seed)


def _tell(message: str) -> None:
    """Say what was seeded on stderr, under ``run --verbose``."""
    if os.environ.get(VERBOSE_VARIABLE):
        sys.stderr.write(f"deterministic: {message}\n")
        sys.stderr.flush()


def watch_processes(seed: int) -> None:
    """Reseed every ``multiprocessing`` process this interpreter starts, from its name.

    ``multiprocessing`` names processes from a counter (``Process-1``,
    ``SpawnPoolWorker-2``), so the same program gives the same names in every run. Each
    process, once started (fork, spawn or forkserver), is seeded as an entry of
    ``deterministic(derive_seed(N, "process", <name>))`` would seed it — with the parent's
    seed before the name, ``derive_seed(N, "process", parent, <name>)``, when another
    seeded process (a child of the program, or a worker) started it — and exports that
    seed as the parent of its own children: workers get distinct streams, the same in
    every run. A spawned worker is seeded from its name before its main module runs.

    Args:
        seed: The run's effective seed.
    """
    hook = _Hook(seed)
    _hooks.append(hook)

    def register(_: str) -> None:
        util: Any = sys.modules["multiprocessing.util"]
        util.register_after_fork(hook, _reseed_process)

    if "multiprocessing.util" in sys.modules:
        register("multiprocessing.util")
    else:
        watch("multiprocessing.util", register)


# The (process id, name) this process was last seeded as, so that a spawned worker seeded
# before its main module ran is not reseeded later (which would replay its draws).
_named: tuple[int, str] | None = None


def _seed_named(seed: int, name: str) -> None:
    """Seed this ``multiprocessing`` process from its name, and make it the parent of its children."""
    global _named
    if _named == (os.getpid(), name):
        return
    _named = (os.getpid(), name)
    # Inherited from the process that started this one: a forked copy of its environment,
    # or the environment a spawned interpreter started with (left alone by start_child).
    parent = os.environ.get(PARENT_VARIABLE, "")
    own = derive_seed(seed, "process", *([parent] if parent else []), name)
    seed_process(deterministic(own))
    os.environ[PARENT_VARIABLE] = str(own)
    _tell(f"seeded process {name} ({os.getpid()}) with {own}")


def _reseed_process(hook: _Hook) -> None:
    import multiprocessing  # noqa: PLC0415 - imported already: this runs inside it

    _seed_named(hook.seed, multiprocessing.current_process().name)


def _seed_when_named(seed: int) -> None:
    """Seed a spawned worker from its name as soon as ``multiprocessing`` hands it over.

    A spawned process runs no after-fork callbacks (``SpawnProcess._after_fork`` does
    nothing). Its name arrives first in the preparation data, before the main module is
    imported as ``__mp_main__``: ``multiprocessing.spawn.prepare`` is wrapped to seed there.
    """
    spawn: Any = sys.modules["multiprocessing.spawn"]
    prepare = spawn.prepare

    def seeded_prepare(data: dict[str, Any]) -> None:
        name = data.get("name")
        if isinstance(name, str):
            _seed_named(seed, name)
        prepare(data)

    spawn.prepare = seeded_prepare
