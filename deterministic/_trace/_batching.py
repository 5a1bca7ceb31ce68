"""Batch invariance: find the op at which a row's result starts to depend on its batch.

:func:`batch_divergence` runs a function on a whole batch and on single rows, records
every torch operator call of each run (a dispatch mode, attributed to modules, phases
and user lines like the tracer's calls), and compares the runs op by op: each op's
output restricted to the row in the batched run against the single-row run's output.

How a batched tensor holds a row is worked out, not assumed:

* an op that only rearranges elements (a view, ``clone``, ``_unsafe_view``) is run
  again on a tensor of row numbers, and the result shows where each row went, whether
  ``B`` stayed a dimension or was merged with another (``(B*T, C)``, ``(T*B, C)``);
* any other op's output holds the batch where its shape differs from the single-row
  output's by the factor ``B``; a merged dimension keeps the order of the input that
  had it.

Only ops that read a value derived from the sliced inputs are compared, so tensors
made from the batch size alone (an ``arange(B)`` for positions or masks) are never
blamed. Rearranging ops are also left out when the two runs' op sequences are aligned,
so a ``clone`` that a library adds only when ``B > 1`` is not a change of control flow.
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass

from ._attribution import BACKWARD, FORWARD, Attribution
from ._recording import IN, _arguments, _mode_class, _OpInfo
from ._reporting import short_location

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = ["COVERED_OPS", "BatchDivergence", "batch_divergence"]

#: The ops that ``batch_invariant=True`` computes in fixed-shape pieces.
COVERED_OPS = frozenset({"mm", "addmm", "mv", "addmv", "bmm", "baddbmm", "convolution"})

#: Ops that only copy or rearrange elements: never a source of a difference, left out
#: when the runs' op sequences are aligned. (Views are recognised from their schemas.)
_REARRANGING = frozenset({"clone", "_unsafe_view", "_reshape_copy", "contiguous"})

_PHASE_NAMES = {FORWARD: "forward", BACKWARD: "backward"}

_WHY = {
    "batch-variant-op": (
        "the op's inputs for this row are bit-identical in the batched and the single-row run, "
        "its output for the row differs, and that output does not move when the other rows' "
        "values change: the kernel depends on the batch size."
    ),
    "cross-row": (
        "the op's output for this row depends on the other rows' values (batch norm in training "
        "mode, a softmax or reduction over the batch dimension, a backward that averages over "
        "the batch)."
    ),
    "control-flow": (
        "the batched and the single-row run execute different ops here: the program branches "
        "on the batch size (x.shape[0]), or picks an op by shape."
    ),
}


@dataclass(frozen=True)
class BatchDivergence:
    """Where a row's result first depends on the batch it runs in.

    Attributes:
        kind: ``"batch-variant-op"``, ``"cross-row"`` or ``"control-flow"``.
        row: The row (index along ``dim``) whose results differ.
        index: The op's position in the batched run's op sequence, from 0.
        op: The operator, e.g. ``"aten::addmm"``.
        module: The ``nn.Module`` path the op ran in, or ``None``.
        phase: ``"forward"``, ``"backward"`` or ``None`` (outside any module).
        location: The user's ``file.py:LINE``: the innermost frame outside torch and
            this library.
        max_abs_diff: The row's largest absolute difference at the op (``nan`` for
            ``control-flow``; ``inf`` where one run has a NaN or infinity the other has not).
        solo_op: For ``control-flow``: the single-row run's op at that point (``None``
            when that run had ended).
    """

    kind: str
    row: int
    index: int
    op: str
    module: str | None
    phase: str | None
    location: str
    max_abs_diff: float
    solo_op: str | None = None

    def __str__(self) -> str:
        """A report naming the kind, op, module, phase, line and difference, and the fix."""
        difference = "-" if math.isnan(self.max_abs_diff) else f"{self.max_abs_diff:.3g}"
        lines = [
            f"batch divergence: {self.kind} at op #{self.index} ({self.op}), row {self.row}",
            f"  module:   {self.module or '-'}",
            f"  phase:    {self.phase or '-'}",
            f"  location: {short_location(self.location)}",
            f"  largest difference for the row: {difference}",
        ]
        if self.kind == "control-flow":
            lines.append(f"  single-row run: {self.solo_op or 'ended'} here")
        lines += ["", "Why: " + _WHY[self.kind], "Fix: " + self._fix()]
        return "\n".join(lines)

    def _fix(self) -> str:
        base = self.op.split("::", 1)[-1].split(".", 1)[0]
        if self.kind == "cross-row":
            return (
                "no kernel setting changes this. Evaluate in eval mode (model.eval()), reduce "
                "per row instead of over the batch, or accept that the row depends on its batch."
            )
        if self.kind == "control-flow":
            return (
                "make the code path independent of the batch size (do not branch on x.shape[0]); "
                "if a library picks the op by shape, give it the same shape in every run."
            )
        if base in COVERED_OPS:
            return (
                "run the evaluation inside `with deterministic(seed, batch_invariant=True):` "
                "(or decorate it with `@seeded(seed, batch_invariant=True)`): it computes this op "
                "in fixed-size blocks, so each row's result is the same at every batch size."
            )
        return (
            f"batch_invariant=True does not cover {base}. Elementwise kernels take a different "
            "path for the tail of a tensor that is not a multiple of the SIMD width: keep each "
            "row's length a multiple of 64, or compute this op per row."
        )


# -- recording ---------------------------------------------------------------------------

_WHOLE = None  # a tensor without a batch dimension: compared whole
_UNKNOWN = "unknown"  # a tensor whose rows cannot be located: not compared


class _Hole:
    """Stands for a recorded tensor in a call's saved arguments."""

    __slots__ = ("ref",)

    def __init__(self, ref: tuple[int, int]) -> None:
        self.ref = ref


