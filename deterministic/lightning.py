"""Lightning integration: evaluation that cannot perturb training, and exact resume.

Import it explicitly (``from deterministic.lightning import SeededTraining``); importing
``deterministic`` never imports Lightning. Works with the ``lightning`` package
(``lightning.pytorch``) and, when that is not installed, with ``pytorch_lightning``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from ._scope import deterministic
from ._seeds import derive_seed


def _callback_base() -> Any:
    try:
        return importlib.import_module("lightning.pytorch.callbacks").Callback
    except ImportError:  # the standalone package
        return importlib.import_module("pytorch_lightning.callbacks").Callback


Callback: Any = _callback_base()

__all__ = ["SeededEvaluation", "SeededTraining"]


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
        _wrap_evaluation(trainer, self._config, self._wrapped)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Remove the wrappers this callback installed."""
        _unwrap(self._wrapped)


def _wrap_evaluation(trainer: Any, config: deterministic, wrapped: list[Any]) -> None:
    """Make each evaluation loop's ``run`` run inside ``config``, recording the loops wrapped."""
    for loop in _evaluation_loops(trainer):
        if "run" in vars(loop):  # wrapped already, by this or another callback
            continue
        original = loop.run

        def run(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with config:
                return _original(*args, **kwargs)

        loop.run = run
        wrapped.append(loop)


def _unwrap(wrapped: list[Any]) -> None:
    for loop in wrapped:
        vars(loop).pop("run", None)
    wrapped.clear()


class SeededTraining(Callback):  # type: ignore[misc]
    """Exact resume: a run interrupted at any step and resumed from its checkpoint trains bit for bit alike.

    ``Trainer(callbacks=[SeededTraining(seed)])`` does three things:

    - **Data.** When the trainer asks for its train DataLoaders, each map-style
      ``DataLoader`` (``shuffle=True`` or not, any workers, ``collate_fn``,
      ``drop_last``) is rebuilt as a :class:`~deterministic.SeededDataLoader` seeded with
      ``seed``, keeping its settings, so every item, its augmentation and the batch's
      ``collate_fn`` depend only on ``(seed, epoch, index)``. A ``SeededDataLoader`` is
      kept as it is. Lightning then saves the loader's position in each checkpoint and
      loads it on resume (the loader is stateful), and calls ``set_epoch`` on its sampler
      each epoch. Its sampler shards by rank itself, so Lightning's
      ``use_distributed_sampler`` leaves it alone under DDP. A loader that cannot be made
      exact (an ``IterableDataset``, a custom ``batch_sampler`` or sampler) is used as it
      is, with one warning naming it and the reason.
    - **Model randomness.** Every checkpoint stores a snapshot of each rank's RNG states
      (dropout and the like), and a resumed run installs its rank's snapshot right before
      its first training batch.
    - **Evaluation.** Every evaluation loop runs inside a scope seeded
      ``derive_seed(seed, "evaluation")``, as with :class:`SeededEvaluation`, so
      validation never moves the training stream, whether or not a resumed run repeats it.

    Args:
        seed: The train loaders' seed; as for :class:`~deterministic.deterministic`
            (``None`` draws one fresh seed, logged).

    Raises:
        TypeError: For a seed :class:`~deterministic.deterministic` refuses.
        ValueError: Likewise.
    """

    def __init__(self, seed: Any) -> None:
        super().__init__()
        from ._samples import _effective  # noqa: PLC0415

        self.seed = _effective(seed)
        self._evaluation = deterministic(derive_seed(self.seed, "evaluation"))
        self._wrapped: list[Any] = []
        self._source: Any = None
        self._pending: Any = None  # this rank's snapshot from the checkpoint being resumed
        self._warned: set[str] = set()

    @property
    def state_key(self) -> str:
        """The key of this callback's entry in a checkpoint's ``callbacks``."""
        return "deterministic.SeededTraining"

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Wrap the evaluation loops and the train DataLoader source."""
        _wrap_evaluation(trainer, self._evaluation, self._wrapped)
        if stage != "fit":
            return
        source: Any = getattr(trainer.fit_loop, "_data_source", None)
        if not callable(getattr(source, "dataloader", None)):
            warnings.warn(
                "SeededTraining cannot reach this Lightning version's train loaders "
                "(trainer.fit_loop._data_source.dataloader): the data is not made exact on resume",
                stacklevel=2,
            )
            return
        if "dataloader" not in vars(source):
            original = source.dataloader

            def dataloader() -> Any:
                return self._seeded(original(), "train_dataloader")

            source.dataloader = dataloader
            self._source = source

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Remove the wrappers this callback installed."""
        _unwrap(self._wrapped)
        if self._source is not None:
            vars(self._source).pop("dataloader", None)
            self._source = None

    def _seeded(self, loaders: Any, name: str) -> Any:
        """Rebuild each DataLoader of what a train dataloader hook returned."""
        from ._seeded_loader import seeded_like  # noqa: PLC0415 - imports torch

        if isinstance(loaders, (list, tuple)):
            return type(loaders)(self._seeded(loader, f"{name}[{i}]") for i, loader in enumerate(loaders))
        if isinstance(loaders, dict):
            return {key: self._seeded(loader, f"{name}[{key!r}]") for key, loader in loaders.items()}
        rebuilt = seeded_like(loaders, self.seed)
        if isinstance(rebuilt, str):
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(
                    f"SeededTraining cannot make {name} exact on resume: {rebuilt}; it is used as it is",
                    stacklevel=2,
                )
            return loaders
        return rebuilt

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Store every rank's RNG snapshot (Lightning calls this on all ranks; rank 0 writes)."""
        from ._snapshot import snapshot  # noqa: PLC0415

        state = snapshot().state_dict()
        checkpoint[self.state_key] = {"seed": self.seed, "rng": _gather(state)}

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Keep this rank's snapshot, to install right before the first training batch."""
        saved = checkpoint.get(self.state_key)
        if saved is None:
            warnings.warn(
                "the checkpoint was not written with SeededTraining: the loader starts its epoch "
                "over and the RNG streams are not restored, so the resumed run is not exact",
                stacklevel=2,
            )
            return
        if saved.get("seed") != self.seed:
            raise ValueError(
                f"the checkpoint was written with SeededTraining({saved.get('seed')}), "
                f"and this trainer has SeededTraining({self.seed}): the data would differ"
            )
        states = saved["rng"]
        self._pending = states[_rank() % len(states)]

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Install the resumed checkpoint's snapshot, once, right before the first training step."""
        if self._pending is not None:
            from ._snapshot import RNGState, restore  # noqa: PLC0415

            state, self._pending = self._pending, None
            restore(RNGState.from_state_dict(state), strict=False)


def _rank() -> int:
    from ._samples import _world  # noqa: PLC0415

    return _world()[1]


def _gather(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rank's ``state``, in rank order (just this one's without a process group)."""
    from torch import distributed  # noqa: PLC0415

    if not (distributed.is_available() and distributed.is_initialized()):
        return [state]
    states: list[Any] = [None] * distributed.get_world_size()
    distributed.all_gather_object(states, state)
    return states
