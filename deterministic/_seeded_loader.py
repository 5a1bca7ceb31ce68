"""``SeededDataLoader``: a DataLoader of per-sample streams that resumes exactly mid-epoch.

Imports torch at import, so ``deterministic`` imports this module only when
``deterministic.SeededDataLoader`` is first used.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from ._samples import SeededDataset, SeededSampler, _check_int, _check_progress, _effective
from ._seeds import SeedLike, derive_seed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["SeededDataLoader"]


class SeededDataLoader(DataLoader):  # type: ignore[type-arg]
    """A ``DataLoader`` over a :class:`SeededDataset` in the order of a :class:`SeededSampler`.

    Every item is a pure function of ``(seed, epoch, index)``, so batches are the same
    with any ``num_workers``, ``persistent_workers``, ``prefetch_factor``, fork or spawn.
    The loader has its own ``torch.Generator`` (seeded ``derive_seed(seed, "loader")``),
    so creating an iterator never draws from the global torch RNG. :meth:`state_dict`
    counts the batches handed to the caller in this epoch; a loader loaded from it (in a
    fresh process too) yields exactly the batches the uninterrupted loader would have
    yielded next. Call :meth:`set_epoch` at the start of each epoch, as with
    ``DistributedSampler``. Other keywords (``num_workers``, ``collate_fn``,
    ``pin_memory``, ...) pass through to ``DataLoader``.

    Args:
        dataset: A map-style dataset (wrapped in a :class:`SeededDataset` unless it is one).
        seed: As for :class:`~deterministic.deterministic`; ``None`` draws a fresh seed.
        batch_size: Items per batch.
        shuffle: Permute each epoch.
        num_replicas: Ranks sharing the epoch (``None``: the process group's world size, else 1).
        rank: This rank (``None``: the process group's rank, else 0).
        drop_last: Trim to a multiple of ``num_replicas`` and drop an incomplete last batch.
        **dataloader_kwargs: Passed to ``DataLoader``.

    Raises:
        ValueError: If ``sampler``, ``batch_sampler`` or ``generator`` is given: the loader
            makes its own.
    """

    def __init__(
        self,
        dataset: Any,
        seed: SeedLike,
        *,
        batch_size: int = 1,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        **dataloader_kwargs: Any,
    ) -> None:
        for name in ("sampler", "batch_sampler", "generator", "shuffle"):
            if name in dataloader_kwargs:
                raise ValueError(
                    f"SeededDataLoader makes its own sampler and generator; {name}= cannot be given "
                    f"(order and sharding come from seed, shuffle=, num_replicas=, rank= and drop_last=)"
                )
        effective = dataset.seed if isinstance(dataset, SeededDataset) else _effective(seed)
        seeded = dataset if isinstance(dataset, SeededDataset) else SeededDataset(dataset, effective)
        sampler = SeededSampler(
            seeded, effective, shuffle=shuffle, num_replicas=num_replicas, rank=rank, drop_last=drop_last
        )
        generator = torch.Generator().manual_seed(derive_seed(effective, "loader"))
        dataset_for_loader: Any = seeded  # map-style by protocol, not a torch Dataset subclass
        super().__init__(
            dataset_for_loader,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            generator=generator,
            **dataloader_kwargs,
        )
        self.seeded_sampler = sampler
        self.seeded_dataset = seeded
        self._handed_out = 0  # batches of the current epoch handed to the caller

    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self.seeded_sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` (from its first batch, unless the loader is already in it).

        Args:
            epoch: A non-negative int.
        """
        epoch = _check_int(epoch, "epoch")
        if epoch != self.seeded_sampler.epoch:
            self._handed_out = 0
        self.seeded_sampler.set_epoch(epoch)
        self.seeded_dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        # The sampler may run ahead (workers prefetch); the position handed out is what counts.
        self.seeded_sampler.position = self._handed_out * int(self.batch_size or 1)
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch
        self._handed_out = 0

    def state_dict(self) -> dict[str, int]:
        """Return ``{"epoch": e, "batches": b}``: b batches of epoch e were handed to the caller."""
        return {"epoch": self.seeded_sampler.epoch, "batches": self._handed_out}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after the batches a :meth:`state_dict` counted.

        Args:
            state: ``{"epoch": e, "batches": b}``.

        Raises:
            TypeError: If it is not such a dict of ints.
            ValueError: If ``b`` is beyond the epoch's batches.
        """
        epoch, batches = _check_progress(state, "SeededDataLoader", "batches", len(self))
        self.seeded_sampler.load_state_dict({"epoch": epoch, "position": 0})
        self.seeded_dataset.set_epoch(epoch)
        self._handed_out = batches
