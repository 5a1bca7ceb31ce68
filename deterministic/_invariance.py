"""The ``batch_invariant`` flag: matrix products and convolutions that ignore the batch size.

BLAS and convolution libraries pick a kernel, and with it a reduction order, from the
shapes of a call: a row multiplied alone and the same row inside a batch of 8 take
different kernels and differ in the last bits. Inside a scope with
``batch_invariant=True`` a dispatch mode computes these ops so that every shape a
kernel sees is fixed:

* ``mm``, ``addmm``, ``mv``, ``addmv`` (and so ``matmul`` and ``linear``, which
  reach them): the first operand's rows in blocks of :data:`ROWS`, zero-padded, each
  block as the transposed product ``(B^T @ block^T)^T``. Measured on MKL: in a plain
  block some rows' results depend on their position in the block when the output
  has 5 to 11 columns; as columns of the transposed product they do not (float32,
  float16, bfloat16). float64 is the other way round, and its blocks are multiplied
  as they are, with an even number of columns (see :func:`_rows_even`).
* ``bmm``, ``baddbmm``: each batch entry on its own (a batched call's result depends
  on the entry's position in it), its rows blocked as above: ``matmul`` picks ``bmm``
  or ``mm`` by the batch size and by contiguity, and both must give a row the same bits.
* ``convolution`` (``conv1d/2d/3d`` and transposed): each entry of ``N`` alone.

A dispatch mode is thread-local, like a scope: other threads keep torch's kernels. It
sits below autograd, so gradients flow through the original formulas, and the
products autograd runs in backward are blocked too (convolution's backward is not).
"""

from __future__ import annotations

import _thread

from ._sources import loaded_module

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ENTRIES", "ROWS", "BatchInvariance", "invariant_mode", "is_recorder"]

#: Rows of the first operand per matrix product.
ROWS = 64
#: Convolution entries per call.
ENTRIES = 1

_local = _thread._local()  # .mode: this thread's mode, while one is pushed (threading stays unimported)


class BatchInvariance:
    """The ``batch_invariant`` setting of one configuration, as a part: capture, apply, restore."""

    name = "batch_invariant"
    module = "torch"
    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        """Validate the setting.

        Args:
            value: ``True``, ``False`` or ``None``.

        Raises:
            TypeError: If ``value`` is not a bool or ``None``.
        """
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"batch_invariant must be True, False or None, not {type(value).__name__}")
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BatchInvariance) and self.value == other.value

    def __hash__(self) -> int:
        return hash((BatchInvariance, self.value))

    def __repr__(self) -> str:
        return f"BatchInvariance({self.value!r})"

    def available(self) -> bool:
        """Return whether torch is imported."""
        return loaded_module("torch") is not None

    def capture(self) -> tuple[Any, bool]:
        """Return this thread's mode (or ``None``) and whether it is on."""
        mode = getattr(_local, "mode", None)
        return (mode, mode is not None and mode.enabled)

    def seed(self, seed: int) -> None:
        """Switch the flag to this configuration's value; takes no seed, as flags do.

        Args:
            seed: Unused.
        """
        mode = getattr(_local, "mode", None)
        if mode is not None and _pushed(mode):
            mode.enabled = bool(self.value)
        elif self.value:
            # None, or off the stack (other code cleared the stack around this call, and
            # will push it back): a fresh mode of this entry's own.
            _local.mode = _fresh_mode()
        elif mode is not None:
            mode.enabled = False

    def restore(self, state: tuple[Any, bool]) -> None:
        """Put back what :meth:`capture` saw: remove a mode pushed since, reset the saved one."""
        saved, enabled = state
        mode = getattr(_local, "mode", None)
        if mode is not None and mode is not saved:
            _local.mode = saved
            if _pushed(mode):
                _remove(mode)
                mode.removed = True
        _local.mode = saved
        if saved is not None:
            saved.enabled = enabled
            if saved.removed:
                # Removed here since (a generator's step resumes its own state): push it again.
                saved.removed = False
                _push_below_recorders(saved)


def _fresh_mode() -> Any:
    """A new enabled mode, pushed below the recorders."""
    mode = _mode_class()()
    _push_below_recorders(mode)
    return mode


def invariant_mode() -> bool:
    """Return whether the calling thread is inside a ``batch_invariant=True`` scope."""
    mode = getattr(_local, "mode", None)
    return mode is not None and mode.enabled


def is_recorder(mode: object) -> bool:
    """Return whether a dispatch mode is one of this library's recorders (they stay on top)."""
    return getattr(mode, "deterministic_recorder", False) is True


