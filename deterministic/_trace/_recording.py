"""Recording: ``with trace(path):`` writes every torch operator call of the block to a file.

The recorder is a ``TorchDispatchMode``: it sees each operator call below autograd,
forward and backward, with the tensors it consumes and produces. Module paths come
from global forward hooks (which leave autograd's graph alone); ops run by autograd
in backward are attributed through labels the hooks put on the graph's nodes.
Scope entries and exits arrive through the scope module's observer hook.

Only the thread that entered the trace, in the process that entered it, is recorded:
a forked child (a DataLoader worker) stops recording at the fork and never writes to
the parent's file. Batches that DataLoader workers send are recorded when the loader
hands them to the loop, in the loader's order, as one call of :data:`BATCH_OP`; the
unpickling of their arrival (in arrival order, a race) is not recorded.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import warnings
import weakref

from .. import _scope
from ._attribution import Attribution, tensors_in
from ._digesting import DIGEST_NAME, DigestCache, args_text, describe, digest_tensor
from ._format import _SMALL, BATCH_OP, CHANGED, FRESH, NO_DIGEST, AlertEvent, Writer, varint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType, TracebackType
    from typing import Any

__all__ = ["BATCH_OP", "Recording", "environment", "trace"]

#: Environment variables that change numerics or kernel choices.
ENVIRONMENT_VARIABLES = ("CUBLAS_WORKSPACE_CONFIG", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
ENVIRONMENT_PREFIXES = ("MKL_", "OPENBLAS_", "ONEDNN_", "DNNL_", "KMP_")

#: Torch's words in a deterministic-algorithms alert.
ALERT_TEXT = "does not have a deterministic implementation"

# Roles of an operator's arguments.
IN, OUT, WRITE, OVERWRITE = 0, 1, 2, 3

#: In-place ops whose result does not depend on the values ``self`` held before.
_OVERWRITING = frozenset(
    {
        "fill_",
        "zero_",
        "uniform_",
        "normal_",
        "random_",
        "exponential_",
        "geometric_",
        "cauchy_",
        "log_normal_",
        "bernoulli_",
        "copy_",
    }
)
#: Ops whose outputs hold uninitialised memory: recorded without a digest.
_UNINITIALIZED = frozenset(
    {
        "empty",
        "empty_like",
        "empty_strided",
        "empty_permuted",
        "new_empty",
        "new_empty_strided",
        "resize_",
        "resize_as_",
        "_empty_affine_quantized",
        "_empty_per_channel_affine_quantized",
    }
)

_ACTIVE: list[Recording] = []
_ACTIVE_LOCK = threading.Lock()


class _OpInfo:
    """What the recorder needs to know about one operator overload, computed once."""

    __slots__ = (
        "generator",
        "keywords",
        "name",
        "positional",
        "random",
        "simple",
        "uninitialized",
        "view",
    )

    def __init__(self, func: Any, torch: Any) -> None:
        schema = func._schema
        base = schema.name.split("::", 1)[-1]
        self.name = f"{schema.name}.{schema.overload_name}" if schema.overload_name else schema.name
        self.uninitialized = base in _UNINITIALIZED
        # A view reads no values and makes none: its output is its input, seen another way.
        # lift_fresh is where a tensor made outside torch ops (from_numpy, a literal) enters: a read.
        self.view = (
            bool(schema.returns)
            and not base.startswith("lift")
            and all(ret.alias_info is not None and not ret.alias_info.is_write for ret in schema.returns)
        )
        self.random = torch.Tag.nondeterministic_seeded in func.tags
        self.generator: tuple[int, str] | None = None
        positional: list[tuple[int, int]] = []
        keywords: list[tuple[str, int]] = []
        for index, argument in enumerate(schema.arguments):
            kind = str(argument.type)
            if "Generator" in kind:
                self.generator = (index, argument.name)
                self.random = True
            if "Tensor" not in kind:
                continue
            alias = argument.alias_info
            role = IN
            if argument.is_out:
                role = OUT
            elif alias is not None and alias.is_write:
                role = OVERWRITE if base in _OVERWRITING and argument.name == "self" else WRITE
            if argument.kwarg_only:
                keywords.append((argument.name, role))
            else:
                positional.append((index, role))
        self.positional = tuple(positional)
        self.keywords = tuple(keywords)
        # Tensors all positional, read (and perhaps written in place): the fast path.
        self.simple = not self.random and not keywords and all(role in (IN, WRITE) for _, role in positional)


def environment(torch: Any) -> dict[str, Any]:
    """What a run's numerics depend on besides its code and data: versions, threads, flags, devices.

    Args:
        torch: The torch module.

    Returns:
        Plain values, for the trace header.
    """
    numpy = sys.modules.get("numpy")
    backends = torch.backends
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": getattr(numpy, "__version__", None),
        "threads": torch.get_num_threads(),
        "interop threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": bool(backends.cudnn.deterministic),
        "cudnn_benchmark": bool(backends.cudnn.benchmark),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "machine": platform.machine(),
        "cpu capability": _cpu_capability(torch),
    }
    cuda = torch.cuda
    if cuda.is_initialized():  # never initialise CUDA just to name the devices
        facts["devices"] = [cuda.get_device_name(index) for index in range(cuda.device_count())]
        facts["tf32 matmul"] = bool(backends.cuda.matmul.allow_tf32)
        facts["tf32 cudnn"] = bool(backends.cudnn.allow_tf32)
    variables = {
        name: value
        for name, value in os.environ.items()
        if name in ENVIRONMENT_VARIABLES or name.startswith(ENVIRONMENT_PREFIXES)
    }
    facts["environment variables"] = dict(sorted(variables.items()))
    return facts


def _cpu_capability(torch: Any) -> str | None:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - older torch: not known
        return None


class Recording(Attribution):
    """One active trace: the file being written and what the recorder tracks.

    Returned by ``with trace(path) as recording``.

    Attributes:
        path: The trace file.
        alerts: The ops torch flagged as nondeterministic so far (its ``warn_only``
            alerts), once per op and line, as recorded in the file.
    """

    def __init__(self, path: str, rehash: bool) -> None:
        """Open the file and write the header (nothing is hooked yet).

        Args:
            path: The trace file, created or truncated.
            rehash: Hash every input at every use (see :class:`trace`).
        """
        import torch  # noqa: PLC0415 - torch stays optional

        super().__init__(torch)
        self.path = path
        self._generator_type = torch.Generator
        self._pid = os.getpid()
        # _off is set in a forked child (the recording belongs to the parent); _paused
        # while a DataLoader receives a worker's batch (its arrival order is a race).
        self._paused = 0
        self._worker: int | None = None
        self._environment = environment(torch)
        header = {
            "format": 2,
            "digest": DIGEST_NAME,
            "argv": list(sys.argv),
            "environment": self._environment,
            "rehash": rehash,
            "pid": self._pid,
        }
        # Unbuffered: a forked child must not inherit bytes it could flush into this file.
        self._writer = Writer(open(path, "wb", buffering=0), header)  # noqa: SIM115 - closed by stop()
        self._infos: dict[Any, _OpInfo] = {}
        self._cache = DigestCache()
        self._rehash = rehash
        self._generators: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._alerted: set[tuple[str, str]] = set()
        self.alerts: list[AlertEvent] = []
        self._last = ("<no op yet>", "<outside user code>")
        self._stoppers: list[Any] = []
        self._mode: Any = None
        self._compiled_warned = False
        self._dynamo_file = os.path.join(os.path.dirname(os.path.abspath(torch.__file__)), "_dynamo", "")

    @property
    def ops(self) -> int:
        """How many operator calls have been recorded so far."""
        return self._writer.ops

    def start(self) -> None:
        """Hook modules, scopes and DataLoaders, and push the dispatch mode."""
        self._stoppers += self.hook()
        self._stoppers.append(_scope.observe(self._on_scope))
        self._stoppers.append(self._catch_alerts())
        self._stoppers.append(_hook_loaders(self._torch))
        _watch_forks()
        self._mode = _mode_class(self._torch)(self)
        self._mode.__enter__()

    def forked(self) -> None:
        """Stop for good in a forked child: the file and the thread are the parent's."""
        self._off = True
        self._writer.abandon()

    def _catch_alerts(self) -> Callable[[], None]:
        """Turn torch's warn_only alerts into trace records; return what undoes it.

        Torch raises an alert inside a kernel but Python sees it only when the
        outermost torch call returns, after the op was recorded: so the alert is
        attributed to the last op recorded, at its location. An ``always`` filter for
        alerts goes first, so that none is lost to an earlier "once per location".
        """
        previous = warnings.showwarning

        def show(  # noqa: PLR0917 - the signature of warnings.showwarning
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: Any = None,
            line: str | None = None,
        ) -> None:
            text = str(message)
            if ALERT_TEXT not in text or self._off or threading.get_ident() != self._thread:
                previous(message, category, filename, lineno, file, line)
                return
            if self._last not in self._alerted:
                self._alerted.add(self._last)
                message = text.split(", but you set", 1)[0]
                self._writer.alert(*self._last, message)
                self.alerts.append(AlertEvent(*self._last, message, max(self.ops - 1, 0)))

        warnings.showwarning = show
        warnings.filterwarnings("always", message=f".*{ALERT_TEXT}", category=UserWarning)
        alert_filter = warnings.filters[0]

        def undo() -> None:
            if warnings.showwarning is show:
                warnings.showwarning = previous
            filters: list[Any] = warnings.filters  # type: ignore[assignment]  # a list at run time
            if alert_filter in filters:
                filters.remove(alert_filter)
                mutated = getattr(warnings, "_filters_mutated", None)
                if mutated is not None:
                    mutated()  # let the C implementation see the change (it caches filters)

        return undo

    def stop(self, complete: bool) -> None:
        """Pop the mode, unhook, and close the file.

        Args:
            complete: Whether the block ended normally (marked in the file).
        """
        try:
            if self._mode is not None:
                self._mode.__exit__(None, None, None)
        finally:
            try:
                for stop in reversed(self._stoppers):
                    stop()
            finally:
                now: dict[str, Any] | None
                try:
                    now = environment(self._torch)
                except Exception:  # noqa: BLE001 - the trace must close whatever state torch is in
                    now = None
                self._writer.close(complete, now if now != self._environment else None)

    # -- where an op runs -------------------------------------------------------------

    def _first_user_code(self, frame: FrameType) -> None:
        if not self._compiled_warned and self._under_compile(frame):
            self._warn_compiled(frame)

    def _under_compile(self, frame: FrameType | None) -> bool:
        """Whether a ``torch.compile`` wrapper is calling this frame (checked once per code object)."""
        while frame is not None:
            code = frame.f_code
            if code.co_name == "compile_wrapper" and code.co_filename.startswith(self._dynamo_file):
                return True
            frame = frame.f_back
        return False

    def _warn_compiled(self, frame: FrameType) -> None:
        self._compiled_warned = True
        warnings.warn_explicit(
            "a torch.compile'd function ran inside trace(): under the tracer it runs eagerly, op by "
            "op, so its numbers can differ from the compiled run's in the last bits; the trace "
            "compares traced runs with each other, and both run the same eager ops",
            TracedCompileWarning,
            frame.f_code.co_filename,
            frame.f_lineno,
        )

    def _on_scope(self, event: str, scope: Any) -> None:
        if self._off or threading.get_ident() != self._thread:
            return
        self._writer.scope(1 if event == "enter" else 2, scope.seed, self._location(sys._getframe(1)))

    # -- one operator call ------------------------------------------------------------

    def record(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run an operator call and record it.

        Args:
            func: The ``OpOverload``.
            args: Its positional arguments.
            kwargs: Its keyword arguments.

        Returns:
            What the call returned.
        """
        if self._off or self._paused or threading.get_ident() != self._thread:
            return func(*args, **kwargs)
        info = self._infos.get(func)
        if info is None:
            info = self._infos[func] = _OpInfo(func, self._torch)
        phase, module = self.attribute()
        location = self._location(sys._getframe(2))
        if info.view:
            result = func(*args, **kwargs)
            inputs, outputs, rng = self._view(info, args, kwargs, result)
        elif info.simple and not kwargs and not self._rehash:
            inputs, written = self._simple_inputs(info, args)
            rng = None
            result = func(*args)
            outputs = self._outputs(info, result, written)
        else:
            inputs, written, device = self._inputs(info, args, kwargs)
            rng = self._rng(info, args, kwargs, device) if info.random else None
            result = func(*args, **kwargs)
            outputs = self._outputs(info, result, written)
        text = args_text(args, self._tensor_type, self._generator_type)
        if kwargs:
            text += " " + args_text(kwargs, self._tensor_type, self._generator_type)
        self._write(info.name, module, phase, location, text, inputs, outputs, rng)
        self._last = (info.name, location)
        return result

    def record_batch(self, batch: Any, worker: int | None, frame: FrameType | None) -> None:
        """Record a batch a DataLoader worker produced, as the loader hands it to the loop.

        Args:
            batch: The batch.
            worker: The worker that produced it.
            frame: The frame to look for the user's line from.
        """
        if self._off or self._paused or threading.get_ident() != self._thread:
            return
        outputs: list[tuple[str, bytes | None, int, int]] = []
        index = self._writer.ops
        for tensor in tensors_in(batch, self._tensor_type):
            digest = digest_tensor(tensor)
            self._cache.store(tensor, digest, index)
            if digest is None:
                outputs.append((describe(tensor, "no digest"), None, NO_DIGEST, 0))
                continue
            outputs.append((describe(tensor), digest, 0, 0))
        where = f"worker {worker}" if worker is not None else "worker ?"
        location = self._location(frame)
        self._write(BATCH_OP, None, 0, location, where, [], outputs, None)

    def _view(
        self, info: _OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> tuple[list[tuple[str, bytes | None, int, int]], list[tuple[str, bytes | None, int, int]], None]:
        """Describe a view op's tensors without hashing: the ops that read them hash them.

        A view's value is its input's, so it keeps the input's producer.
        """
        tensor_type = self._tensor_type
        cache = self._cache
        producer = None
        inputs: list[tuple[str, bytes | None, int, int]] = []
        for _, value in _arguments(info, args, kwargs):
            for tensor in tensors_in(value, tensor_type):
                if producer is None:
                    producer = cache.producer(tensor)
                inputs.append((describe(tensor, "viewed"), None, NO_DIGEST, 0))
        outputs: list[tuple[str, bytes | None, int, int]] = []
        for tensor in tensors_in(result, tensor_type):
            cache.store(tensor, None, producer)
            outputs.append((describe(tensor, "view"), None, NO_DIGEST, 0))
        return inputs, outputs, None

    def _inputs(
        self, info: _OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[tuple[str, bytes | None, int, int]], list[Any], Any]:
        """Digest what a call consumes: (records, tensors it will write, first tensor's device)."""
        inputs: list[tuple[str, bytes | None, int, int]] = []
        written: list[Any] = []
        device = None
        tensor_type = self._tensor_type
        for role, value in _arguments(info, args, kwargs):
            if isinstance(value, tensor_type):
                tensors: Any = (value,)
            elif isinstance(value, (tuple, list)):
                tensors = tensors_in(value, tensor_type)
            else:
                continue
            for tensor in tensors:
                if device is None and info.random:
                    device = tensor.device
                if role != IN:
                    written.append(tensor)
                    if role == OUT:
                        continue
                    if role == OVERWRITE:
                        inputs.append((describe(tensor, "overwritten"), None, NO_DIGEST, 0))
                        continue
                inputs.append(self._input(tensor))
        return inputs, written, device

    def _simple_inputs(
        self, info: _OpInfo, args: tuple[Any, ...]
    ) -> tuple[list[tuple[str, bytes | None, int, int]], list[Any]]:
        """The inputs of a call whose tensors are all positional and read (most calls), fast.

        Returns:
            The input records and the tensors the call writes in place (they are read first).
        """
        inputs = []
        written = []
        tensor_type = self._tensor_type
        count = len(args)
        for index, role in info.positional:
            if index >= count:
                break
            value = args[index]
            if type(value) is not tensor_type and not isinstance(value, tensor_type):
                if isinstance(value, (tuple, list)):
                    tensors = tensors_in(value, tensor_type)
                    inputs += [self._input(tensor) for tensor in tensors]
                    if role == WRITE:
                        written += tensors
                continue
            if role == WRITE:
                written.append(value)
            inputs.append(self._input(value))
        return inputs, written

    def _input(self, tensor: Any) -> tuple[str, bytes | None, int, int]:
        """The record of a tensor a call reads: from the cache while it is valid for this object."""
        entry = None if self._rehash else self._cache.valid(tensor)
        if entry is not None and entry[4] is not None and entry[6] is not None:
            # The common case: a value a traced op produced (or read before), unchanged since.
            producer = entry[5]
            if producer is None:
                return (entry[6], entry[4], FRESH, 0)
            return (entry[6], entry[4], 0, self._writer.ops - producer)
        description = describe(tensor)
        digest, producer, changed = self._cache.read(tensor, self._rehash, description)
        flags = CHANGED if changed else 0
        distance = 0
        if producer is None:
            flags |= FRESH  # no traced op produced it: it entered torch here
        else:
            distance = self._writer.ops - producer
        if digest is None:
            return (describe(tensor, "no digest"), None, flags | NO_DIGEST, distance)
        return (description, digest, flags, distance)

    def _outputs(
        self, info: _OpInfo, result: Any, written: list[Any] | tuple[()]
    ) -> list[tuple[str, bytes | None, int, int]]:
        """Digest what a call produced: its results, and the tensors it wrote that it did not return."""
        cache = self._cache
        for tensor in written:
            cache.written(tensor)
        outputs: list[tuple[str, bytes | None, int, int]] = []
        tensor_type = self._tensor_type
        if isinstance(result, tensor_type):
            returned: list[Any] = [result]
        elif isinstance(result, (tuple, list)):
            returned = tensors_in(result, tensor_type)
        else:
            returned = []
        if written:
            returned += [t for t in written if not any(t is r for r in returned)]
        index = self._writer.ops
        for tensor in returned:
            if info.uninitialized:
                cache.written(tensor)  # fresh memory: whatever was cached for this address is stale
                cache.store(tensor, None, index)
                outputs.append((describe(tensor, "uninitialized"), None, NO_DIGEST, 0))
                continue
            digest = digest_tensor(tensor)
            if digest is None:
                cache.store(tensor, digest, index)
                outputs.append((describe(tensor, "no digest"), None, NO_DIGEST, 0))
                continue
            description = describe(tensor)
            cache.store(tensor, digest, index, description)
            outputs.append((description, digest, 0, 0))
        if not returned and result is not None:
            outputs.append((_value_text(result), None, NO_DIGEST, 0))
        return outputs

    def _write(  # noqa: PLR0917 - the fields of one record
        self,
        name: str,
        module: str | None,
        phase: int,
        location: str,
        text: str,
        inputs: list[tuple[str, bytes | None, int, int]],
        outputs: list[tuple[str, bytes | None, int, int]],
        rng: tuple[str, int, bytes] | None,
    ) -> None:
        writer = self._writer
        writer.start_op()
        try:
            writer.reserve(6 + len(inputs) + len(outputs))
            ref = writer.ref
            tags = writer.tags
            parts = [
                ref(name),
                ref(module) if module is not None else b"\0",
                _SMALL[phase],
                ref(location),
                ref(text),
                varint(len(inputs)),
            ]
            append = parts.append
            for description, digest, flags, distance in inputs:
                append(tags(description)[flags])
                if digest is not None:
                    append(digest)
                append(_SMALL[distance] if distance < 128 else varint(distance))
            append(varint(len(outputs)))
            for description, digest, flags, _distance in outputs:
                append(tags(description)[flags])
                if digest is not None:
                    append(digest)
            if rng is None:
                append(b"\0")
            else:
                parts += (b"\1", ref(rng[0]), varint(rng[1]), rng[2])
            fields = b"".join(parts)
        except BaseException:
            writer.end_op()
            raise
        writer.op(fields)

    def _rng(
        self, info: _OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any], device: Any
    ) -> tuple[str, int, bytes] | None:
        """The generator a random op is about to draw from: (label, initial seed, state digest)."""
        torch = self._torch
        generator = None
        if info.generator is not None:
            index, name = info.generator
            generator = args[index] if index < len(args) else kwargs.get(name)
        if generator is None:
            if device is None:
                device = kwargs.get("device")
                if device is None:
                    get_default = getattr(torch, "get_default_device", None)
                    device = get_default() if get_default is not None else "cpu"
            device = torch.device(device)
            if device.type == "cpu":
                generator = torch.default_generator
            elif device.type == "cuda":
                index = device.index if device.index is not None else torch.cuda.current_device()
                generator = torch.cuda.default_generators[index]
            else:
                return None
            label = f"default {device.type if device.type == 'cpu' else generator.device} generator"
        else:
            known = self._generators.get(generator)
            if known is None:
                known = f"torch.Generator #{len(self._generators) + 1} ({generator.device})"
                self._generators[generator] = known
            label = known
        state = digest_tensor(generator.get_state())
        return label, generator.initial_seed(), state or b"\0" * 16


class TracedCompileWarning(UserWarning):
    """A ``torch.compile``'d function ran inside a trace, eagerly (its numerics may differ)."""


def _hook_loaders(torch: Any) -> Callable[[], None]:
    """Record worker batches where the loop receives them; return what undoes it.

    ``_MultiProcessingDataLoaderIter._next_data`` is wrapped so that the unpickling
    of batches (in arrival order, a race between workers) is not recorded, and the
    batch is recorded once it is handed out (in the loader's order). ``_process_data``
    is wrapped to learn which worker produced it.
    """
    try:
        from torch.utils.data import dataloader  # noqa: PLC0415
    except ImportError:  # pragma: no cover - part of torch
        return lambda: None
    iterator = getattr(dataloader, "_MultiProcessingDataLoaderIter", None)
    next_data = getattr(iterator, "_next_data", None)
    process_data = getattr(iterator, "_process_data", None)
    if iterator is None or next_data is None or process_data is None:
        return lambda: None

    def traced_next_data(self: Any) -> Any:
        recording = _ACTIVE[0] if _ACTIVE else None
        if recording is None or recording._off or threading.get_ident() != recording._thread:
            return next_data(self)
        # Restored by assignment, not by a decrement: a Ctrl-C landing anywhere here leaves
        # the recording exactly as it was found.
        paused = recording._paused
        try:
            recording._paused = paused + 1
            recording._worker = None
            batch = next_data(self)
        finally:
            recording._paused = paused
        recording.record_batch(batch, recording._worker, sys._getframe(1))
        return batch

    def traced_process_data(self: Any, data: Any, worker_idx: Any) -> Any:
        recording = _ACTIVE[0] if _ACTIVE else None
        if recording is not None and threading.get_ident() == recording._thread:
            recording._worker = worker_idx
        return process_data(self, data, worker_idx)

    iterator._next_data = traced_next_data
    iterator._process_data = traced_process_data

    def undo() -> None:
        if iterator.__dict__.get("_next_data") is traced_next_data:
            iterator._next_data = next_data
        if iterator.__dict__.get("_process_data") is traced_process_data:
            iterator._process_data = process_data

    return undo


_FORK_WATCH: list[bool] = []


def _watch_forks() -> None:
    """Stop every active recording in a forked child (registered once per process)."""
    if not _FORK_WATCH and hasattr(os, "register_at_fork"):
        _FORK_WATCH.append(True)
        os.register_at_fork(after_in_child=_after_fork)


def _after_fork() -> None:
    for recording in _ACTIVE:
        recording.forked()


def _value_text(value: Any) -> str:
    """A non-tensor result as text: plain values exactly, other objects by type (a repr shows addresses)."""
    if isinstance(value, (bool, int, float, complex, str)):
        return f"py:{type(value).__name__} {value!r}"[:200]
    return f"py:{type(value).__name__}"


def _arguments(info: _OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[int, Any]]:
    """The tensor-typed arguments of a call, with their roles."""
    found = [(role, args[index]) for index, role in info.positional if index < len(args)]
    if kwargs:
        found += [(role, kwargs[name]) for name, role in info.keywords if name in kwargs]
    return found


_MODE_CLASS: list[type] = []


def _mode_class(torch: Any) -> type:
    """The ``TorchDispatchMode`` subclass, defined on first use (it needs torch)."""
    if not _MODE_CLASS:
        from torch.utils._python_dispatch import TorchDispatchMode  # noqa: PLC0415

        class _RecordingMode(TorchDispatchMode):  # type: ignore[no-untyped-call]
            # The recorder of traces and of batch_divergence (any object with `record`).
            # The batch_invariant flag's mode is pushed below recorders, so that they see
            # whole ops rather than the flag's pieces.
            deterministic_recorder = True

            def __init__(self, recording: Recording) -> None:
                super().__init__()  # type: ignore[no-untyped-call]
                self.recording = recording

            def __torch_dispatch__(
                self,
                func: Any,
                types: Any,
                args: tuple[Any, ...] = (),
                kwargs: dict[str, Any] | None = None,
            ) -> Any:
                return self.recording.record(func, args, kwargs or {})

        _MODE_CLASS.append(_RecordingMode)
    return _MODE_CLASS[0]


class trace:  # noqa: N801 - reads like a function, as ``deterministic`` does
    """Record every torch operator call made in the block into a trace file.

    Each call is recorded with its sequence number, operator name, a digest of every
    tensor it consumes and produces (SHA-256 of the logical elements' bytes, cut to
    128 bits), the ``nn.Module`` path and phase it ran under, the user's
    ``file:line``, and, for random ops, the state of the generator drawn from. Scope
    entries and exits and torch's ``warn_only`` nondeterminism alerts are recorded
    too. The file is written as a stream; compare two with :func:`first_divergence`.

    Only the thread that enters the block is traced. One trace records at a time.

    Args:
        path: The file to write (created or truncated).
        rehash: Hash every tensor input at every use. By default the digest of a
            tensor torch reports unchanged (same memory, same version counter, no
            traced op wrote to it) is reused; that misses writes that bypass torch
            (through a ``.numpy()`` view or ctypes) to a tensor already digested.

    Raises:
        TypeError: If ``path`` is not a str or ``os.PathLike``, or ``rehash`` not a bool.
    """

    __slots__ = ("_path", "_rehash")

    def __init__(self, path: str | os.PathLike[str], *, rehash: bool = False) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"trace() path must be a str or os.PathLike, not {type(path).__name__}")
        if not isinstance(rehash, bool):
            raise TypeError(f"trace() rehash must be a bool, not {type(rehash).__name__}")
        self._path = os.fspath(path)
        self._rehash = rehash

    @property
    def path(self) -> str:
        """The trace file."""
        return self._path

    def __repr__(self) -> str:
        return f"trace({self._path!r}, rehash={self._rehash!r})"

    def __enter__(self) -> Recording:
        """Start recording.

        Returns:
            The :class:`Recording`; its ``ops`` counts the calls recorded so far.

        Raises:
            RuntimeError: If a trace is already recording.
            ImportError: If torch is not installed.
        """
        with _ACTIVE_LOCK:
            if _ACTIVE:
                raise RuntimeError(f"a trace is already recording into {_ACTIVE[0].path}; traces do not nest")
            recording = Recording(self._path, self._rehash)
            _ACTIVE.append(recording)
        try:
            recording.start()
        except BaseException:
            _ACTIVE.clear()
            recording.stop(False)
            raise
        return recording

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop recording and close the file (marked complete unless an exception is leaving).

        Raises:
            RuntimeError: If this trace is not the one recording.
        """
        with _ACTIVE_LOCK:
            if not _ACTIVE or _ACTIVE[0].path != self._path:
                raise RuntimeError(f"{self!r} is not recording")
            recording = _ACTIVE.pop()
        recording.stop(exc_type is None)
