"""The package version, read by setup.cfg (no importlib.metadata at import time)."""

__version__ = "0.1.0"