class _Call:
    """One recorded operator call."""

    __slots__ = (
        "arguments",
        "func",
        "inputs",
        "location",
        "module",
        "name",
        "phase",
        "rearranges",
        "shapes",
        "tainted",
        "values",
    )

    def __init__(self) -> None:
        self.func: Any = None
        self.name = ""
        self.module: str | None = None
        self.phase: str | None = None
        self.location = ""
        self.rearranges = False
        self.tainted = False
        self.inputs: tuple[tuple[int, int] | None, ...] = ()
        self.arguments: Any = (
            None  # (leaves with holes, spec) of a rearranging call; else its constants' text
        )
        self.shapes: tuple[Any, ...] = ()
        self.values: tuple[Any, ...] = ()


class _Run:
    """The calls of one run of the function, and the in-place writes to undo after it."""

    def __init__(self, inputs: list[Any], dims: list[int | None]) -> None:
        self.calls: list[_Call] = []
        self.inputs = inputs
        self.dims = dims
        # id(tensor) -> (call, output slot), or (-1, argument) for an input; the tensors
        # are kept alive in `alive`, so that an id is never reused within the run.
        self.refs: dict[int, tuple[int, int]] = {}
        self.alive: list[Any] = []
        self.written: dict[int, tuple[Any, Any]] = {}
        for position, tensor in enumerate(inputs):
            if tensor is not None:
                self.refs[id(tensor)] = (-1, position)
                self.alive.append(tensor)

    def tainted(self, ref: tuple[int, int]) -> bool:
        index, position = ref
        return self.dims[position] is not None if index < 0 else self.calls[index].tainted


