"""``SeededSampler``: an epoch's keys in a seeded order, split by rank, resumable by samples consumed.

Imports torch at import (it subclasses ``DistributedSampler``), so ``deterministic``
imports this module only when ``deterministic.SeededSampler`` is first used.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data.distributed import DistributedSampler

from ._samples import SampleKey, _check_int, _effective, _world, order_seed
from ._seeds import SeedLike

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sized

__all__ = ["SeededSampler"]

_STATE_KEYS = {"epoch", "samples", "size"}


class SeededSampler(DistributedSampler):  # type: ignore[type-arg]
    """Yields the :class:`SampleKey` s of an epoch: a permutation drawn from the seed, split by rank.

    The epoch's global order is a permutation drawn from ``derive_seed(seed, "order",
    epoch)`` (the identity when ``shuffle=False``). With several replicas it is padded
    (repeating its start) or, with ``drop_last``, trimmed to a multiple of
    ``num_replicas``, as ``DistributedSampler`` does, and rank ``r`` takes every
    ``num_replicas``-th key starting at ``r``.

    Progress is counted in **samples of the epoch's global order consumed by all ranks
    together** (:meth:`state_dict`), so a sampler loaded from a state continues with
    exactly the remaining samples, also with another world size or batch size. Handing
    out an epoch's last key moves the sampler to the start of the next epoch, so a
    loader iterated again without :meth:`set_epoch` gets a new epoch, and a state saved
    right after an epoch reads ``{"epoch": e + 1, "samples": 0}``.

    ``num_replicas`` and ``rank`` left at ``None`` are resolved each time an epoch's
    iterator starts, from the process group initialised by then (else 1 and 0), so a
    sampler built before ``init_process_group`` shards correctly. It is a
    ``DistributedSampler`` subclass so that frameworks which add a distributed sampler
    (Lightning's ``use_distributed_sampler``, accelerate) see that it shards already.

    Args:
        data_source: The dataset (only its length is used).
        seed: As for :class:`~deterministic.deterministic`; ``None`` draws a fresh seed.
        shuffle: Permute each epoch (else the identity order).
        num_replicas: The number of ranks; ``None`` for the process group's world size.
        rank: This rank; ``None`` for the process group's rank.
        drop_last: Trim the order to a multiple of ``num_replicas`` instead of padding.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For a rank outside ``[0, num_replicas)``.
    """

    def __init__(
        self,
        data_source: Sized,
        seed: SeedLike,
        *,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        # DistributedSampler.__init__ is not called: it fixes the ranks at construction,
        # and here they are resolved when an epoch starts.
        replicas = None if num_replicas is None else _check_int(num_replicas, "num_replicas", 1)
        own_rank = None if rank is None else _check_int(rank, "rank")
        if own_rank is not None and replicas is not None and own_rank >= replicas:
            raise ValueError(f"rank must lie in [0, {replicas}), not {own_rank}")
        self.data_source = data_source
        self.dataset = data_source  # type: ignore[assignment]  # DistributedSampler's name for it
        self.seed = _effective(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self._replicas = replicas
        self._rank = own_rank
        self.epoch = 0
        self.samples = 0  # of the epoch's global order, consumed by all ranks together
        # Where the newest self-counting iterator has got to. Kept apart from ``samples``
        # (where a new iterator starts): torchdata restores a finished epoch by starting an
        # iterator, letting it prefetch, and discarding it for a fresh one.
        self._progress: int | None = None
        self._newest: object = None
        # A SeededDataLoader counts the batches it hands out and marks the iteration it
        # drives; any other iteration (a plain or torchdata loader) counts the keys yielded.
        self._driven = False

    def _world(self) -> tuple[int, int]:
        default_replicas, default_rank = _world()
        replicas = default_replicas if self._replicas is None else self._replicas
        rank = default_rank if self._rank is None else self._rank
        if rank >= replicas:
            raise ValueError(f"rank must lie in [0, {replicas}), not {rank}")
        return replicas, rank

    @property
    def num_replicas(self) -> int:  # type: ignore[override]  # resolved when an epoch starts
        """The number of ranks the epoch is split over (resolved now)."""
        return self._world()[0]

    @property
    def rank(self) -> int:  # type: ignore[override]
        """This rank (resolved now)."""
        return self._world()[1]

    def _permutation(self, epoch: int) -> list[int]:
        size = len(self.data_source)
        if not self.shuffle:
            return list(range(size))
        generator = torch.Generator().manual_seed(order_seed(self.seed, epoch))
        indices: list[int] = torch.randperm(size, generator=generator).tolist()
        return indices

    def _remaining(self, epoch: int, samples: int, replicas: int) -> list[int]:
        """The epoch's global order after ``samples``, padded or trimmed to a multiple of ``replicas``.

        Padding repeats the order's start, so for ``samples == 0`` (or any multiple of the
        same ``replicas``) this is exactly ``DistributedSampler``'s padded order's tail.
        """
        order = self._permutation(epoch)
        rest = order[samples:]
        if self.drop_last:
            return rest[: len(rest) - len(rest) % replicas]
        missing = -len(rest) % replicas
        if missing and order:
            rest += (order * math.ceil(missing / len(order)))[:missing]
        return rest

    def order(self, epoch: int | None = None) -> list[int]:
        """Return an epoch's global order from its start, padded or trimmed, before the split by rank.

        Args:
            epoch: The epoch; ``None`` for the current one.

        Returns:
            The indices.
        """
        return self._remaining(self.epoch if epoch is None else epoch, 0, self.num_replicas)

    def keys(self) -> list[SampleKey]:
        """Return this rank's keys still to come in the current epoch."""
        replicas, rank = self._world()
        rest = self._remaining(self.epoch, self.samples, replicas)
        return [SampleKey(self.epoch, index) for index in rest[rank::replicas]]

    def _plan(self) -> tuple[int, int, int, list[SampleKey]]:
        """(epoch, samples at the start, replicas, this rank's keys) for an iterator starting now."""
        replicas, rank = self._world()
        epoch, start = self.epoch, self.samples
        rest = self._remaining(epoch, start, replicas)
        return epoch, start, replicas, [SampleKey(epoch, index) for index in rest[rank::replicas]]

    def _consumed(self, epoch: int, start: int, replicas: int, taken: int, keys: int) -> None:
        """Commit that each rank took ``taken`` of its ``keys`` since ``start``; new iterators go on."""
        if self.epoch != epoch:  # set_epoch was called meanwhile: that epoch wins
            return
        self._progress = None
        if taken >= keys:
            self.epoch, self.samples = epoch + 1, 0
        else:
            self.samples = start + taken * replicas

    def __iter__(self) -> Iterator[SampleKey]:
        epoch, start, replicas, keys = self._plan()
        counts, self._driven = not self._driven, False
        token = object()
        if counts:
            self._newest, self._progress = token, None
        for taken, key in enumerate(keys, start=1):
            if counts and self._newest is token and self.epoch == epoch:
                if taken >= len(keys):  # the epoch is handed out: the next one starts
                    self.epoch, self.samples, self._progress = epoch + 1, 0, None
                else:
                    self._progress = start + taken * replicas
            yield key

    def __len__(self) -> int:
        """Keys per rank in a whole epoch (also while resuming one: frameworks count batches by it)."""
        size, replicas = len(self.data_source), self.num_replicas
        if self.drop_last:
            return size // replicas
        return math.ceil(size / replicas)

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        """``DistributedSampler``'s name for :meth:`__len__`."""
        return len(self)

    @property
    def total_size(self) -> int:  # type: ignore[override]
        """Keys per epoch over all ranks, padding included."""
        return len(self) * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order; a new epoch starts from its first key.

        Setting the epoch the sampler is already in keeps its position, so that
        ``load_state_dict(...)`` followed by the usual ``set_epoch(epoch)`` resumes.

        Args:
            epoch: A non-negative int.

        Raises:
            TypeError: If it is not an int.
            ValueError: If it is negative.
        """
        epoch = _check_int(epoch, "epoch")
        if epoch != self.epoch:
            self.samples, self._progress = 0, None
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        """Return ``{"epoch": e, "samples": n, "size": len(data_source)}``.

        ``n`` samples of epoch ``e``'s global order have been consumed by all ranks together.
        """
        samples = self.samples if self._progress is None else self._progress
        return {"epoch": self.epoch, "samples": samples, "size": len(self.data_source)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after the samples a :meth:`state_dict` counted, with this sampler's world size.

        A state of the previous format (``{"epoch", "position"}``, keys taken by one rank)
        is read with this sampler's world size.

        Args:
            state: ``{"epoch": e, "samples": n, "size": s}``.

        Raises:
            TypeError: If it is not such a dict of ints.
            ValueError: If the dataset's length is not ``s`` (its order, hence the
                remaining samples, would differ) or ``n`` is beyond the epoch.
        """
        size = len(self.data_source)
        self.epoch, self.samples = _read_state(state, size, "SeededSampler", self.num_replicas)
        self._progress = None


