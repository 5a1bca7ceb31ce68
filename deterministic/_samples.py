"""Per-sample streams: data randomness that depends only on (seed, epoch, index).

A sample's augmentation normally depends on which worker produced it, in what order, with
how many workers, and on that worker's RNG history. Here every item is computed inside its
own scope, seeded with ``derive_seed(seed, "sample", epoch, index)``: the item is a pure
function of its key, so it is the same with any number of workers, any batch size, any
world size, fork or spawn, persistent workers or not — and a loader can resume in the
middle of an epoch by skipping the keys already handed out.
"""

from __future__ import annotations

import math
from collections import namedtuple

from ._scope import close_scope, deterministic, open_scope
from ._seeds import SeedLike, derive_seed, draw_fresh_seed, resolve_seed

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Iterator, Sized
    from typing import Any

__all__ = ["SampleKey", "SeededDataset", "SeededSampler", "order_seed", "sample_seed"]


if TYPE_CHECKING:
    from typing import NamedTuple

    class SampleKey(NamedTuple):
        """The unit of per-sample randomness: an item of ``index`` in ``epoch``."""

        epoch: int
        index: int  # type: ignore[assignment]  # the name the API promises; it shadows tuple.index

else:
    # collections.namedtuple is what typing.NamedTuple builds, without importing typing.
    SampleKey = namedtuple("SampleKey", ["epoch", "index"])
    SampleKey.__doc__ = "The unit of per-sample randomness: an item of ``index`` in ``epoch``."
    SampleKey.__module__ = "deterministic"


def _effective(seed: SeedLike) -> int:
    effective = resolve_seed(seed)
    return draw_fresh_seed() if effective is None else effective


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Return the seed of one sample: ``derive_seed(seed, "sample", epoch, index)``.

    Args:
        seed: The effective seed of the dataset.
        epoch: The epoch.
        index: The index in the wrapped dataset.

    Returns:
        The seed the item's scope is entered with.
    """
    return derive_seed(seed, "sample", epoch, index)


def order_seed(seed: int, epoch: int) -> int:
    """Return the seed of one epoch's order: ``derive_seed(seed, "order", epoch)``.

    Args:
        seed: The effective seed of the sampler.
        epoch: The epoch.

    Returns:
        The seed of the ``torch.Generator`` that draws the permutation.
    """
    return derive_seed(seed, "order", epoch)


def _check_int(value: object, name: str, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, not {value}")
    return value


def _check_progress(state: object, owner: str, counter: str, limit: int) -> tuple[int, int]:
    """Validate ``{"epoch": e, counter: n}`` with ``n <= limit``; return ``(e, n)``.

    Raises:
        TypeError: If it is not a dict of exactly those two ints.
        ValueError: If a value is negative or ``n`` exceeds ``limit``.
    """
    if not isinstance(state, dict) or set(state) != {"epoch", counter}:
        raise TypeError(f"a {owner} state is a dict with exactly the keys 'epoch' and {counter!r}")
    epoch = _check_int(state["epoch"], "epoch")
    count = _check_int(state[counter], counter)
    if count > limit:
        raise ValueError(f"{counter} {count} is beyond the {limit} per epoch")
    return epoch, count


class SeededDataset:
    """A map-style dataset whose items are computed inside a scope seeded by their key.

    ``ds[SampleKey(e, i)]`` returns ``dataset[i]`` computed inside
    ``deterministic(derive_seed(seed, "sample", e, i))`` (sources only: the determinism
    flags are left alone), so every draw from ``random``, NumPy, torch and registered
    sources made while producing the item depends only on ``(seed, e, i)``. ``ds[i]``
    with a plain int uses the epoch set by :meth:`set_epoch` (default 0). ``len()`` and
    attribute access pass through to the wrapped dataset.

    Args:
        dataset: A map-style dataset (``__getitem__`` with ints; ``__len__`` for bounds).
        seed: As for :class:`~deterministic.deterministic`; ``None`` draws a fresh seed
            once (logged).

    Raises:
        TypeError: If the dataset has no ``__getitem__`` or the seed is not accepted.
    """

    def __init__(self, dataset: Any, seed: SeedLike) -> None:
        if not hasattr(dataset, "__getitem__"):
            raise TypeError(f"SeededDataset needs a map-style dataset, not {type(dataset).__name__}")
        self.dataset = dataset
        self.seed = _effective(seed)
        self.epoch = 0
        # Sources only: a per-item scope need not save and set the determinism flags.
        self._config = deterministic(self.seed, cudnn_deterministic=None, cudnn_benchmark=None)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that plain int indices use.

        Args:
            epoch: A non-negative int.

        Raises:
            TypeError: If it is not an int.
            ValueError: If it is negative.
        """
        self.epoch = _check_int(epoch, "epoch")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "seed", "epoch", "_config") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: SampleKey | int) -> Any:
        """Return the item of ``key`` (a :class:`SampleKey` or an int index), computed in its scope.

        Raises:
            TypeError: If the key is neither a SampleKey nor an int.
            IndexError: If the index is outside the wrapped dataset.
        """
        if isinstance(key, tuple) and len(key) == 2:
            epoch = _check_int(key[0], "SampleKey.epoch")
            index = _check_int(key[1], "SampleKey.index", low=-(2**62))
        elif isinstance(key, int) and not isinstance(key, bool):
            epoch, index = self.epoch, key
        else:
            raise TypeError(
                f"SeededDataset keys are SampleKey(epoch, index) or int, not {type(key).__name__}"
            )
        if hasattr(self.dataset, "__len__"):
            size = len(self.dataset)
            if index < 0:
                index += size
            if not 0 <= index < size:
                raise IndexError(f"index {key!r} is out of range for a dataset of {size} items")
        scope = open_scope(self._config, sample_seed(self.seed, epoch, index))
        try:
            return self.dataset[index]
        finally:
            close_scope(scope)

    def __repr__(self) -> str:
        return f"SeededDataset({self.dataset!r}, seed={self.seed})"


