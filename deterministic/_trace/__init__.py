"""The divergence tracer: record torch operator calls, and find where two runs first differ."""

from ._batching import BatchDivergence, batch_divergence
from ._comparing import Divergence, first_divergence
from ._recording import Recording, TracedCompileWarning, trace

__all__ = [
    "BatchDivergence",
    "Divergence",
    "Recording",
    "TracedCompileWarning",
    "batch_divergence",
    "first_divergence",
    "trace",
]
