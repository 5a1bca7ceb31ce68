"""Seed a Python child of a program run under ``python -m deterministic run``, then hand on.

``run`` puts this directory on ``PYTHONPATH`` and the seed in ``DETERMINISTIC_CHILD_SEED``,
so every Python interpreter the program starts (``multiprocessing`` with ``spawn`` or
``forkserver``, ``subprocess``) imports this module at startup. It takes itself off
``sys.path``, seeds the interpreter (see ``deterministic._children``), and then imports the
``sitecustomize`` it shadows, if there is one, so the environment's own still runs.
"""

import importlib
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_this = sys.modules["sitecustomize"]
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _here]
try:
    from deterministic._children import start_child

    start_child()
finally:
    del sys.modules["sitecustomize"]
    try:  # the environment's own, now that this one is off the path
        importlib.import_module("sitecustomize")
    except ModuleNotFoundError as error:
        if error.name != "sitecustomize":
            raise
        sys.modules["sitecustomize"] = _this  # the import system expects to find this module