def _pushed(mode: Any) -> bool:
    """Whether ``mode`` is on this thread's dispatch stack."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack  # noqa: PLC0415

    return any(entry is mode for entry in _get_current_dispatch_mode_stack())


def _push_below_recorders(mode: Any) -> None:
    """Push ``mode``, below the recorders on top of the stack, so that they see whole ops."""
    from torch.utils import _python_dispatch as dispatch  # noqa: PLC0415 - torch stays optional

    above = []
    depth: Any = dispatch._len_torch_dispatch_stack  # type: ignore[attr-defined]
    while depth() and is_recorder(dispatch._get_current_dispatch_mode()):
        above.append(dispatch._pop_mode())
    try:
        mode.__enter__()
    finally:
        for recorder in reversed(above):
            dispatch._push_mode(recorder)


def _remove(mode: Any) -> None:
    """Pop ``mode`` from this thread's dispatch stack, wherever it is, keeping the others."""
    from torch.utils import _python_dispatch as dispatch  # noqa: PLC0415 - torch stays optional

    above = []
    depth: Any = dispatch._len_torch_dispatch_stack  # type: ignore[attr-defined]
    try:
        while depth():
            top: Any = dispatch._get_current_dispatch_mode()
            if top is mode:
                top.__exit__(None, None, None)
                break
            above.append(dispatch._pop_mode())
    finally:
        for other in reversed(above):
            dispatch._push_mode(other)


def _padded(tensor: Any, size: int) -> Any:
    """``tensor`` as a contiguous tensor of ``size`` rows, zero-padded, 64-byte aligned.

    A copy unless the tensor already is exactly that: a strided or unaligned view would
    reach the kernel with another layout than a single row's copy does, and MKL treats
    layouts differently (measured: ``mv`` on a strided view differs from ``mv`` on a
    copy). Blocks of :data:`ROWS` rows then start at multiples of 64 bytes.
    """
    shape = (size, *tensor.shape[1:])
    rows = tensor.shape[0]
    if rows == size and tensor.is_contiguous() and tensor.data_ptr() % 64 == 0:
        return tensor
    padded = tensor.new_zeros(shape) if rows < size else tensor.new_empty(shape)
    padded[:rows] = tensor
    return padded


def _dense(matrix: Any) -> Any:
    """``matrix`` as it is when dense in rows or in columns (a weight, or its transpose), else a copy.

    MKL takes another path for another layout, and a strided view's layout can differ
    between a batch and a single row; a weight's never does, and is not copied.
    """
    if matrix.is_contiguous() or matrix.t().is_contiguous():
        return matrix
    return matrix.contiguous()


