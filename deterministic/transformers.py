"""transformers integration: a ``Trainer`` whose evaluation cannot perturb training.

Import it explicitly (``from deterministic.transformers import seed_evaluation``);
importing ``deterministic`` never imports transformers, and neither does this module.
"""

from __future__ import annotations

from typing import Any

from ._scope import deterministic

__all__ = ["seed_evaluation"]

_METHODS = ("evaluate", "predict")


def seed_evaluation(trainer: Any, seed: Any, **keywords: Any) -> Any:
    """Make ``trainer.evaluate`` and ``trainer.predict`` run inside ``deterministic(seed, **keywords)``.

    ``Trainer.train`` evaluates by calling ``self.evaluate``, so evaluation during
    training runs in the scope too: the evaluation DataLoader's iterator (which draws a
    base seed from the global torch generator), its workers and the model's forward
    passes all draw from the scope's stream, and every global RNG state is restored
    afterwards. Training then draws exactly what it draws without evaluation, and each
    evaluation gets the same stream. The methods are replaced on this trainer object
    only; calling it again changes nothing.

    Args:
        trainer: A ``transformers.Trainer`` (or anything with ``evaluate``/``predict``).
        seed: The scope's seed, as for :class:`~deterministic.deterministic`.
        **keywords: The flag and ``sources`` keywords of :class:`~deterministic.deterministic`.

    Returns:
        The same trainer, for chaining.

    Raises:
        TypeError: For a seed or keyword that :class:`~deterministic.deterministic` refuses,
            or a trainer without ``evaluate`` and ``predict`` methods.
        ValueError: Likewise for values.
    """
    config = deterministic(seed, **keywords)
    for name in _METHODS:
        if not callable(getattr(trainer, name, None)):
            raise TypeError(
                f"seed_evaluation() needs a trainer with an {name}() method, not {type(trainer).__name__}"
            )
    for name in _METHODS:
        if name in vars(trainer):  # replaced already
            continue
        setattr(trainer, name, config(getattr(trainer, name)))
    return trainer