def _read_state(state: object, size: int, owner: str, replicas: int, batch_size: int = 1) -> tuple[int, int]:
    """Validate a sampler or loader state; return ``(epoch, samples)``, a finished epoch as the next one.

    Raises:
        TypeError: If it is not a dict of ints with the expected keys.
        ValueError: If it was saved for another dataset length or is beyond the epoch.
    """
    if not isinstance(state, dict):
        raise TypeError(f"a {owner} state is a dict, not {type(state).__name__}")
    keys = set(state)
    if keys == {"epoch", "position"}:  # a SeededSampler's earlier format: keys taken per rank
        epoch, samples = _check_int(state["epoch"], "epoch"), _check_int(state["position"], "position")
        samples *= replicas
    elif keys == {"epoch", "batches"}:  # a SeededDataLoader's earlier format: batches handed out
        epoch, samples = _check_int(state["epoch"], "epoch"), _check_int(state["batches"], "batches")
        samples *= replicas * batch_size
    elif keys == _STATE_KEYS:
        epoch, samples = _check_int(state["epoch"], "epoch"), _check_int(state["samples"], "samples")
        saved = _check_int(state["size"], "size")
        if saved != size:
            raise ValueError(
                f"the {owner} state was saved for a dataset of {saved} samples and this one has {size}: "
                "the epoch's order differs, so the remaining samples cannot be known"
            )
    else:
        raise TypeError(
            f"a {owner} state is a dict with exactly the keys 'epoch', 'samples' and 'size', "
            f"not {sorted(keys)}"
        )
    if samples > size:
        raise ValueError(f"samples {samples} is beyond the {size} samples of an epoch")
    if samples == size:  # every sample was consumed: the epoch is over
        return epoch + 1, 0
    return epoch, samples
