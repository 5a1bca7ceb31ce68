"""Attribution: which ``nn.Module``, phase and user line an operator call belongs to.

Shared by the tracer and the batch-invariance probe. Module paths come from global
forward hooks (which leave autograd's graph alone); ops that autograd runs in backward
are attributed through labels the hooks put on the graph's nodes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import CodeType, FrameType
    from typing import Any

__all__ = ["MODULE_KEY", "PLACES_LIMIT", "Attribution", "child_path", "tensors_in"]

#: The key of the module label on autograd nodes.
MODULE_KEY = "deterministic.trace.module"
#: Locations (code object and line) whose ``file:line`` text is kept.
PLACES_LIMIT = 1 << 14

# Phases, as the trace format stores them.
NO_PHASE, FORWARD, BACKWARD = 0, 1, 2


class Attribution:
    """Tracks the module path and phase of the current op, and finds the user's line.

    Only the thread that created it is attributed; ``_off`` switches it off.
    """

    def __init__(self, torch: Any) -> None:
        """Prepare the caches (nothing is hooked until :meth:`hook`).

        Args:
            torch: The torch module.
        """
        self._torch = torch
        self._tensor_type = torch.Tensor
        self._thread = threading.get_ident()
        self._off = False
        self._skip: dict[CodeType, bool] = {}
        self._places: dict[tuple[CodeType, int], str] = {}
        self._modules: list[tuple[Any, str]] = []
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._skipped_prefixes = (
            os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
            package + os.sep,
            # "<frozen runpy>" and the like: the interpreter's machinery, never the user's line.
            "<frozen ",
            *(os.path.abspath(module.__file__) for module in (contextlib, functools) if module.__file__),
        )
        self._current_node = getattr(torch._C, "_current_autograd_node", lambda: None)

    def hook(self) -> list[Callable[[], None]]:
        """Register the global forward hooks.

        Returns:
            The functions that remove them.
        """
        hooks = self._torch.nn.modules.module
        return [
            hooks.register_module_forward_pre_hook(self._pre_forward).remove,
            hooks.register_module_forward_hook(self._post_forward, always_call=True).remove,
        ]

    def attribute(self) -> tuple[int, str | None]:
        """Return the phase and module path of the op running now.

        Returns:
            ``(phase, path)``: :data:`NO_PHASE`, :data:`FORWARD` or :data:`BACKWARD`, and
            the module path or ``None``.
        """
        node = self._current_node()
        if node is not None:
            return BACKWARD, node.metadata.get(MODULE_KEY) or None
        if self._modules:
            return FORWARD, self._modules[-1][1]
        return NO_PHASE, None

    def _first_user_code(self, frame: FrameType) -> None:
        """Called once per code object of user code met while finding a location."""

    def _location(self, frame: FrameType | None) -> str:
        """The innermost frame outside torch and this library, as ``file:line``."""
        skip = self._skip
        while frame is not None:
            code = frame.f_code
            skipped = skip.get(code)
            if skipped is None:
                skipped = skip[code] = code.co_filename.startswith(self._skipped_prefixes)
                if not skipped:
                    self._first_user_code(frame)
            if not skipped:
                key = (code, frame.f_lineno)
                text = self._places.get(key)
                if text is None:
                    if len(self._places) >= PLACES_LIMIT:
                        self._places.clear()
                    text = self._places[key] = f"{code.co_filename}:{key[1]}"
                return text
            frame = frame.f_back
        return "<outside user code>"

    def _pre_forward(self, module: Any, args: Any) -> None:
        if self._off or threading.get_ident() != self._thread:
            return
        stack = self._modules
        if stack:
            parent, parent_path = stack[-1]
            path = child_path(parent, parent_path, module)
        else:
            parent_path, path = "", type(module).__name__
        # Graph nodes made before this call belong to the caller, not to this module.
        self._label(args, parent_path)
        stack.append((module, path))

    def _post_forward(self, module: Any, args: Any, output: Any) -> None:
        if self._off or threading.get_ident() != self._thread:
            return
        stack = self._modules
        path = None
        while stack:
            entered, entered_path = stack.pop()
            if entered is module:
                path = entered_path
                break
        if path is not None:
            self._label(output, path)

    def _label(self, value: Any, path: str) -> None:
        """Label the unlabelled autograd nodes behind ``value`` with a module path."""
        torch = self._torch
        if not torch.is_grad_enabled():
            return
        pending = []
        for tensor in tensors_in(value, self._tensor_type):
            try:
                node = tensor.grad_fn
            except Exception:  # noqa: BLE001 - a subclass without autograd metadata
                continue
            if node is not None:
                pending.append(node)
        while pending:
            node = pending.pop()
            metadata = node.metadata
            if MODULE_KEY in metadata:
                continue
            metadata[MODULE_KEY] = path
            pending.extend(following for following, _ in node.next_functions if following is not None)


def child_path(parent: Any, parent_path: str, module: Any) -> str:
    """The path of ``module`` called from inside ``parent`` (at ``parent_path``)."""
    for name, child in parent._modules.items():
        if child is module:
            return f"{parent_path}.{name}"
    for name, child in parent.named_modules():
        if child is module and name:
            return f"{parent_path}.{name}"
    return f"{parent_path}>{type(module).__name__}"


def tensors_in(value: Any, tensor_type: type) -> list[Any]:
    """The tensors in a value: itself, or the items of a (nested) tuple, list or dict."""
    if isinstance(value, tensor_type):
        return [value]
    if isinstance(value, (tuple, list)):
        found = []
        for item in value:
            found += tensors_in(item, tensor_type)
        return found
    if isinstance(value, dict):
        return tensors_in(list(value.values()), tensor_type)
    return []
