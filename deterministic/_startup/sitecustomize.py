"""Seed a Python child of a program run under ``python -m deterministic run``, then hand on.

``run`` puts this directory on ``PYTHONPATH`` and the seed in ``DETERMINISTIC_CHILD_SEED``,
so every Python interpreter the program starts (``multiprocessing`` with ``spawn`` or
``forkserver``, ``subprocess``) imports this module at startup. It takes itself off
``sys.path`` and out of ``sys.modules``, seeds the interpreter (see
``deterministic._children``), and then imports the ``sitecustomize`` it shadows, if there
is one, so the environment's own still runs and is the module left as ``sitecustomize``.

An interpreter that cannot import ``deterministic`` (the base interpreter, another virtual
environment) starts as if this module were absent. It runs in whichever interpreter the
program starts, so it uses nothing newer than Python 3.6 has.
"""

import os
import sys


def _seed_child() -> None:
    """Seed this interpreter; do nothing where ``deterministic`` cannot be imported."""
    try:
        from deterministic._children import start_child  # noqa: PLC0415 - may be missing here
    except ImportError as error:
        # Not installed here, or another package of that name: behave as if absent.
        name = getattr(error, "name", None) or ""
        if name != "deterministic" and not name.startswith("deterministic."):
            raise
        if os.environ.get("DETERMINISTIC_CHILD_VERBOSE") and os.environ.get("DETERMINISTIC_CHILD_SEED"):
            command = " ".join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
            sys.stderr.write(
                f"deterministic: not seeded (this interpreter cannot import deterministic): {command}\n"
            )
        return
    start_child()


def _report(error: BaseException) -> None:
    """Report a failure to seed as site.py reports a failing sitecustomize, and go on."""
    if sys.flags.verbose:
        sys.excepthook(type(error), error, error.__traceback__)
    else:
        sys.stderr.write(
            f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{type(error).__name__}: {error}\n"
        )


_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _here]
# Out of sys.modules before anything can import "sitecustomize" again: the environment's
# own, or later a project's, must be found instead of this module.
del sys.modules["sitecustomize"]
try:
    _seed_child()
except Exception as error:  # noqa: BLE001 - reported as site.py would, then the own one runs
    _report(error)
# The environment's own. Where there is none, ModuleNotFoundError(name="sitecustomize")
# leaves this import, which site.py ignores: nothing is then left under this name, as in an
# interpreter without any sitecustomize.
__import__("sitecustomize")