def _rows(a: Any, b: Any, bias: Any, beta: Any, alpha: Any) -> Any:
    """``beta * bias + alpha * (a @ b)`` with the rows of ``a`` in fixed blocks (no bias: ``a @ b``)."""
    torch = loaded_module("torch")
    assert torch is not None
    if a.dtype == torch.float64:
        return _rows_even(a, b, bias, beta, alpha)
    m, n = a.shape[0], b.shape[1]
    blocks = -(-m // ROWS)
    a_t = _padded(a, blocks * ROWS).view(blocks, ROWS, -1).transpose(1, 2)
    b_t = _dense(b.t())
    # Each block's product is written where the next step reads it: no copy per block.
    products = a.new_empty((n, blocks * ROWS))
    if bias is None:
        for block in range(blocks):
            torch.mm(b_t, a_t[block], out=products[:, block * ROWS : (block + 1) * ROWS])
    else:
        full = bias.expand(m, n)
        if full.stride(0) == 0:  # the same bias for every row (a linear layer's)
            bias_t = full[0][:, None].expand(n, ROWS)
            biases = [bias_t] * blocks
        else:
            padded = _padded(full, blocks * ROWS).view(blocks, ROWS, n).transpose(1, 2)
            biases = list(padded)
        for block in range(blocks):
            window = products[:, block * ROWS : (block + 1) * ROWS]
            torch.addmm(biases[block], b_t, a_t[block], beta=beta, alpha=alpha, out=window)
    # Contiguous, as torch's own result: with one block the reshape would be a view.
    return products[:, :m].t().contiguous()


def _rows_even(a: Any, b: Any, bias: Any, beta: Any, alpha: Any) -> Any:
    """:func:`_rows` for float64: blocks multiplied as they are, with an even number of columns.

    Measured on MKL: in float64 the transposed product's columns depend on their
    position in the block, and the plain product's rows do when the output has an odd
    number of columns; with an even number (a zero column appended) they do not.
    """
    torch = loaded_module("torch")
    assert torch is not None
    m, n = a.shape[0], b.shape[1]
    width = n + n % 2
    blocks = -(-m // ROWS)
    b = torch.cat([b, b.new_zeros((b.shape[0], 1))], dim=1) if width != n else _dense(b)
    rows = _padded(a, blocks * ROWS)
    out = a.new_empty((blocks * ROWS, width))
    full = None
    if bias is not None:
        full = torch.zeros((blocks * ROWS, width), dtype=out.dtype, device=out.device)
        full[:m, :n] = bias.expand(m, n)
    for block in range(blocks):
        window = slice(block * ROWS, (block + 1) * ROWS)
        if full is None:
            torch.mm(rows[window], b, out=out[window])
        else:
            torch.addmm(full[window], rows[window], b, beta=beta, alpha=alpha, out=out[window])
    return out[:m, :n] if width == n else out[:m, :n].contiguous()


def _mm(a: Any, b: Any) -> Any:
    return _rows(a, b, None, 1, 1)


def _addmm(bias: Any, a: Any, b: Any, *, beta: Any = 1, alpha: Any = 1) -> Any:
    return _rows(a, b, bias, beta, alpha)


def _mv(a: Any, v: Any) -> Any:
    return _rows(a, v[:, None], None, 1, 1)[:, 0]


def _addmv(bias: Any, a: Any, v: Any, *, beta: Any = 1, alpha: Any = 1) -> Any:
    return _rows(a, v[:, None], bias.expand(a.shape[0])[:, None], beta, alpha)[:, 0]


def _bmm(a: Any, b: Any) -> Any:
    # Each entry through _rows, as mm computes rows: matmul picks bmm or mm by the batch
    # size and by contiguity, and the two must agree on every row.
    out = a.new_empty((a.shape[0], a.shape[1], b.shape[2]))
    for entry in range(a.shape[0]):
        out[entry] = _rows(a[entry], b[entry], None, 1, 1)
    return out


def _baddbmm(bias: Any, a: Any, b: Any, *, beta: Any = 1, alpha: Any = 1) -> Any:
    out = a.new_empty((a.shape[0], a.shape[1], b.shape[2]))
    full = bias.expand(out.shape)
    for entry in range(a.shape[0]):
        out[entry] = _rows(a[entry], b[entry], full[entry], beta, alpha)
    return out


def _into(kernel: Any) -> Any:
    """The ``out=`` form of a kernel (compiled code calls the BLAS through these)."""

    def with_out(*args: Any, out: Any, **kwargs: Any) -> Any:
        result = kernel(*args, **kwargs)
        if out.shape != result.shape:
            out.resize_(result.shape)
        return out.copy_(result)

    return with_out


def _kernels(torch: Any) -> dict[Any, Any]:
    aten = torch.ops.aten
    functional = {
        aten.mm: _mm,
        aten.addmm: _addmm,
        aten.mv: _mv,
        aten.addmv: _addmv,
        aten.bmm: _bmm,
        aten.baddbmm: _baddbmm,
    }
    kernels = {}
    for packet, kernel in functional.items():
        kernels[packet.default] = kernel
        kernels[packet.out] = _into(kernel)
    return kernels


def _convolution(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A convolution over fixed blocks of :data:`ENTRIES` entries of ``N`` (unbatched input: as it is)."""
    torch = loaded_module("torch")
    assert torch is not None
    x, rest = args[0], args[1:]
    if x.dim() != rest[0].dim():
        return func(*args, **kwargs)
    n = x.shape[0]
    if n == 0:
        return func(*args, **kwargs)
    # Each block in its own allocation: the same alignment as a single entry's.
    parts = [
        func(_padded(x[start : start + ENTRIES], ENTRIES), *rest, **kwargs) for start in range(0, n, ENTRIES)
    ]
    return torch.cat(parts)[:n]


def _plain(values: tuple[Any, ...], tensor_types: tuple[type, ...], strided: Any) -> bool:
    """Whether every tensor among ``values`` is a plain strided tensor with data.

    Subclasses, sparse and nested tensors, and meta tensors (shapes without data, as
    tracing uses) go to torch's own kernel.
    """
    for value in values:
        if isinstance(value, tensor_types[0]) and (
            type(value) not in tensor_types
            or value.layout != strided  # type: ignore[attr-defined]
            or value.is_meta  # type: ignore[attr-defined]
        ):
            return False
    return True


_MODE_CLASS: list[type] = []


def _mode_class() -> type:
    """The dispatch mode class, defined on first use (it needs torch)."""
    if not _MODE_CLASS:
        import torch  # noqa: PLC0415 - torch stays optional
        from torch.utils._python_dispatch import TorchDispatchMode  # noqa: PLC0415

        kernels = _kernels(torch)
        convolution = torch.ops.aten.convolution.default
        tensor_types = (torch.Tensor, torch.nn.Parameter)
        strided = torch.strided

        class _InvariantMode(TorchDispatchMode):  # type: ignore[no-untyped-call]
            """Computes the covered ops in fixed-shape pieces while ``enabled``."""

            def __init__(self) -> None:
                super().__init__()  # type: ignore[no-untyped-call]
                self.enabled = True
                self.removed = False  # taken off the stack by a scope's exit

            @classmethod
            def ignore_compile_internals(cls) -> bool:
                # With a mode that does not, Dynamo skips every compiled function first
                # called inside the scope, and remembers that after the scope. The
                # compiled code's own calls into the BLAS (``mm.out`` and kin) still
                # come through here.
                return True

            def __torch_dispatch__(
                self,
                func: Any,
                types: Any,
                args: tuple[Any, ...] = (),
                kwargs: dict[str, Any] | None = None,
            ) -> Any:
                kwargs = kwargs or {}
                # Every op of the thread comes through here: the others leave at once.
                kernel = kernels.get(func)
                if kernel is None and func is not convolution:
                    return func(*args, **kwargs)
                if not self.enabled or not _plain(args, tensor_types, strided):
                    return func(*args, **kwargs)
                if kernel is None:
                    return _convolution(func, args, kwargs)
                return kernel(*args, **kwargs)

        _MODE_CLASS.append(_InvariantMode)
    return _MODE_CLASS[0]
