"""DataLoader seeding: per-worker seeds derived from the loader's seed, rank and worker."""

from __future__ import annotations

from ._distributed import current_rank
from ._seeds import derive_seed, draw_fresh_seed, resolve_seed
from ._sources import SOURCES, AcceleratorSource, loaded_module

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dataloader_kwargs", "seed_worker", "worker_seed"]


def worker_seed(base_seed: int, worker_id: int, rank: int) -> int:
    """Return the seed ``seed_worker`` uses: ``derive_seed(base_seed, "worker", worker_id, rank)``.

    Args:
        base_seed: The DataLoader iterator's base seed (``WorkerInfo.seed - worker_id``).
        worker_id: The worker's id.
        rank: The process's rank.

    Returns:
        A seed in ``[0, 2**32)``.
    """
    return derive_seed(base_seed, "worker", worker_id, rank)


def seed_worker(worker_id: int) -> None:
    """Seed a DataLoader worker: pass as ``worker_init_fn`` (or use :func:`dataloader_kwargs`).

    In a worker process it seeds ``random``, NumPy's global generator (when
    ``numpy.random`` is imported), torch's CPU generator and every registered source with
    :func:`worker_seed` of the iterator's base seed, the worker id and the rank. So
    workers differ from each other, from the same worker on other ranks and from other
    epochs (each iterator draws a new base seed from the loader's generator), and two runs
    whose loaders have the same seed are identical. Torch's own per-worker seeding
    (``base_seed + worker_id``) repeats across ranks that share a loader seed, which is
    why torch is reseeded too.

    In a thread-based worker (``WorkerInfo.worker_method == "thread"``) it changes
    nothing: the process-global generators are shared with the other workers. Draw from
    ``torch.random.thread_safe_generator()`` there, or from a scope's explicit generators
    (``scope.torch_generator()``, ``scope.numpy_generator()``, ``scope.random()``).

    Args:
        worker_id: The worker id DataLoader passes.

    Raises:
        RuntimeError: If called outside a DataLoader worker.
    """
    torch: Any = loaded_module("torch")
    info = None if torch is None else torch.utils.data.get_worker_info()
    if info is None:
        raise RuntimeError("seed_worker() is a DataLoader worker_init_fn; call it only inside a worker")
    if getattr(info, "worker_method", "multiprocessing") == "thread":
        return
    seed = worker_seed(info.seed - info.id, info.id, current_rank())
    for source in tuple(SOURCES.values()):
        # Workers never own accelerator state: seeding it would initialise the device.
        if not isinstance(source, AcceleratorSource) and source.available():
            source.seed(seed)


def dataloader_kwargs(seed: int | str | bytes | None, *, epoch: int | None = None) -> dict[str, Any]:
    """Return ``{"generator": <seeded torch.Generator>, "worker_init_fn": seed_worker}``.

    Splat it into ``DataLoader(...)``. The generator is seeded with the effective seed
    (``epoch=None``) or with ``derive_seed(seed, "epoch", epoch)``, for loaders rebuilt
    every epoch. The generator decides the shuffling order and each iterator's base seed,
    from which :func:`seed_worker` derives the workers' seeds.

    Args:
        seed: As for :class:`deterministic`; ``None`` draws a fresh seed (logged).
        epoch: A non-negative epoch number to mix in, or ``None``.

    Returns:
        The keyword arguments.

    Raises:
        TypeError: If the seed or epoch has a type that is not accepted.
        ValueError: If the epoch is negative.
    """
    import torch  # noqa: PLC0415 - a DataLoader needs torch anyway

    effective = resolve_seed(seed)
    if effective is None:
        effective = draw_fresh_seed()
    if epoch is not None:
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise TypeError(f"epoch must be an int or None, not {type(epoch).__name__}")
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, not {epoch}")
        effective = derive_seed(effective, "epoch", epoch)
    generator = torch.Generator()
    generator.manual_seed(effective)
    return {"generator": generator, "worker_init_fn": seed_worker}
