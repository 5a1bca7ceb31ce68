"""Seeds for distributed runs: one per rank, or one agreed by every rank."""

from __future__ import annotations

import os

from ._seeds import derive_seed, draw_fresh_seed, resolve_seed
from ._sources import loaded_module

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

__all__ = ["current_rank", "rank_seed", "shared_seed", "synchronize"]


def _process_group() -> Any:
    """Return ``torch.distributed`` if a default process group is initialised, else ``None``."""
    torch: Any = loaded_module("torch")
    if torch is None:
        return None
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed
    return None


def current_rank() -> int:
    """Return this process's rank: ``torch.distributed``'s, else ``$RANK``, else 0.

    Returns:
        The rank.

    Raises:
        ValueError: If ``RANK`` is set to something other than a non-negative int.
    """
    distributed = _process_group()
    if distributed is not None:
        return int(distributed.get_rank())
    value = os.environ.get("RANK")
    if value is None:
        return 0
    try:
        rank = int(value)
    except ValueError:
        rank = -1
    if rank < 0:
        raise ValueError(f"the RANK environment variable must be a non-negative int, not {value!r}")
    return rank


def rank_seed(seed: int | str | bytes, rank: int | None = None) -> int:
    """Return a seed distinct per rank: ``derive_seed(<effective seed>, "rank", rank)``.

    Use it for what must differ between ranks (augmentation, dropout masks of
    data-parallel replicas); use the plain seed, or :func:`shared_seed`, for what must
    agree (model initialisation).

    Args:
        seed: The run's seed, as for :class:`deterministic` (``None`` is not accepted:
            ranks could not agree on it; see :func:`shared_seed`).
        rank: The rank; ``None`` takes the ``torch.distributed`` rank when a process
            group is initialised, else the ``RANK`` environment variable, else 0.

    Returns:
        A seed in ``[0, 2**32)``.

    Raises:
        TypeError: If the seed is ``None`` or not accepted, or the rank is not an int.
        ValueError: If the rank is negative.
    """
    effective = resolve_seed(seed)
    if effective is None:
        raise TypeError(
            "rank_seed() needs a seed; to agree on a fresh one first, use rank_seed(shared_seed())"
        )
    if rank is None:
        rank = current_rank()
    elif not isinstance(rank, int) or isinstance(rank, bool):
        raise TypeError(f"rank must be an int or None, not {type(rank).__name__}")
    elif rank < 0:
        raise ValueError(f"rank must be non-negative, not {rank}")
    return derive_seed(effective, "rank", rank)


def shared_seed(seed: int | str | bytes | None = None, group: Any = None) -> int:
    """Return one seed that every rank agrees on.

    This is a collective when a ``torch.distributed`` process group is initialised:
    **every rank of the group must call it**. The group's first rank resolves the seed
    (drawing a fresh one from OS entropy for ``None``) and broadcasts it, so all ranks
    return its value even if they passed different seeds. The agreed seed is logged on
    the ``deterministic`` logger. Without a process group it returns the local value.

    Args:
        seed: As for :class:`deterministic`; ``None`` draws a fresh seed.
        group: The process group; ``None`` for the default group.

    Returns:
        A seed in ``[0, 2**32)``, the same on every rank.

    Raises:
        TypeError: If the seed is not accepted.
    """
    effective = resolve_seed(seed)
    distributed = _process_group()
    if distributed is None:
        return effective if effective is not None else draw_fresh_seed()
    source = 0 if group is None else int(distributed.get_global_rank(group, 0))
    payload: list[Any] = [None]
    if distributed.get_rank() == source:
        payload[0] = effective if effective is not None else draw_fresh_seed()
    distributed.broadcast_object_list(payload, src=source, group=group)
    agreed = int(payload[0])
    import logging  # noqa: PLC0415 - imported on first use to keep `import deterministic` fast

    logging.getLogger("deterministic").info(
        "deterministic: shared seed %d (from rank %d); pass seed=%d to reproduce", agreed, source, agreed
    )
    return agreed


def synchronize(src: int = 0, group: Any = None) -> None:
    """Give every rank the current RNG states of rank ``src``, as if all had drawn its draws.

    A collective when a ``torch.distributed`` process group is initialised: **every rank
    of the group must call it**. Rank ``src`` takes a :func:`~deterministic.snapshot` of
    every source (Python, NumPy, torch's CPU generator, registered sources, and each
    initialised accelerator device) and broadcasts it; every other rank installs it, the
    accelerator states device by device for the devices both have. Unlike
    :func:`~deterministic.restore` it does not compare ranks or device counts, so it
    neither warns nor needs ``strict=False``. Without a process group it does nothing.

    Args:
        src: The global rank whose states win.
        group: The process group; ``None`` for the default group.

    Raises:
        ValueError: On a rank that lacks a source ``src`` has (not registered, or not
            installed); that rank's states are left unchanged.
    """
    distributed = _process_group()
    if distributed is None:
        return
    from ._snapshot import RNGState, install_from_rank, snapshot  # noqa: PLC0415 - a layer above

    payload: list[Any] = [None]
    if distributed.get_rank() == src:
        payload[0] = snapshot().state_dict()
    distributed.broadcast_object_list(payload, src=src, group=group)
    if distributed.get_rank() != src:
        install_from_rank(RNGState.from_state_dict(payload[0]))
