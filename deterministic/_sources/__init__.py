"""The RNG sources a scope knows, one module each, behind the protocol in ``_protocol``."""

from ._accelerator import AcceleratorSource
from ._custom import CustomSource
from ._numpy import NumpySource
from ._protocol import loaded_module, mark_imported, restore_all
from ._python import PythonRandomSource
from ._registry import SOURCES, register_source, select_sources, unregister_source
from ._torch import TorchSource

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from ._protocol import Source

__all__ = [
    "SOURCES",
    "AcceleratorSource",
    "CustomSource",
    "NumpySource",
    "PythonRandomSource",
    "Source",
    "TorchSource",
    "loaded_module",
    "mark_imported",
    "register_source",
    "restore_all",
    "select_sources",
    "unregister_source",
]