class _Prober(Attribution):
    """Records operator calls into the current :class:`_Run`."""

    def __init__(self, torch: Any) -> None:
        super().__init__(torch)
        self._infos: dict[Any, _OpInfo] = {}
        self.run: _Run | None = None
        from torch.utils._pytree import tree_flatten, tree_unflatten  # noqa: PLC0415

        self._flatten = tree_flatten
        self._unflatten = tree_unflatten
        self._plain_types = (torch.Tensor, torch.nn.Parameter)
        self._strided = torch.strided

    def _pre_forward(self, module: Any, args: Any) -> None:
        super()._pre_forward(module, args)
        run = self.run
        if run is None or self._off:
            return
        # Buffers are saved whole before a module runs: not every op that updates one
        # (native_batch_norm's running statistics) declares the write in its schema.
        for buffer in module.buffers(recurse=False):
            if id(buffer) not in run.written:
                run.written[id(buffer)] = (buffer, buffer.detach().clone())

    def record(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run one operator call and record it into the current run."""
        run = self.run
        if run is None or self._off:
            return func(*args, **kwargs)
        if threading.get_ident() != self._thread:
            return func(*args, **kwargs)
        info = self._infos.get(func)
        if info is None:
            info = self._infos[func] = _OpInfo(func, self._torch)
        tensor_type = self._tensor_type
        call = _Call()
        call.func = func
        call.name = info.name
        phase, call.module = self.attribute()
        call.phase = _PHASE_NAMES.get(phase)
        call.location = self._location(sys._getframe(2))
        base = info.name.split("::", 1)[-1].split(".", 1)[0]
        call.rearranges = info.view or base in _REARRANGING
        leaves, spec = self._flatten((args, kwargs))
        refs = run.refs
        inputs = []
        for leaf in leaves:
            if isinstance(leaf, tensor_type):
                inputs.append(refs.get(id(leaf)))
        call.inputs = tuple(inputs)
        call.tainted = any(ref is not None and run.tainted(ref) for ref in call.inputs)
        if call.rearranges:
            call.arguments = (
                [
                    _Hole(refs[id(leaf)]) if isinstance(leaf, tensor_type) and id(leaf) in refs else leaf
                    for leaf in leaves
                ],
                spec,
            )
        else:
            call.arguments = repr([leaf for leaf in leaves if not isinstance(leaf, tensor_type)])
        for role, tensor in _arguments(info, args, kwargs):
            if role != IN and isinstance(tensor, tensor_type):
                ref = refs.get(id(tensor))
                if (ref is None or ref[0] < 0) and id(tensor) not in run.written:
                    run.written[id(tensor)] = (tensor, tensor.detach().clone())
        result = func(*args, **kwargs)
        index = len(run.calls)
        outputs = [leaf for leaf in self._flatten(result)[0] if isinstance(leaf, tensor_type)]
        shapes, values = [], []
        for slot, tensor in enumerate(outputs):
            refs[id(tensor)] = (index, slot)
            run.alive.append(tensor)
            # Nested, sparse and other layouts are recorded but not compared.
            plain = (
                type(tensor) in self._plain_types and not tensor.is_nested and tensor.layout == self._strided
            )
            shapes.append(tuple(tensor.shape) if plain else None)
            values.append(tensor.detach().clone() if plain and not call.rearranges else None)
        call.shapes = tuple(shapes)
        call.values = tuple(values)
        run.calls.append(call)
        return result


# -- comparing ---------------------------------------------------------------------------


class _Comparison:
    """Compares one row of the batched run with that row's single-row run."""

    def __init__(self, torch: Any, runs: tuple[_Run, _Run], row: int, size: int, unflatten: Any) -> None:
        self.torch = torch
        self.batched, self.solo = runs
        self.row = row
        self.size = size
        self._unflatten = unflatten
        self._aligned: dict[int, int] = {}
        self._layouts: dict[tuple[int, int], Any] = {}
        self._values: tuple[dict[tuple[int, int], Any], dict[tuple[int, int], Any]] = ({}, {})

    # values ---------------------------------------------------------------------------

    def value(self, run: _Run, ref: tuple[int, int]) -> Any:
        """The value a recorded tensor had when made (a rearranging call is run again)."""
        index, slot = ref
        if index < 0:
            return run.inputs[slot]
        call = run.calls[index]
        if call.values[slot] is not None or not call.rearranges:
            return call.values[slot]
        memo = self._values[0 if run is self.batched else 1]
        if ref not in memo:
            result = self._replay(call, lambda hole: self.value(run, hole.ref))
            memo[ref] = None if result is None else result[slot]
        return memo[ref]

    def _replay(self, call: _Call, fill: Callable[[_Hole], Any], numbers: bool = False) -> list[Any] | None:
        """Run a rearranging call again, on ``fill``'s values (``numbers``: row numbers)."""
        torch = self.torch
        leaves, spec = call.arguments
        filled = []
        for leaf in leaves:
            if isinstance(leaf, _Hole):
                value = fill(leaf)
                if value is None:
                    return None
                filled.append(value)
            elif numbers and isinstance(leaf, torch.Tensor):
                # A tensor from outside the run (a weight): it holds no row.
                filled.append(torch.full(leaf.shape, -1, dtype=torch.int32))
            else:
                filled.append(leaf)
        args, kwargs = self._unflatten(filled, spec)
        try:
            result = call.func(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a call that cannot run on these values is not compared
            return None
        return [leaf for leaf in _leaves(result) if isinstance(leaf, self.torch.Tensor)]

    # layouts --------------------------------------------------------------------------

    def layout(self, ref: tuple[int, int]) -> Any:
        """Where the row sits in a batched tensor: ``(dim, before, after)``, ``_WHOLE`` or ``_UNKNOWN``."""
        if ref in self._layouts:
            return self._layouts[ref]
        index, slot = ref
        if index < 0:
            dim = self.batched.dims[slot]
            found: Any = _WHOLE if dim is None else (dim, 1, 1)
        else:
            call = self.batched.calls[index]
            found = self._traced_layout(call, slot) if call.rearranges else self._shape_layout(index, slot)
        self._layouts[ref] = found
        return found

    def _row_numbers(self, ref: tuple[int, int]) -> Any:
        """A tensor shaped like the batched one, holding each element's row (-1: none)."""
        torch = self.torch
        index, slot = ref
        shape = self.batched.inputs[slot].shape if index < 0 else self.batched.calls[index].shapes[slot]
        if shape is None:
            return None
        layout = self.layout(ref)
        if layout is _UNKNOWN:
            return None
        if layout is _WHOLE:
            return torch.full(shape, -1, dtype=torch.int32)
        dim, before, after = layout
        line = torch.arange(self.size, dtype=torch.int32).repeat_interleave(after).repeat(before)
        view = [1] * len(shape)
        view[dim] = shape[dim]
        return line.view(view).expand(shape).contiguous()

    def _traced_layout(self, call: _Call, slot: int) -> Any:
        result = self._replay(call, lambda hole: self._row_numbers(hole.ref), numbers=True)
        if result is None or slot >= len(result):
            return _UNKNOWN
        return _deduce(self.torch, result[slot], self.size)

    def _shape_layout(self, index: int, slot: int) -> Any:
        solo_index = self._aligned.get(index)
        solo_shapes = () if solo_index is None else self.solo.calls[solo_index].shapes
        batched_shape = self.batched.calls[index].shapes[slot]
        solo_shape = solo_shapes[slot] if slot < len(solo_shapes) else None
        found = _layout_from_shapes(batched_shape, solo_shape, self.size)
        if isinstance(found, tuple) and found[2] > 1:
            dim, _, length = found
            return self._merged(self.batched.calls[index], dim, self.size * length, length)
        return found

    def _merged(self, call: _Call, dim: int, length: int, solo_length: int) -> tuple[int, int, int]:
        """The layout of a merged dimension: the order of an input that has the same one."""
        for ref in call.inputs:
            layout = _UNKNOWN if ref is None else self.layout(ref)
            if isinstance(layout, tuple):
                assert ref is not None
                index, slot = ref
                shape = (
                    self.batched.inputs[slot].shape if index < 0 else self.batched.calls[index].shapes[slot]
                )
                if shape is not None and shape[layout[0]] == length:
                    return (dim, layout[1], layout[2])
        return (dim, 1, solo_length)

    def part(self, value: Any, layout: Any, solo: Any) -> Any:
        """The row's part of a batched value, to compare with the single-row run's ``solo``.

        A tensor that holds no row but has the batch's size (a mask expanded to ``B``)
        is cut by its shape.
        """
        found = self.restrict(value, layout)
        if layout is _WHOLE and found is not None and solo is not None and found.shape != solo.shape:
            found = self.restrict(
                value, _layout_from_shapes(tuple(value.shape), tuple(solo.shape), self.size)
            )
        return found

    def restrict(self, value: Any, layout: Any) -> Any:
        """The row's part of a batched value (``None`` when it cannot be found)."""
        if layout is _UNKNOWN or value is None:
            return None
        if layout is _WHOLE:
            return value
        dim, before, after = layout
        if value.dim() <= dim or value.shape[dim] != before * self.size * after:
            return None
        return (
            value.unflatten(dim, (before, self.size, after))
            .narrow(dim + 1, self.row, 1)
            .flatten(dim, dim + 2)
        )

    # the walk -------------------------------------------------------------------------

    def first(self) -> tuple[int, str, float, int | None] | None:
        """Return ``(index, kind, max_abs_diff, solo index)`` of the row's first divergence.

        The kind is ``"control-flow"`` or ``"candidate"`` (decided by the caller).
        """
        order_b = [i for i, call in enumerate(self.batched.calls) if not call.rearranges]
        order_s = [i for i, call in enumerate(self.solo.calls) if not call.rearranges]
        for position in range(max(len(order_b), len(order_s))):
            if position >= len(order_b):
                return (len(self.batched.calls), "control-flow", math.nan, order_s[position])
            index = order_b[position]
            if position >= len(order_s):
                return (index, "control-flow", math.nan, None)
            solo_index = order_s[position]
            call, solo_call = self.batched.calls[index], self.solo.calls[solo_index]
            if call.name != solo_call.name:
                return (index, "control-flow", math.nan, solo_index)
            self._aligned[index] = solo_index
            if not call.tainted:
                continue
            difference = self._output_difference(index, call, solo_call)
            if difference is None:
                continue
            if call.arguments != solo_call.arguments:
                return (index, "control-flow", math.nan, solo_index)
            if self._inputs_equal(call, solo_call):
                return (index, "candidate", difference, solo_index)
        return None

    def _output_difference(self, index: int, call: _Call, solo_call: _Call) -> float | None:
        worst = None
        for slot, value in enumerate(call.values):
            if slot >= len(solo_call.values):
                break
            theirs = solo_call.values[slot]
            mine = self.part(value, self.layout((index, slot)), theirs)
            if mine is None or theirs is None:
                continue
            difference = _difference(self.torch, mine, theirs)
            if difference is not None and (worst is None or difference > worst):
                worst = difference
        return worst

    def _inputs_equal(self, call: _Call, solo_call: _Call) -> bool:
        if len(call.inputs) != len(solo_call.inputs):
            return False
        for ref, solo_ref in zip(call.inputs, solo_call.inputs, strict=True):
            if ref is None and solo_ref is None:
                continue
            if ref is None or solo_ref is None:
                return False
            theirs = self.value(self.solo, solo_ref)
            mine = self.part(self.value(self.batched, ref), self.layout(ref), theirs)
            if mine is None or theirs is None or _difference(self.torch, mine, theirs) is not None:
                return False
        return True


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        found: list[Any] = []
        for item in value:
            found += _leaves(item)
        return found
    return [value]


def _deduce(torch: Any, numbers: Any, size: int) -> Any:
    """Read a layout off a tensor of row numbers (see ``_Comparison._row_numbers``)."""
    if numbers.numel() == 0:
        return _UNKNOWN
    if numbers.dim() == 0:
        return _WHOLE if int(numbers) < 0 else _UNKNOWN
    varying = [
        d
        for d in range(numbers.dim())
        if numbers.shape[d] > 1 and not torch.equal(numbers, numbers.narrow(d, 0, 1).expand_as(numbers))
    ]
    if not varying:
        return _WHOLE if int(numbers.flatten()[0]) < 0 else _UNKNOWN
    if len(varying) > 1:
        return _UNKNOWN
    dim = varying[0]
    line = numbers.movedim(dim, 0).reshape(numbers.shape[dim], -1)[:, 0].long()
    changes = (line[1:] != line[:-1]).nonzero()
    after = int(changes[0]) + 1 if changes.numel() else line.numel()
    if line.numel() % (size * after):
        return _UNKNOWN
    before = line.numel() // (size * after)
    expected = torch.arange(size).repeat_interleave(after).repeat(before)
    return (dim, before, after) if torch.equal(line, expected) else _UNKNOWN


def _layout_from_shapes(batched: Any, solo: Any, size: int) -> Any:
    """The layout that ``size`` rows of ``solo``'s shape stacked to ``batched``'s shape suggest.

    A merged dimension is reported with ``after`` = the single row's length (rows one
    after the other); the caller may know better.
    """
    if batched is None or solo is None or len(batched) != len(solo):
        return _UNKNOWN
    differing = [d for d in range(len(batched)) if batched[d] != solo[d]]
    if not differing:
        return _WHOLE
    dim = differing[0]
    if len(differing) > 1 or batched[dim] != size * solo[dim]:
        return _UNKNOWN
    return (dim, 1, solo[dim])


def _difference(torch: Any, a: Any, b: Any) -> float | None:
    """The largest absolute difference of two tensors, or ``None`` when they are bit-identical."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return math.inf
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    if a.dtype.is_floating_point:
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}.get(a.element_size())
        if bits is not None and torch.equal(a.contiguous().view(bits), b.contiguous().view(bits)):
            return None
        # Equal values (infinities included) and NaN against NaN differ by nothing.
        same = (a == b) | (torch.isnan(a) & torch.isnan(b))
        gap = (a.double() - b.double()).abs()
        gap = torch.where(same, 0.0, torch.where(torch.isnan(gap), math.inf, gap))
        return float(gap.max()) if gap.numel() else None
    if torch.equal(a, b):
        return None
    return float((a.double() - b.double()).abs().max())


# -- the function ------------------------------------------------------------------------


def batch_divergence(
    fn: Callable[..., Any],
    inputs: Any,
    *,
    rows: int | Iterable[int] | None = None,
    dim: int = 0,
) -> BatchDivergence | None:
    """Find the first op at which a row's result depends on the batch it runs in.

    ``fn`` runs on the whole batch and on each checked row alone (a fresh tensor holding
    ``x.narrow(dim, r, 1)``, the dimension kept), each run recording every torch op.
    The runs are compared op by op, bit for bit: each op's output for the row in the
    batched run against the single-row run's output. Every run starts from the same
    RNG states (the caller's are restored), compiled functions run eagerly, and module
    buffers and tensors that a run writes in place (batch-norm running statistics) are
    put back after it.

    Args:
        fn: The function, e.g. a model in eval mode or ``lambda ids: model(ids).logits``.
        inputs: A tensor, or a tuple of positional arguments. Each tensor argument is
            sliced along ``dim``; other arguments, and tensors with no dimension
            ``dim``, pass unchanged.
        rows: The rows to check: an int, an iterable of ints, or ``None`` for all.
        dim: The batch dimension of the inputs (``1`` for time-major ``(T, B, ...)``).

    Returns:
        ``None`` when every checked row matches at every op; otherwise the first
        divergence in execution order, the lowest row among those at the same op.

    Raises:
        TypeError: ``fn`` is not callable, no argument is a tensor with a dimension
            ``dim``, or ``rows``/``dim`` have the wrong type.
        ValueError: The tensors disagree on the batch size, or it is below 2.
        IndexError: A row is outside ``range(B)``.
    """
    import torch  # noqa: PLC0415 - torch stays optional

    if not callable(fn):
        raise TypeError(f"fn must be callable, not {type(fn).__name__}")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, not {type(dim).__name__}")
    arguments = inputs if isinstance(inputs, tuple) else (inputs,)
    dims, size = _batch_dims(torch, arguments, dim)
    if size is None:
        raise TypeError(
            f"inputs must hold a tensor with a dimension {dim} (a tensor, or a tuple of arguments), "
            f"not {type(inputs).__name__}"
        )
    if size < 2:
        raise ValueError(f"the batch size along dim {dim} is {size}; comparing rows needs at least 2")
    checked = _rows(rows, size)
    session = _Session(torch, fn, arguments, dims, size)
    removers = session.prober.hook()
    try:
        return session.search(checked)
    finally:
        for remove in removers:
            remove()


def _batch_dims(torch: Any, arguments: tuple[Any, ...], dim: int) -> tuple[list[int | None], int | None]:
    """Each argument's batch dimension (``None``: passed unchanged), and the batch size."""
    dims: list[int | None] = []
    size = None
    for position, value in enumerate(arguments):
        if not isinstance(value, torch.Tensor) or not -value.dim() <= dim < value.dim():
            dims.append(None)
            continue
        axis = dim % value.dim()
        if size is None:
            size = value.shape[axis]
        elif value.shape[axis] != size:
            raise ValueError(
                f"the tensors disagree on the batch size: argument {position} has {value.shape[axis]} "
                f"along dim {dim}, an earlier one {size}"
            )
        dims.append(axis)
    return dims, size


def _rows(rows: Any, size: int) -> list[int]:
    """The rows to check, validated and sorted."""
    accepted = "rows must be None, an int or an iterable of ints"
    if isinstance(rows, bool):
        raise TypeError(f"{accepted}, not bool")
    if rows is None:
        return list(range(size))
    if isinstance(rows, int):
        rows = [rows]
    try:
        checked = list(rows)
    except TypeError:
        raise TypeError(f"{accepted}, not {type(rows).__name__}") from None
    for row in checked:
        if isinstance(row, bool) or not isinstance(row, int):
            raise TypeError(f"{accepted}; it holds a {type(row).__name__}")
        if not 0 <= row < size:
            raise IndexError(f"row {row} is outside range({size}), the batch")
    return sorted(set(checked))


class _Session:
    """One call of :func:`batch_divergence`: the function, its batch, and the runs."""

    def __init__(
        self,
        torch: Any,
        fn: Callable[..., Any],
        arguments: tuple[Any, ...],
        dims: list[int | None],
        size: int,
    ) -> None:
        self.torch = torch
        self.fn = fn
        self.arguments = arguments
        self.dims = dims
        self.size = size
        self.prober = _Prober(torch)

    def search(self, checked: list[int]) -> BatchDivergence | None:
        """Compare each checked row with the batched run; classify the first divergence."""
        batched = self.run(list(self.arguments))
        found: tuple[tuple[int, str, float, int | None], _Comparison] | None = None
        for row in checked:
            solo = self.run(
                [
                    value.narrow(axis, row, 1).clone() if axis is not None else value
                    for value, axis in zip(self.arguments, self.dims, strict=True)
                ]
            )
            comparison = _Comparison(self.torch, (batched, solo), row, self.size, self.prober._unflatten)
            first = comparison.first()
            if first is not None and (found is None or first[0] < found[0][0]):
                found = (first, comparison)
        if found is None:
            return None
        (index, kind, difference, solo_index), comparison = found
        if kind == "candidate":
            kind = self.classify(comparison, index)
        solo = comparison.solo
        if index < len(batched.calls):
            call = batched.calls[index]
            op = call.name
        else:
            call = solo.calls[solo_index] if solo_index is not None else batched.calls[-1]
            op = "<end of the batched run>"
        solo_op = solo.calls[solo_index].name if kind == "control-flow" and solo_index is not None else None
        return BatchDivergence(
            kind, comparison.row, index, op, call.module, call.phase, call.location, difference, solo_op
        )

    def run(self, arguments: list[Any]) -> _Run:
        """Run the function once, recorded, from fixed RNG states; undo its in-place writes."""
        from .._scope import deterministic  # noqa: PLC0415 - the scope module imports nothing from here

        torch = self.torch
        run = _Run(
            [value if axis is not None else None for value, axis in zip(arguments, self.dims, strict=True)],
            self.dims,
        )
        mode = _mode_class(torch)(self.prober)
        self.prober.run = run
        try:
            # Compiled functions run eagerly, so that every op is seen; a compiled function
            # first called under a dispatch mode would otherwise be skipped by Dynamo for good.
            eager = torch.compiler.set_stance("force_eager")
            with deterministic(0, cudnn_deterministic=None, cudnn_benchmark=None), eager, mode:
                self.fn(*arguments)
        finally:
            self.prober.run = None
            with torch.no_grad():
                for tensor, saved in run.written.values():
                    tensor.copy_(saved)
            run.written.clear()
        return run

    def classify(self, comparison: _Comparison, index: int) -> str:
        """Tell a batch-variant kernel from a cross-row op: change the other rows and watch the row."""
        torch = self.torch
        generator = torch.Generator().manual_seed(0)
        others = [r for r in range(self.size) if r != comparison.row]
        changed = []
        for original, axis in zip(self.arguments, self.dims, strict=True):
            if axis is None:
                changed.append(original)
                continue
            value = original.clone()
            positions = torch.tensor(others, device=value.device)
            part = value.index_select(axis, positions)
            if part.dtype.is_floating_point or part.is_complex():
                scale = float(part.abs().max()) if part.numel() else 1.0
                noise = torch.randn(part.shape, generator=generator, dtype=part.dtype)
                part = part + noise.to(part.device) * (scale or 1.0)
            elif part.dtype != torch.bool and part.numel():
                # Integers (token ids) stay valid: other values drawn from the tensor itself.
                pool = value.flatten()
                part = pool[torch.randint(pool.numel(), part.shape, generator=generator).to(pool.device)]
            value.index_copy_(axis, positions, part)
            changed.append(value)
        moved = self.run(changed)
        call = comparison.batched.calls[index]
        if index >= len(moved.calls) or moved.calls[index].name != call.name:
            return "cross-row"
        for slot, value in enumerate(call.values):
            layout = comparison.layout((index, slot))
            before = comparison.restrict(value, layout)
            if before is None:
                continue
            after = comparison.restrict(
                moved.calls[index].values[slot] if slot < len(moved.calls[index].values) else None, layout
            )
            if after is None or _difference(torch, before, after) is not None:
                return "cross-row"
        return "batch-variant-op"
