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

__all__ = [
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
    "rank_seed",
    "register_source",
    "restore",
    "seed_worker",
    "seeded",
    "shared_seed",
    "snapshot",
    "synchronize",
    "unregister_source",
]


def __getattr__(name: str) -> object:
    """Re-export ``SeededDataLoader`` on first use: it subclasses torch's DataLoader, so it imports torch."""
    if name == "SeededDataLoader":
        from ._seeded_loader import SeededDataLoader  # noqa: PLC0415 - keeps `import deterministic` light

        return SeededDataLoader
    raise AttributeError(f"module 'deterministic' has no attribute {name!r}")
