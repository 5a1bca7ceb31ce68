"""Lightning integration: evaluation that cannot perturb training.

Import it explicitly (``from deterministic.lightning import SeededEvaluation``); importing
``deterministic`` never imports Lightning. Works with the ``lightning`` package
(``lightning.pytorch``) and, when that is not installed, with ``pytorch_lightning``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._scope import deterministic


def _callback_base() -> Any:
    try:
        return importlib.import_module("lightning.pytorch.callbacks").Callback
    except ImportError:  # the standalone package
        return importlib.import_module("pytorch_lightning.callbacks").Callback


Callback: Any = _callback_base()

__all__ = ["SeededEvaluation"]


def _evaluation_loops(trainer: Any) -> list[Any]:
    """Every evaluation loop: validation in fit (and its sanity check), validate, test, predict."""
    loops = [
        trainer.fit_loop.epoch_loop.val_loop,
        trainer.validate_loop,
        trainer.test_loop,
        trainer.predict_loop,
    ]
    return [loop for loop in loops if loop is not None]


class SeededEvaluation(Callback):  # type: ignore[misc]
    """Run every evaluation loop entirely inside ``deterministic(seed, **keywords)``.

    Lightning creates an evaluation loop's DataLoader iterator before any callback hook
    of that loop (``on_validation_start`` and the rest) runs, and creating an iterator
    draws a base seed from the global torch generator, even with ``num_workers=0``. A
    scope opened in ``validation_step`` or in those hooks therefore comes too late: the
    training stream has already moved. This callback wraps the ``run`` method of each
    evaluation loop of the trainer (sanity check, validation during fit, ``validate``,
    ``test``, ``predict``) when the trainer sets up, so that the whole loop — its
    iterator, its workers' seeds, its steps — runs inside a scope, which restores every
    global RNG state on exit. Training then draws exactly what it draws without
    evaluation, and every evaluation run gets the same stream. The wrappers are removed
    at teardown. Nothing about the user's DataLoaders or steps changes.

    Args:
        seed: The scope's seed, as for :class:`~deterministic.deterministic`.
        **keywords: The flag and ``sources`` keywords of :class:`~deterministic.deterministic`.

    Raises:
        TypeError: For a seed or keyword that :class:`~deterministic.deterministic` refuses.
        ValueError: Likewise.
    """

    def __init__(self, seed: Any, **keywords: Any) -> None:
        super().__init__()
        self._config = deterministic(seed, **keywords)  # validated now, not at the first evaluation
        self._wrapped: list[Any] = []

    @property
    def config(self) -> deterministic:
        """The scope configuration every evaluation loop runs in."""
        return self._config

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Wrap each evaluation loop's ``run`` in the scope (once per loop)."""
        config = self._config
        for loop in _evaluation_loops(trainer):
            if "run" in vars(loop):  # wrapped already, by this or another instance
                continue
            original = loop.run

            def run(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                with config:
                    return _original(*args, **kwargs)

            loop.run = run
            self._wrapped.append(loop)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Remove the wrappers this callback installed."""
        for loop in self._wrapped:
            vars(loop).pop("run", None)
        self._wrapped.clear()
