"""Per-sample streams: data randomness that depends only on (seed, epoch, index).

A sample's augmentation normally depends on which worker produced it, in what order, with
how many workers, and on that worker's RNG history. Here every item is computed inside its
own scope, seeded with ``derive_seed(seed, "sample", epoch, index)``: the item is a pure
function of its key, so it is the same with any number of workers, any batch size, any
world size, fork or spawn, persistent workers or not — and a loader can resume in the
middle of an epoch by skipping the keys already handed out.
"""

from __future__ import annotations

from collections import namedtuple

from ._scope import close_scope, deterministic, open_scope
from ._seeds import SeedLike, derive_seed, draw_fresh_seed, resolve_seed

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["SampleKey", "SeededDataset", "order_seed", "sample_seed"]


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


class _Items(list["Any"]):
    """A batch's items, with the keys they were computed for: what the loader's collate scope is keyed by."""

    __slots__ = ("keys",)


def _shared_epoch(epoch: int) -> Any:
    """An int in shared memory: DataLoader workers, persistent ones included, read the epoch set later."""
    from multiprocessing.sharedctypes import RawValue  # noqa: PLC0415 - only datasets need it

    return RawValue("q", epoch)


class SeededDataset:
    """A map-style dataset whose items are computed inside a scope seeded by their key.

    ``ds[SampleKey(e, i)]`` returns ``dataset[i]`` computed inside
    ``deterministic(derive_seed(seed, "sample", e, i))`` (sources only: the determinism
    flags are left alone), so every draw from ``random``, NumPy, torch and registered
    sources made while producing the item depends only on ``(seed, e, i)``. ``ds[i]``
    with a plain int uses the epoch set by :meth:`set_epoch` (default 0); the epoch lives
    in shared memory, so DataLoader workers started earlier (``persistent_workers=True``)
    see it too. ``len()`` and attribute access pass through to the wrapped dataset.

    Args:
        dataset: A map-style dataset (``__getitem__`` with ints; ``__len__`` for bounds).
        seed: As for :class:`~deterministic.deterministic`; ``None`` draws a fresh seed
            once (logged).

    Raises:
        TypeError: If the dataset has no ``__getitem__``, is a torch ``IterableDataset``,
            or the seed is not accepted.
    """

    def __init__(self, dataset: Any, seed: SeedLike) -> None:
        _check_map_style(dataset)
        self.dataset = dataset
        self.seed = _effective(seed)
        self._epoch = _shared_epoch(0)
        # Sources only: a per-item scope need not save and set the determinism flags.
        self._config = deterministic(self.seed, cudnn_deterministic=None, cudnn_benchmark=None)

    @property
    def epoch(self) -> int:
        """The epoch that plain int indices use."""
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that plain int indices use, in this process and in its DataLoader workers.

        Args:
            epoch: A non-negative int.

        Raises:
            TypeError: If it is not an int.
            ValueError: If it is negative.
        """
        self._epoch.value = _check_int(epoch, "epoch")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        from multiprocessing.context import get_spawning_popen  # noqa: PLC0415

        if get_spawning_popen() is None:
            # Shared memory travels only to a process being started (a spawned DataLoader
            # worker); a copy or a pickle elsewhere gets its own epoch.
            state["_epoch"] = self.epoch
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["_epoch"], int):
            state["_epoch"] = _shared_epoch(state["_epoch"])
        vars(self).update(state)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "seed", "_epoch", "_config") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _key(self, key: SampleKey | int) -> tuple[int, int]:
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
        return epoch, index

    def __getitem__(self, key: SampleKey | int) -> Any:
        """Return the item of ``key`` (a :class:`SampleKey` or an int index), computed in its scope.

        Raises:
            TypeError: If the key is neither a SampleKey nor an int.
            IndexError: If the index is outside the wrapped dataset.
        """
        epoch, index = self._key(key)
        scope = open_scope(self._config, sample_seed(self.seed, epoch, index))
        try:
            return self.dataset[index]
        finally:
            close_scope(scope)

    def __getitems__(self, keys: Iterable[SampleKey | int]) -> list[Any]:
        """Return the items of a batch of keys, each computed in its own scope, remembering the keys.

        DataLoader fetches a batch through this method; the keys let a
        :class:`~deterministic.SeededDataLoader` seed the batch's ``collate_fn``.
        """
        resolved = [self._key(key) for key in keys]
        items = _Items(self[SampleKey(*key)] for key in resolved)
        items.keys = resolved  # type: ignore[attr-defined]  # a __slots__ entry mypy does not see
        return items

    def __repr__(self) -> str:
        return f"SeededDataset({self.dataset!r}, seed={self.seed})"


def _check_map_style(dataset: Any) -> None:
    """Refuse what has no index to key a sample by: non-indexable objects and iterable datasets."""
    from ._sources import loaded_module  # noqa: PLC0415

    torch: Any = loaded_module("torch")
    if torch is not None and isinstance(dataset, torch.utils.data.IterableDataset):
        raise TypeError(
            f"SeededDataset needs a map-style dataset; {type(dataset).__name__} is an IterableDataset, "
            "whose items have no index to key their randomness by. Give each record an explicit key "
            "(its shard and position in the shard, or a stable id) and draw from "
            "torch.Generator().manual_seed(derive_seed(seed, 'sample', epoch, *key)), or open "
            "`with deterministic(derive_seed(seed, 'sample', epoch, *key)):` around its augmentation"
        )
    if not hasattr(dataset, "__getitem__"):
        raise TypeError(f"SeededDataset needs a map-style dataset, not {type(dataset).__name__}")


def _world() -> tuple[int, int]:
    """(world size, rank) of the initialised process group, else (1, 0)."""
    from ._sources import loaded_module  # noqa: PLC0415

    torch: Any = loaded_module("torch")
    if torch is not None:
        distributed = torch.distributed
        if distributed.is_available() and distributed.is_initialized():
            return int(distributed.get_world_size()), int(distributed.get_rank())
    return 1, 0
