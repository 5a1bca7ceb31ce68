"""``SeededDataLoader``: a DataLoader of per-sample streams that resumes exactly mid-epoch.

Imports torch at import, so ``deterministic`` imports this module only when
``deterministic.SeededDataLoader`` is first used.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)
from torch.utils.data._utils.collate import default_collate

from ._samples import SeededDataset, _check_int, _effective
from ._scope import close_scope, deterministic, open_scope
from ._seeded_sampler import SeededSampler, _read_state
from ._seeds import SeedLike, derive_seed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["SeededDataLoader"]


class _SeededCollate:
    """Runs ``collate_fn`` inside a scope keyed by the batch's sample keys.

    A worker's global RNG otherwise depends on which batches that worker collated before,
    which changes with the number of workers and when a loader resumes mid-epoch.
    Module-level, so that spawned workers can unpickle it.
    """

    def __init__(self, collate_fn: Callable[[Any], Any], seed: int) -> None:
        self.collate_fn = collate_fn
        self.seed = seed
        self._config = deterministic(seed, cudnn_deterministic=None, cudnn_benchmark=None)

    def __call__(self, items: Any) -> Any:
        keys = getattr(items, "keys", None)
        if not isinstance(keys, list):  # not fetched through SeededDataset.__getitems__
            return self.collate_fn(items)
        flat = array("q", [number for key in keys for number in key]).tobytes()
        scope = open_scope(self._config, derive_seed(self.seed, "batch", flat))
        try:
            return self.collate_fn(items)
        finally:
            close_scope(scope)


class _SeededBatchSampler(BatchSampler):
    """The loader's batches of keys, stateful through its :class:`SeededSampler`.

    torchdata's ``StatefulDataLoader`` (which accelerate builds with
    ``use_stateful_dataloader=True``) saves and loads a stateful batch sampler's state;
    a stateless one it replays by iterating it, which would count as consumption.
    """

    sampler: SeededSampler

    def state_dict(self) -> dict[str, int]:
        """The sampler's state."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Load the sampler's state."""
        self.sampler.load_state_dict(state)


class SeededDataLoader(DataLoader):  # type: ignore[type-arg]
    """A ``DataLoader`` over a :class:`SeededDataset` in the order of a :class:`SeededSampler`.

    Every item is a pure function of ``(seed, epoch, index)``, and ``collate_fn`` runs in a
    scope keyed by the batch's keys, so batches are the same with any ``num_workers``,
    ``persistent_workers``, ``prefetch_factor``, fork or spawn. The loader has its own
    ``torch.Generator`` (seeded ``derive_seed(seed, "loader")``), so creating an iterator
    never draws from the global torch RNG.

    The epoch and the progress live in the sampler (``loader.sampler``), so
    ``set_epoch`` on the loader or on its sampler (as Lightning and accelerate do) is the
    same. :meth:`state_dict` counts the samples of the epoch's global order handed to the
    caller (all ranks together; workers may have prefetched more, which does not count);
    a loader loaded from it, in a fresh process, with another batch size or world size,
    yields exactly the remaining samples. Handing out an epoch's last batch moves the
    loader to the start of the next epoch, whether or not the iterator is exhausted, so a
    loader iterated again without ``set_epoch`` gets the next epoch. Other keywords
    (``num_workers``, ``collate_fn``, ``pin_memory``, ...) pass through to ``DataLoader``.

    Args:
        dataset: A map-style dataset (wrapped in a :class:`SeededDataset` unless it is one).
        seed: As for :class:`~deterministic.deterministic`; ``None`` draws a fresh seed.
        batch_size: Items per batch (per rank).
        shuffle: Permute each epoch.
        num_replicas: Ranks sharing the epoch (``None``: the process group's world size
            when an epoch's iterator starts, else 1).
        rank: This rank (``None``: the process group's rank then, else 0).
        drop_last: Trim to a multiple of ``num_replicas`` and drop an incomplete last batch.
        **dataloader_kwargs: Passed to ``DataLoader``.

    Raises:
        ValueError: If ``sampler``, ``batch_sampler`` or ``generator`` is given: the loader
            makes its own.
        TypeError: If the dataset is an ``IterableDataset`` or not map-style.
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
        if isinstance(dataset, IterableDataset):
            SeededDataset(dataset, 0)  # raises the TypeError that explains what to do instead
        batch_size = _check_int(batch_size, "batch_size", 1)
        effective = dataset.seed if isinstance(dataset, SeededDataset) else _effective(seed)
        seeded = dataset if isinstance(dataset, SeededDataset) else SeededDataset(dataset, effective)
        sampler = SeededSampler(
            seeded, effective, shuffle=shuffle, num_replicas=num_replicas, rank=rank, drop_last=drop_last
        )
        collate_fn = dataloader_kwargs.pop("collate_fn", None) or default_collate
        generator = torch.Generator().manual_seed(derive_seed(effective, "loader"))
        dataset_for_loader: Any = seeded  # map-style by protocol, not a torch Dataset subclass
        super().__init__(
            dataset_for_loader,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            generator=generator,
            collate_fn=_SeededCollate(collate_fn, effective),
            **dataloader_kwargs,
        )
        # DataLoader refuses a new batch_sampler after __init__; this one batches alike.
        object.__setattr__(self, "batch_sampler", _SeededBatchSampler(sampler, batch_size, drop_last))
        self.seed = effective
        self.shuffle = bool(shuffle)
        self.seeded_sampler = sampler
        self.seeded_dataset = seeded
        self._iterator_number = 0  # only the newest iterator moves the progress

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self.seeded_sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` (from its first batch, unless the loader is already in it).

        Args:
            epoch: A non-negative int.

        Raises:
            TypeError: If it is not an int.
            ValueError: If it is negative.
        """
        self.seeded_sampler.set_epoch(epoch)
        self.seeded_dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self._iterator_number += 1
        return self._batches(self._iterator_number)

    def _batches(self, number: int) -> Iterator[Any]:
        sampler = self.seeded_sampler
        epoch, start, replicas, keys = sampler._plan()
        batch_size = int(self.batch_size or 1)
        batches = len(keys) // batch_size if self.drop_last else math.ceil(len(keys) / batch_size)
        if epoch != self.seeded_dataset.epoch:
            self.seeded_dataset.set_epoch(epoch)
        # The loader counts what it hands out, not what workers prefetch: the sampler's
        # iteration that this iterator starts must not count itself.
        sampler._driven = True
        try:
            batches_out = super().__iter__()
        except BaseException:
            sampler._driven = False  # no iteration of the sampler started to take the mark
            raise
        for handed_out, batch in enumerate(batches_out, start=1):
            # Recorded before the batch is handed out: a loop stopped after len(loader)
            # batches (Lightning does that) never resumes this generator.
            if number == self._iterator_number:
                taken = len(keys) if handed_out >= batches else handed_out * batch_size
                sampler._consumed(epoch, start, replicas, taken, len(keys))
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Return ``{"epoch": e, "samples": n, "size": s}``: n samples of epoch e were handed out.

        ``n`` counts the epoch's global order over all ranks, ``s`` is the dataset's length.
        """
        return self.seeded_sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after the samples a :meth:`state_dict` counted.

        The state may come from a loader with another batch size or world size: the
        remaining samples of the epoch's order are split over this loader's ranks. A state
        of the previous format (``{"epoch", "batches"}``) is read with this loader's batch
        size and world size.

        Args:
            state: ``{"epoch": e, "samples": n, "size": s}``.

        Raises:
            TypeError: If it is not such a dict of ints.
            ValueError: If the dataset's length is not ``s``, or ``n`` is beyond the epoch.
        """
        sampler = self.seeded_sampler
        size, batch_size = len(self.seeded_dataset), int(self.batch_size or 1)
        epoch, samples = _read_state(state, size, "SeededDataLoader", sampler.num_replicas, batch_size)
        sampler.epoch, sampler.samples, sampler._progress = epoch, samples, None
        self.seeded_dataset.set_epoch(epoch)


# DataLoader settings a rebuilt loader keeps; the order, sharding and generator are replaced.
_KEPT = (
    "num_workers",
    "collate_fn",
    "pin_memory",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "persistent_workers",
    "pin_memory_device",
    "in_order",
)


def seeded_like(loader: Any, seed: SeedLike) -> SeededDataLoader | str:  # noqa: PLR0911 - one reason each
    """Rebuild a map-style ``DataLoader`` as a :class:`SeededDataLoader` with the same settings.

    Keeps the dataset, batch size, ``drop_last``, workers, ``collate_fn`` and the other
    settings; shuffles when the loader shuffled (a ``RandomSampler``, or a shuffling
    ``DistributedSampler``). A ``SeededDataLoader`` is returned as it is.

    Args:
        loader: The loader to rebuild.
        seed: The new loader's seed.

    Returns:
        The new loader, or, where it cannot be made exact, the reason why.
    """
    if isinstance(loader, SeededDataLoader):
        return loader
    if not isinstance(loader, DataLoader):
        return f"it is a {type(loader).__name__}, not a torch DataLoader"
    if isinstance(loader.dataset, IterableDataset):
        return "its dataset is an IterableDataset, whose items have no index to key their randomness by"
    if loader.batch_sampler is None:
        return "it does not batch (batch_size=None)"
    if type(loader.batch_sampler) is not BatchSampler:
        return f"its batch sampler is a custom {type(loader.batch_sampler).__name__}"
    sampler = loader.sampler
    if type(sampler) is RandomSampler and not sampler.replacement and sampler._num_samples is None:
        shuffle = True
    elif type(sampler) is SequentialSampler:
        shuffle = False
    elif type(sampler) is DistributedSampler:
        shuffle = bool(sampler.shuffle)
    else:
        return f"its sampler is a {type(sampler).__name__}, whose order cannot be reproduced per sample"
    kept = {name: getattr(loader, name) for name in _KEPT if hasattr(loader, name)}
    if loader.num_workers > 0:
        kept["prefetch_factor"] = loader.prefetch_factor
    else:
        kept.pop("persistent_workers", None)
    batch_size: int = loader.batch_size or 1
    return SeededDataLoader(
        loader.dataset, seed, batch_size=batch_size, shuffle=shuffle, drop_last=loader.drop_last, **kept
    )
