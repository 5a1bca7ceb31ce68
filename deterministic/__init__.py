"""Scoped, exact and testable randomness for deep-learning code."""

# Only what seeding a process needs is imported here: every Python child of a program
# under `run` imports the package at startup. The rest is re-exported on first use.
from ._scope import Scope, deterministic
from ._seeds import derive_seed
from ._sources import register_source, unregister_source
from ._version import __version__

TYPE_CHECKING = False

__all__ = [
    "BatchDivergence",
    "Divergence",
    "RNGState",
    "SampleKey",
    "Scope",
    "SeededDataLoader",
    "SeededDataset",
    "SeededSampler",
    "TracedCompileWarning",
    "__version__",
    "batch_divergence",
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
    from ._distributed import rank_seed, shared_seed, synchronize
    from ._loading import dataloader_kwargs, seed_worker
    from ._samples import SampleKey, SeededDataset
    from ._seeded_loader import SeededDataLoader
    from ._seeded_sampler import SeededSampler
    from ._snapshot import RNGState, restore, snapshot
    from ._trace import (
        BatchDivergence,
        Divergence,
        TracedCompileWarning,
        batch_divergence,
        first_divergence,
        trace,
    )
    from ._wrappers import seeded

# The module that defines each name re-exported on first use.
_LAZY = {
    "rank_seed": "_distributed",
    "shared_seed": "_distributed",
    "synchronize": "_distributed",
    "dataloader_kwargs": "_loading",
    "seed_worker": "_loading",
    "SampleKey": "_samples",
    "SeededDataset": "_samples",
    "SeededSampler": "_seeded_sampler",
    # A DataLoader subclass: it imports torch.
    "SeededDataLoader": "_seeded_loader",
    "RNGState": "_snapshot",
    "restore": "_snapshot",
    "snapshot": "_snapshot",
    # The tracer costs milliseconds to import and only those who trace need it.
    "BatchDivergence": "_trace",
    "batch_divergence": "_trace",
    "Divergence": "_trace",
    "first_divergence": "_trace",
    "trace": "_trace",
    "TracedCompileWarning": "_trace",
    "seeded": "_wrappers",
}


def __getattr__(name: str) -> object:
    """Re-export a name of ``__all__`` on first use, keeping ``import deterministic`` light.

    Args:
        name: The attribute looked up.

    Returns:
        The object, kept in the package's namespace so later lookups find it directly.

    Raises:
        AttributeError: ``name`` is not one of the package's names.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deterministic' has no attribute {name!r}")
    from importlib import import_module  # noqa: PLC0415 - imported already by the import system

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the package's names, those not re-exported yet included."""
    return sorted(set(globals()) | set(__all__))
