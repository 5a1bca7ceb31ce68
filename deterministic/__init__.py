"""Scoped, exact and testable randomness for deep-learning code."""

from ._scope import Scope, deterministic
from ._seeds import derive_seed
from ._snapshot import RNGState, restore, snapshot
from ._version import __version__
from ._wrappers import seeded

__all__ = [
    "RNGState",
    "Scope",
    "__version__",
    "derive_seed",
    "deterministic",
    "restore",
    "seeded",
    "snapshot",
]
