"""Torch's determinism flags, handled like a source: capture, apply, restore."""

from __future__ import annotations

import os
import warnings

from ._sources import loaded_module

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CUBLAS_CONFIGS", "CUBLAS_VARIABLE", "AlgorithmsMode", "FlagSettings"]

#: The environment variable cuBLAS reads when it starts.
CUBLAS_VARIABLE = "CUBLAS_WORKSPACE_CONFIG"
#: The values with which cuBLAS is deterministic.
CUBLAS_CONFIGS = (":4096:8", ":16:8")

#: What ``deterministic_algorithms=`` accepts.
AlgorithmsMode = bool | str | None

_UNTOUCHED = object()  # the environment variable was not part of the capture
_cublas_warned = False


def _check_bool(name: str, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"{name} must be True, False or None, not {type(value).__name__}")


def _check_algorithms(value: object) -> AlgorithmsMode:
    if value is None or isinstance(value, bool) or value == "warn":
        return value
    if isinstance(value, str):
        raise ValueError(f"deterministic_algorithms must be True, False, 'warn' or None, not {value!r}")
    raise TypeError(
        f"deterministic_algorithms must be True, False, 'warn' or None, not {type(value).__name__}"
    )


class FlagSettings:
    """The flag values one configuration asks for; ``None`` leaves a flag as it is.

    Flags are written through torch's C setters, the functions
    ``torch.backends.cudnn.flags()`` itself uses. That keeps working after
    ``torch.backends.disable_global_flags()`` and, unlike
    ``torch.use_deterministic_algorithms``, neither imports ``torch._inductor`` nor
    overwrites inductor's own ``deterministic`` setting. On exit every flag is restored,
    including those the configuration left untouched, so a block cannot leak a flag.
    """

    name = "flags"
    module = "torch"
    __slots__ = (
        "_algorithms_on",
        "cudnn_benchmark",
        "cudnn_deterministic",
        "cudnn_enabled",
        "deterministic_algorithms",
        "fill_uninitialized_memory",
        "touches_anything",
    )
    _FIELDS = (
        "cudnn_deterministic",
        "cudnn_benchmark",
        "cudnn_enabled",
        "deterministic_algorithms",
        "fill_uninitialized_memory",
    )

    def __init__(
        self,
        cudnn_deterministic: object,
        cudnn_benchmark: object,
        cudnn_enabled: object,
        deterministic_algorithms: object,
        fill_uninitialized_memory: object,
    ) -> None:
        """Validate the flag keywords of a configuration.

        Args:
            cudnn_deterministic: ``torch.backends.cudnn.deterministic`` or ``None``.
            cudnn_benchmark: ``torch.backends.cudnn.benchmark`` or ``None``.
            cudnn_enabled: ``torch.backends.cudnn.enabled`` or ``None``.
            deterministic_algorithms: ``True``, ``False``, ``"warn"`` or ``None``.
            fill_uninitialized_memory: ``torch.utils.deterministic.fill_uninitialized_memory`` or ``None``.

        Raises:
            TypeError: If a value has the wrong type.
            ValueError: If ``deterministic_algorithms`` is a string other than ``"warn"``.
        """
        self.cudnn_deterministic = _check_bool("cudnn_deterministic", cudnn_deterministic)
        self.cudnn_benchmark = _check_bool("cudnn_benchmark", cudnn_benchmark)
        self.cudnn_enabled = _check_bool("cudnn_enabled", cudnn_enabled)
        self.deterministic_algorithms = _check_algorithms(deterministic_algorithms)
        self.fill_uninitialized_memory = _check_bool("fill_uninitialized_memory", fill_uninitialized_memory)
        #: Whether at least one flag is set (all ``None`` leaves the flags alone).
        self.touches_anything = any(value is not None for value in self._values())
        self._algorithms_on = self.deterministic_algorithms in (True, "warn")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, field) for field in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlagSettings) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def available(self) -> bool:
        """Return whether torch is imported."""
        return loaded_module("torch") is not None

    def capture(self) -> tuple[Any, ...]:
        """Return every flag's current value (and the cuBLAS variable when it may change).

        Returns:
            ``(cudnn_deterministic, cudnn_benchmark, cudnn_enabled, algorithms, warn_only,
            fill_uninitialized_memory, cublas_workspace_config)``; a plain tuple, since
            one is built at every entry.
        """
        c = loaded_module("torch")._C  # type: ignore[union-attr]
        return (
            c._get_cudnn_deterministic(),
            c._get_cudnn_benchmark(),
            c._get_cudnn_enabled(),
            c._get_deterministic_algorithms(),
            c._get_deterministic_algorithms_warn_only(),
            c._get_deterministic_fill_uninitialized_memory(),
            os.environ.get(CUBLAS_VARIABLE) if self._algorithms_on else _UNTOUCHED,
        )

    def seed(self, seed: int) -> None:
        """Apply the settings; flags take no seed but share the sources' protocol.

        Args:
            seed: Unused.
        """
        torch = loaded_module("torch")
        assert torch is not None
        c = torch._C
        if self.cudnn_deterministic is not None:
            c._set_cudnn_deterministic(self.cudnn_deterministic)
        if self.cudnn_benchmark is not None:
            c._set_cudnn_benchmark(self.cudnn_benchmark)
        if self.cudnn_enabled is not None:
            c._set_cudnn_enabled(self.cudnn_enabled)
        if self.deterministic_algorithms is not None:
            if self._algorithms_on:
                _prepare_cublas(torch)
            c._set_deterministic_algorithms(
                bool(self.deterministic_algorithms),
                warn_only=self.deterministic_algorithms == "warn",
            )
        if self.fill_uninitialized_memory is not None:
            c._set_deterministic_fill_uninitialized_memory(self.fill_uninitialized_memory)

    def restore(self, state: tuple[Any, ...]) -> None:
        """Put back every flag captured by :meth:`capture`."""
        c = loaded_module("torch")._C  # type: ignore[union-attr]
        cudnn_deterministic, cudnn_benchmark, cudnn_enabled, algorithms, warn_only, fill, cublas = state
        c._set_cudnn_deterministic(cudnn_deterministic)
        c._set_cudnn_benchmark(cudnn_benchmark)
        c._set_cudnn_enabled(cudnn_enabled)
        c._set_deterministic_algorithms(algorithms, warn_only=warn_only)
        c._set_deterministic_fill_uninitialized_memory(fill)
        if cublas is not _UNTOUCHED:
            if cublas is None:
                os.environ.pop(CUBLAS_VARIABLE, None)
            else:
                os.environ[CUBLAS_VARIABLE] = cublas

    def __repr__(self) -> str:
        fields = ", ".join(f"{field}={getattr(self, field)!r}" for field in self._FIELDS)
        return f"FlagSettings({fields})"


def _prepare_cublas(torch: Any) -> None:
    """Make cuBLAS deterministic for the scope, or warn once when it is too late to."""
    global _cublas_warned
    if os.environ.get(CUBLAS_VARIABLE) in CUBLAS_CONFIGS or not torch.cuda.is_available():
        return
    if not torch.cuda.is_initialized():
        # cuBLAS reads the variable when it starts, which is after CUDA initialises.
        os.environ[CUBLAS_VARIABLE] = CUBLAS_CONFIGS[0]
    elif not _cublas_warned:
        _cublas_warned = True
        warnings.warn(
            f"deterministic algorithms are on but {CUBLAS_VARIABLE} is "
            f"{os.environ.get(CUBLAS_VARIABLE)!r} and CUDA is already initialised, so cuBLAS "
            f"may stay non-deterministic. Fix: start the process with "
            f"{CUBLAS_VARIABLE}={CUBLAS_CONFIGS[0]} (or {CUBLAS_CONFIGS[1]}), for example "
            f"`{CUBLAS_VARIABLE}={CUBLAS_CONFIGS[0]} python train.py`.",
            RuntimeWarning,
            stacklevel=4,
        )
