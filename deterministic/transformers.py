"""transformers integration: evaluation that cannot perturb training, and exact resume.

Import it explicitly (``from deterministic.transformers import seed_training``); importing
``deterministic`` never imports transformers, and neither does this module: it works on
the ``Trainer`` object it is given.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from ._scope import deterministic
from ._seeds import derive_seed

__all__ = ["seed_evaluation", "seed_training"]

_METHODS = ("evaluate", "predict")
_STATE_FILE = "deterministic_{rank}.pt"


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


def seed_training(trainer: Any, seed: Any) -> Any:
    """Make ``trainer.train(resume_from_checkpoint=...)`` continue bit for bit where a checkpoint left off.

    Call it once, before ``train()``. On this trainer object it:

    - builds the training DataLoader as a :class:`~deterministic.SeededDataLoader` seeded
      with ``seed`` (the trainer's dataset with unused columns removed, its collator, batch
      size, ``dataloader_*`` settings and ``drop_last``), so every item, its augmentation
      and the collator's randomness depend only on ``(seed, epoch, index)``; the loader is
      used as it is (not through ``accelerator.prepare``, which would rebuild it as a
      plain loader): its sampler shards by rank, and the trainer moves batches to the
      device;
    - saves, with every checkpoint, a file ``deterministic_<rank>.pt`` holding the loader's
      position and a snapshot of the rank's RNG states (dropout and the like);
    - on resume, loads both where the trainer restores its own RNG state, right before
      the resumed epoch's iterator is created, and sets ``args.ignore_data_skip = True``:
      the loader continues with exactly the remaining samples itself, instead of the
      trainer skipping batches of a fresh iterator (which loses the epoch);
    - runs evaluation in a scope seeded ``derive_seed(seed, "evaluation")``, as
      :func:`seed_evaluation` does, unless that was called already.

    Where the trainer samples by length (``train_sampling_strategy`` other than
    ``"random"`` or ``"sequential"``) or the dataset is iterable, the loader cannot be
    made exact: it warns and keeps the trainer's loader (the RNG snapshot is still saved
    and restored). Calling it again changes nothing.

    Args:
        trainer: A ``transformers.Trainer``.
        seed: The training data's seed; as for :class:`~deterministic.deterministic`
            (``None`` draws one fresh seed, logged).

    Returns:
        The same trainer, for chaining.

    Raises:
        TypeError: For a seed that is refused, or an object that is not a ``Trainer``.
        ValueError: Likewise for values.
    """
    from ._samples import _effective  # noqa: PLC0415

    for name in ("get_train_dataloader", "_load_rng_state", "add_callback", "evaluate", "predict"):
        if not callable(getattr(trainer, name, None)):
            raise TypeError(f"seed_training() needs a transformers Trainer, not {type(trainer).__name__}")
    if "_load_rng_state" in vars(trainer):  # set up already
        return trainer
    effective = _effective(seed)
    seed_evaluation(trainer, derive_seed(effective, "evaluation"))
    state = _TrainingState(trainer, effective)
    trainer.get_train_dataloader = state.train_dataloader
    trainer._load_rng_state = state.load
    trainer.add_callback(_saving_callback(state))
    trainer.args.ignore_data_skip = True
    return trainer


class _TrainingState:
    """What ``seed_training`` keeps for one trainer: the seed, the original methods, the loader."""

    def __init__(self, trainer: Any, seed: int) -> None:
        self.trainer = trainer
        self.seed = seed
        self.original_dataloader = trainer.get_train_dataloader
        self.original_load = trainer._load_rng_state
        self.loader: Any = None

    def train_dataloader(self) -> Any:
        """The trainer's training DataLoader, rebuilt as a SeededDataLoader where it can be."""
        trainer, args = self.trainer, self.trainer.args
        dataset, collator = trainer.train_dataset, trainer.data_collator
        reason = None
        if dataset is None:
            reason = "there is no train_dataset"
        elif getattr(args, "train_sampling_strategy", "random") not in ("random", "sequential"):
            reason = f"train_sampling_strategy={args.train_sampling_strategy!r} orders batches by length"
        elif hasattr(dataset, "__iter__") and not hasattr(dataset, "__getitem__"):
            reason = "the train_dataset is iterable, with no index to key its randomness by"
        else:
            import torch  # noqa: PLC0415

            if isinstance(dataset, torch.utils.data.IterableDataset):
                reason = "the train_dataset is an IterableDataset, with no index to key its randomness by"
        if reason is not None:
            message = f"seed_training cannot make the training data exact on resume: {reason}"
            warnings.warn(message, stacklevel=2)
            self.loader = None
            return self.original_dataloader()
        from ._seeded_loader import SeededDataLoader  # noqa: PLC0415 - imports torch

        datasets: Any = sys.modules.get("datasets")  # imported already if the dataset is one of its
        if datasets is not None and isinstance(dataset, datasets.Dataset):
            dataset = trainer._remove_unused_columns(dataset, description="training")
        else:
            collator = trainer._get_collator_with_removed_columns(collator, description="training")
        workers = int(args.dataloader_num_workers)
        extra: dict[str, Any] = {"pin_memory": bool(args.dataloader_pin_memory)}
        if workers:
            extra["persistent_workers"] = bool(args.dataloader_persistent_workers)
            extra["prefetch_factor"] = args.dataloader_prefetch_factor
            extra["multiprocessing_context"] = args.dataloader_multiprocessing_context
        self.loader = SeededDataLoader(
            dataset,
            self.seed,
            batch_size=trainer._train_batch_size,
            shuffle=args.train_sampling_strategy != "sequential",
            drop_last=bool(args.dataloader_drop_last),
            collate_fn=collator,
            num_workers=workers,
            **extra,
        )
        return self.loader

    def save(self, checkpoint: str) -> None:
        """Write this rank's loader position and RNG snapshot into a checkpoint folder."""
        import torch  # noqa: PLC0415

        from ._snapshot import snapshot  # noqa: PLC0415

        saved = {
            "seed": self.seed,
            "loader": None if self.loader is None else self.loader.state_dict(),
            "rng": snapshot().state_dict(),
        }
        torch.save(saved, os.path.join(checkpoint, _STATE_FILE.format(rank=_rank(self.trainer))))

    def load(self, checkpoint: str | None) -> None:
        """Restore the trainer's RNG state, then this rank's loader position and snapshot."""
        self.original_load(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, _STATE_FILE.format(rank=_rank(self.trainer)))
        if not os.path.isfile(path):
            warnings.warn(
                f"{path} does not exist: the checkpoint was not written with seed_training, "
                "so the data and RNG streams cannot resume exactly",
                stacklevel=2,
            )
            return
        import torch  # noqa: PLC0415

        from ._snapshot import RNGState, restore  # noqa: PLC0415

        saved = torch.load(path, weights_only=True)
        if saved["seed"] != self.seed:
            raise ValueError(
                f"the checkpoint was written with seed_training(trainer, {saved['seed']}), "
                f"and this trainer has seed {self.seed}: the data would differ"
            )
        if self.loader is not None and saved["loader"] is not None:
            self.loader.load_state_dict(saved["loader"])
        restore(RNGState.from_state_dict(saved["rng"]), strict=False)


def _rank(trainer: Any) -> int:
    return int(getattr(trainer.args, "process_index", 0))


def _saving_callback(training: _TrainingState) -> Any:
    """A ``TrainerCallback`` that saves ``training`` into each checkpoint folder the trainer writes."""
    from transformers import TrainerCallback  # noqa: PLC0415 - the trainer imported it already

    class SeededTrainingCallback(TrainerCallback):
        """Saves the loader's position and the RNG snapshot with every checkpoint."""

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(folder):
                training.save(folder)

    return SeededTrainingCallback()
