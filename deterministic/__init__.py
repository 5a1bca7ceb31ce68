"""Scoped, exact and testable randomness for deep-learning code."""

from ._distributed import rank_seed, shared_seed, synchronize
from ._loading import dataloader_kwargs, seed_worker
from ._samples import SampleKey, SeededDataset, SeededSampler
from ._scope import Scope, deterministic
from ._seeds import derive_seed
from ._snapshot import RNGState, restore, snapshot
from ._sources import register_source, unregister_source
from ._version import __version__
from ._wrappers import seeded

TYPE_CHECKING = False

__all__ = [
    "Divergence",
    "RNGState",
    "SampleKey",
    "Scope",
    "SeededDataLoader",
    "SeededDataset",
    "SeededSampler",
    "__version__",
    "dataloader_kwargs",
    "derive_seed",
    "deterministic",
    "first_divergence",
    "rank_seed",
    "register_source",
    "restore",
    "seed_worker",
    "seeded",
    "shared_seed",
    "snapshot",
    "synchronize",
    "trace",
    "unregister_source",
]


if TYPE_CHECKING:
    from ._seeded_loader import SeededDataLoader
    from ._trace import Divergence, first_divergence, trace


def __getattr__(name: str) -> object:
    """Re-export ``SeededDataLoader`` and the tracer on first use, keeping ``import deterministic`` light.

    ``SeededDataLoader`` subclasses torch's DataLoader, so it imports torch; the tracer's
    modules cost milliseconds to import and are only needed by those who trace.
    """
    if name == "SeededDataLoader":
        from ._seeded_loader import SeededDataLoader  # noqa: PLC0415

        return SeededDataLoader
    if name in ("Divergence", "first_divergence", "trace"):
        from . import _trace  # noqa: PLC0415

        return getattr(_trace, name)
    raise AttributeError(f"module 'deterministic' has no attribute {name!r}")
