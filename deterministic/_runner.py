"""Runs a script or module as ``__main__`` in a seeded interpreter, the one ``run`` starts.

Invoked as ``python -m deterministic._runner SEED STRICT -- script.py [args]`` or
``... SEED STRICT -m module [args]`` by the command line; not a public interface.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import traceback

from ._children import CHILD_SEED_VARIABLE, watch_processes
from ._scope import deterministic, seed_process

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["TRACE_VARIABLE", "main"]

#: Set by ``check --trace``: the file to trace the target's torch operator calls into.
TRACE_VARIABLE = "DETERMINISTIC_TRACE_FILE"


def _from_target(tb: TracebackType | None, target: str) -> TracebackType | None:
    """Drop the runner's and runpy's frames, so tracebacks start in the user's code."""
    current = tb
    while current is not None:
        if os.path.abspath(current.tb_frame.f_code.co_filename) == target:
            return current
        current = current.tb_next
    return tb


def main(argv: list[str]) -> int:
    """Run the target; return its exit status.

    Args:
        argv: ``[seed, strict, "--", script, *args]`` or ``[seed, strict, "-m", module, *args]``.

    Returns:
        The status ``python script.py`` would exit with.
    """
    seed, strict, mode, target, *arguments = argv
    config = deterministic(int(seed), deterministic_algorithms=True if strict == "1" else None)
    if os.environ.get(CHILD_SEED_VARIABLE):
        watch_processes(int(seed))  # forked multiprocessing children too
    trace_path = os.environ.pop(TRACE_VARIABLE, None)  # the target's own children are not traced
    tracing: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if trace_path:
        from ._trace import trace  # noqa: PLC0415 - imports torch; only check --trace needs it

        tracing = trace(trace_path)
    # The seed is the process's starting state, not a held scope: threads of the target
    # enter their own scopes exactly as they would without `run`.
    seed_process(config)
    try:
        with tracing:
            if mode == "-m":
                sys.argv = [target, *arguments]
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                path = os.path.abspath(target)
                sys.argv = [target, *arguments]
                sys.path[0] = os.path.dirname(path)
                runpy.run_path(path, run_name="__main__")
    except SystemExit as exit_request:
        code = exit_request.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except BaseException as error:  # noqa: BLE001 - report like the interpreter does
        origin = (
            os.path.abspath(target) if mode != "-m" else getattr(sys.modules.get("__main__"), "__file__", "")
        )
        trimmed = _from_target(error.__traceback__, os.path.abspath(origin or ""))
        traceback.print_exception(type(error), error, trimmed)
        return 130 if isinstance(error, KeyboardInterrupt) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