class SeededSampler:
    """Yields the :class:`SampleKey` s of an epoch: a permutation drawn from the seed, split by rank.

    The epoch's global order is a permutation drawn from ``derive_seed(seed, "order",
    epoch)`` (the identity when ``shuffle=False``). With several replicas it is padded
    (repeating its start) or, with ``drop_last``, trimmed to a multiple of
    ``num_replicas``, as ``DistributedSampler`` does, and rank ``r`` takes every
    ``num_replicas``-th key starting at ``r``. The state (:meth:`state_dict`) is the
    epoch and the number of keys this rank has already taken; a sampler loaded from it
    continues with the next key. Iterating to the end resets the position, and
    :meth:`set_epoch` with a new epoch starts that epoch from its beginning.

    Args:
        data_source: The dataset (only its length is used).
        seed: As for :class:`~deterministic.deterministic`; ``None`` draws a fresh seed.
        shuffle: Permute each epoch (else the identity order).
        num_replicas: The number of ranks; ``None`` takes the world size of the
            initialised process group, else 1.
        rank: This rank; ``None`` takes the process group's rank, else 0.
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
        default_replicas, default_rank = _world()
        self.data_source = data_source
        self.seed = _effective(seed)
        self.shuffle = bool(shuffle)
        self.num_replicas = (
            default_replicas if num_replicas is None else _check_int(num_replicas, "num_replicas", 1)
        )
        self.rank = default_rank if rank is None else _check_int(rank, "rank")
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank must lie in [0, {self.num_replicas}), not {self.rank}")
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.position = 0

    def _sizes(self) -> tuple[int, int]:
        """(keys per rank, total keys over all ranks)."""
        size = len(self.data_source)
        if self.drop_last and size % self.num_replicas:
            per_rank = math.ceil((size - self.num_replicas) / self.num_replicas)
        else:
            per_rank = math.ceil(size / self.num_replicas)
        return per_rank, per_rank * self.num_replicas

    def __len__(self) -> int:
        return self._sizes()[0]

    def order(self, epoch: int | None = None) -> list[int]:
        """Return the epoch's global order of indices, padded or trimmed, before the split by rank.

        Args:
            epoch: The epoch; ``None`` for the current one.

        Returns:
            The indices.
        """
        import torch  # noqa: PLC0415 - samplers feed DataLoaders, which need torch

        epoch = self.epoch if epoch is None else epoch
        size = len(self.data_source)
        if self.shuffle:
            generator = torch.Generator().manual_seed(order_seed(self.seed, epoch))
            indices = torch.randperm(size, generator=generator).tolist()
        else:
            indices = list(range(size))
        total = self._sizes()[1]
        if total > len(indices) and indices:
            repeats = math.ceil((total - len(indices)) / len(indices))
            indices += (indices * repeats)[: total - len(indices)]
        return indices[:total]

    def keys(self) -> list[SampleKey]:
        """Return this rank's keys of the current epoch, from the first."""
        order = self.order()
        return [SampleKey(self.epoch, index) for index in order[self.rank :: self.num_replicas]]

    def __iter__(self) -> Iterator[SampleKey]:
        keys = self.keys()
        start = self.position
        for offset, key in enumerate(keys[start:], start=start + 1):
            self.position = offset
            yield key
        self.position = 0  # the epoch is done: iterating again starts it over

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order; a new epoch starts from its first key.

        Setting the epoch the sampler is already in keeps its position, so that
        ``load_state_dict(...)`` followed by the usual ``set_epoch(epoch)`` resumes.

        Args:
            epoch: A non-negative int.
        """
        epoch = _check_int(epoch, "epoch")
        if epoch != self.epoch:
            self.position = 0
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        """Return ``{"epoch": e, "position": p}``: p keys of epoch e were taken on this rank."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict`.

        Args:
            state: ``{"epoch": e, "position": p}``.

        Raises:
            TypeError: If it is not such a dict of ints.
            ValueError: If the position is beyond the epoch.
        """
        epoch, position = _check_progress(state, "SeededSampler", "position", len(self))
        self.epoch, self.position = epoch, position


def _world() -> tuple[int, int]:
    """(world size, rank) of the initialised process group, else (1, 0)."""
    from ._sources import loaded_module  # noqa: PLC0415

    torch: Any = loaded_module("torch")
    if torch is not None:
        distributed = torch.distributed
        if distributed.is_available() and distributed.is_initialized():
            return int(distributed.get_world_size()), int(distributed.get_rank())
    return 1, 0
