"""The divergence tracer: record torch operator calls, and find where two runs first differ."""

from ._comparing import Divergence, first_divergence
from ._recording import Recording, TracedCompileWarning, trace

__all__ = ["Divergence", "Recording", "TracedCompileWarning", "first_divergence", "trace"]
