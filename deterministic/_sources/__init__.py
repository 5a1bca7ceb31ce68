"""The RNG sources a scope knows, one module each, behind the protocol in ``_protocol``."""

from ._accelerator import AcceleratorSource
from ._numpy import NumpySource
from ._protocol import loaded_module, mark_imported
from ._python import PythonRandomSource
from ._registry import SOURCES, select_sources
from ._torch import TorchSource

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from ._protocol import Source

__all__ = [
    "SOURCES",
    "AcceleratorSource",
    "NumpySource",
    "PythonRandomSource",
    "Source",
    "TorchSource",
    "loaded_module",
    "mark_imported",
    "select_sources",
]
