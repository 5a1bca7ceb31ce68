"""The trace file: a header line, then compact binary records, written and read as streams.

A file starts with ``DTRACE1`` and a JSON header line, then records, each a type
byte and its fields; numbers are unsigned LEB128 varints, digests 16 raw bytes.
Strings (operator names, module paths, locations, tensor descriptions, argument
texts) are sent once into a table of at most :data:`TABLE_SLOTS` slots and
referred to by slot; when the table is full both sides clear it, so neither the
writer nor the reader grows with the length of a run.

Records:

- ``STRING slot length bytes``: defines a slot.
- ``RESET``: clears the table.
- ``OP op module phase location args n_in (tag [digest])* n_out (tag [digest])* rng``:
  one operator call. A tag is ``description_slot << 3 | flags``; flag 1 marks an input
  seen for the first time (not produced by a traced op: it entered torch here), flag 2
  marks a value that has no digest (uninitialised, meta or fully overwritten), flag 4
  an input whose bytes changed while torch saw no write (found with ``rehash=True``). ``rng``
  is 0, or 1 followed by ``generator_slot initial_seed state_digest``.
- ``SCOPE kind seed location``: a scope entry (1) or exit (2).
- ``ALERT op location message``: an op torch flagged as nondeterministic.
- ``END ops``: the block ended normally after ``ops`` operator calls.

Slot 0 stands for "none" wherever a string is optional.
"""

from __future__ import annotations

import json
import mmap
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

__all__ = [
    "AlertEvent",
    "OpEvent",
    "Reader",
    "RngRecord",
    "ScopeEvent",
    "TensorRecord",
    "Writer",
]

MAGIC = b"DTRACE1\n"
TABLE_SLOTS = 1 << 16
DIGEST_SIZE = 16

STRING, RESET, OP, SCOPE, ALERT, END = 1, 2, 3, 4, 5, 6
FRESH, NO_DIGEST, CHANGED = 1, 2, 4
TAG_SHIFT = 3
PHASES = (None, "forward", "backward")
SCOPE_KINDS = (None, "enter", "exit")

_SMALL = [bytes((n,)) for n in range(128)]


def varint(number: int) -> bytes:
    """Encode a non-negative int as an unsigned LEB128 varint."""
    if number < 0x80:
        return _SMALL[number]
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


class TensorRecord:
    """One tensor (or non-tensor value) an op consumed or produced.

    Attributes:
        description: ``dtype[shape]``, with ``@device`` off the CPU and a note when the
            value has no digest (``uninitialized``, ``meta``, ``overwritten``); a
            non-tensor output reads ``py:type``.
        digest: 16 bytes of SHA-256 of the logical elements' bytes, or ``None``.
        fresh: Whether this input was not produced by an earlier traced op.
        changed: Whether this input's bytes changed since torch last saw them, with no
            torch op writing them (recorded only by ``trace(rehash=True)``).
    """

    __slots__ = ("changed", "description", "digest", "fresh")

    def __init__(self, description: str, digest: bytes | None, fresh: bool, changed: bool = False) -> None:
        self.description = description
        self.digest = digest
        self.fresh = fresh
        self.changed = changed

    def same_value(self, other: TensorRecord) -> bool:
        """Whether both records describe the same value (``fresh`` is not compared)."""
        return self.description == other.description and self.digest == other.digest

    def __str__(self) -> str:
        if self.digest is None:
            return self.description
        return f"{self.description} {self.digest.hex()[:12]}"

    def __repr__(self) -> str:
        return f"TensorRecord({self.description!r}, {self.digest!r}, fresh={self.fresh})"


class RngRecord:
    """The generator a random op drew from, as it was just before the op.

    Attributes:
        generator: ``default cpu generator``, or ``torch.Generator #k (device)`` for
            the k-th explicit generator the trace met.
        initial_seed: The generator's ``initial_seed()``.
        state: 16 bytes of SHA-256 of its ``get_state()``.
    """

    __slots__ = ("generator", "initial_seed", "state")

    def __init__(self, generator: str, initial_seed: int, state: bytes) -> None:
        self.generator = generator
        self.initial_seed = initial_seed
        self.state = state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RngRecord):
            return NotImplemented
        return (self.generator, self.initial_seed, self.state) == (
            other.generator,
            other.initial_seed,
            other.state,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RngRecord({self.generator!r}, {self.initial_seed}, {self.state.hex()[:12]})"


class OpEvent:
    """One operator call of a trace.

    Attributes:
        index: Its position among the trace's operator calls, from 0.
        op: The operator, as ``aten::add.Tensor``.
        module: The ``nn.Module`` path it ran under, or ``None``.
        phase: ``"forward"`` (inside a module's forward), ``"backward"`` (run by
            autograd), or ``None``.
        location: The user's ``file:line``: the innermost frame outside torch and
            this library.
        args: The non-tensor arguments, with tensors shown as ``T``.
        inputs: The tensors consumed.
        outputs: The tensors (and non-tensor values) produced.
        rng: For a random op, its generator before the op; else ``None``.
    """

    __slots__ = ("args", "index", "inputs", "location", "module", "op", "outputs", "phase", "rng")

    def __init__(  # noqa: PLR0917 - one field per attribute, in file order
        self,
        index: int,
        op: str,
        module: str | None,
        phase: str | None,
        location: str,
        args: str,
        inputs: tuple[TensorRecord, ...],
        outputs: tuple[TensorRecord, ...],
        rng: RngRecord | None,
    ) -> None:
        self.index = index
        self.op = op
        self.module = module
        self.phase = phase
        self.location = location
        self.args = args
        self.inputs = inputs
        self.outputs = outputs
        self.rng = rng

    def same_place(self, other: OpEvent) -> bool:
        """Whether both are the same op, under the same module and phase, at the same line."""
        return (self.op, self.module, self.phase, self.location) == (
            other.op,
            other.module,
            other.phase,
            other.location,
        )

    def __repr__(self) -> str:
        return f"<OpEvent #{self.index} {self.op} at {self.location}>"


class ScopeEvent:
    """A scope entry or exit seen while tracing.

    Attributes:
        kind: ``"enter"`` or ``"exit"``.
        seed: The scope's effective seed.
        location: The user's ``file:line``.
        index: How many operator calls came before it.
    """

    __slots__ = ("index", "kind", "location", "seed")

    def __init__(self, kind: str, seed: int, location: str, index: int) -> None:
        self.kind = kind
        self.seed = seed
        self.location = location
        self.index = index

    def __repr__(self) -> str:
        return f"<ScopeEvent {self.kind} seed={self.seed} at {self.location}>"


class AlertEvent:
    """An op torch flagged as nondeterministic on this device (its ``warn_only`` alert).

    Attributes:
        op: The operator.
        location: The user's ``file:line``.
        message: Torch's message.
        index: The operator call's index.
    """

    __slots__ = ("index", "location", "message", "op")

    def __init__(self, op: str, location: str, message: str, index: int) -> None:
        self.op = op
        self.location = location
        self.message = message
        self.index = index

    def __repr__(self) -> str:
        return f"<AlertEvent {self.op} at {self.location}>"


class Writer:
    """Streams records to a file, buffering in memory up to a fixed size."""

    FLUSH_AT = 1 << 20

    def __init__(self, file: BinaryIO, header: dict[str, Any]) -> None:
        """Write the magic and header.

        Args:
            file: A file opened for binary writing; the writer closes it.
            header: Facts about the run, stored as one JSON line.
        """
        self._file = file
        self._buffer = bytearray(MAGIC)
        self._buffer += json.dumps(header, sort_keys=True).encode() + b"\n"
        self._slots: dict[str, int] = {}
        self.ops = 0
        # Scope events and alerts that arrive while an op record is being built (from a GC
        # finaliser entering a scope, say) wait here: they could reset the string table
        # under the record's slots.
        self._building = False
        self._waiting: list[tuple[int, tuple[Any, ...]]] = []

    def start_op(self) -> None:
        """Begin building an op record: other records wait until :meth:`op` writes it."""
        self._building = True

    def slots(self, texts: tuple[str | None, ...]) -> list[int]:
        """Return the slots of ``texts`` (0 for ``None``), defining those not yet in the table.

        The table is cleared first when it could fill up midway, so that the slots
        returned together stay valid for the record they go into.
        """
        table = self._slots
        if len(table) + len(texts) >= TABLE_SLOTS:
            table.clear()
            self._buffer.append(RESET)
        result = []
        for text in texts:
            if text is None:
                result.append(0)
                continue
            slot = table.get(text)
            if slot is None:
                slot = len(table) + 1
                table[text] = slot
                data = text.encode("utf-8", "surrogatepass")
                self._buffer += _SMALL[STRING] + varint(slot) + varint(len(data)) + data
            result.append(slot)
        return result

    def op(self, fields: bytes) -> None:
        """Append an operator call's fields (everything after the type byte)."""
        buffer = self._buffer
        buffer.append(OP)
        buffer += fields
        self.ops += 1
        self.end_op()
        if len(buffer) >= self.FLUSH_AT:
            self.flush()

    def end_op(self) -> None:
        """Stop building an op record (written or abandoned) and write what waited for it."""
        self._building = False
        while self._waiting:
            kind, fields = self._waiting.pop(0)
            if kind == SCOPE:
                self.scope(*fields)
            else:
                self.alert(*fields)

    def scope(self, kind: int, seed: int, location: str) -> None:
        """Append a scope entry (1) or exit (2)."""
        if self._building:
            self._waiting.append((SCOPE, (kind, seed, location)))
            return
        (slot,) = self.slots((location,))
        self._buffer += _SMALL[SCOPE] + _SMALL[kind] + varint(seed) + varint(slot)

    def alert(self, op: str, location: str, message: str) -> None:
        """Append an alert for the last operator call."""
        if self._building:
            self._waiting.append((ALERT, (op, location, message)))
            return
        slots = self.slots((op, location, message))
        self._buffer += _SMALL[ALERT] + b"".join(varint(slot) for slot in slots)

    def flush(self) -> None:
        """Write the buffer to the file."""
        self._file.write(self._buffer)
        self._buffer.clear()

    def close(self, complete: bool) -> None:
        """Flush and close; ``complete`` marks the block as having ended normally."""
        self.end_op()
        if complete:
            self._buffer += _SMALL[END] + varint(self.ops)
        self.flush()
        self._file.close()


class Reader:
    """Reads a trace file as a stream of events, in the order they were recorded.

    Attributes:
        path: The file.
        header: The run facts from the header line.
        complete: After iteration, whether the file ended with the end record
            (``False`` when the traced run stopped without leaving its block).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open a trace and read its header.

        Args:
            path: The trace file.

        Raises:
            ValueError: If the file is not a trace.
            OSError: If it cannot be read.
        """
        self.path = os.fspath(path)
        self.complete = False
        with open(self.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size < len(MAGIC):
                raise ValueError(f"{self.path} is not a deterministic trace (too short)")
            self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        if self._map[: len(MAGIC)] != MAGIC:
            self._map.close()
            raise ValueError(f"{self.path} is not a deterministic trace (no {MAGIC[:-1].decode()} header)")
        end = self._map.find(b"\n", len(MAGIC))
        if end < 0:
            self._map.close()
            raise ValueError(f"{self.path} is not a deterministic trace (no header line)")
        self.header: dict[str, Any] = json.loads(self._map[len(MAGIC) : end])
        self._start = end + 1

    def close(self) -> None:
        """Release the file."""
        self._map.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def events(self) -> Iterator[OpEvent | ScopeEvent | AlertEvent]:  # noqa: PLR0915
        """Yield every event of the file in order.

        Yields:
            Operator calls, scope events and alerts.

        Raises:
            ValueError: If the file is corrupt.
        """
        data = self._map
        size = len(data)
        position = self._start
        table: list[str | None] = [None] * TABLE_SLOTS
        ops = 0

        def number() -> int:
            nonlocal position
            byte = data[position]
            position += 1
            if byte < 0x80:
                return byte
            result = byte & 0x7F
            shift = 7
            while True:
                byte = data[position]
                position += 1
                result |= (byte & 0x7F) << shift
                if byte < 0x80:
                    return result
                shift += 7

        def text() -> str:
            value = table[number()]
            if value is None:
                raise ValueError(f"{self.path} is corrupt: a record refers to an undefined string")
            return value

        def optional() -> str | None:
            slot = number()
            return None if slot == 0 else table[slot]

        def records(count: int, inputs: bool) -> tuple[TensorRecord, ...]:
            nonlocal position
            result = []
            for _ in range(count):
                tag = number()
                description = table[tag >> TAG_SHIFT]
                if description is None:
                    raise ValueError(f"{self.path} is corrupt: a record refers to an undefined string")
                digest = None
                if not tag & NO_DIGEST:
                    digest = data[position : position + DIGEST_SIZE]
                    position += DIGEST_SIZE
                result.append(
                    TensorRecord(
                        description, digest, inputs and bool(tag & FRESH), inputs and bool(tag & CHANGED)
                    )
                )
            return tuple(result)

        try:
            while position < size:
                kind = data[position]
                position += 1
                if kind == STRING:
                    slot = number()
                    length = number()
                    table[slot] = data[position : position + length].decode("utf-8", "surrogatepass")
                    position += length
                elif kind == RESET:
                    table = [None] * TABLE_SLOTS
                elif kind == OP:
                    op = text()
                    module = optional()
                    phase = PHASES[number()]
                    location = text()
                    args = text()
                    inputs = records(number(), True)
                    outputs = records(number(), False)
                    rng = None
                    if data[position]:
                        position += 1
                        generator = text()
                        initial_seed = number()
                        state = data[position : position + DIGEST_SIZE]
                        position += DIGEST_SIZE
                        rng = RngRecord(generator, initial_seed, state)
                    else:
                        position += 1
                    if position > size:
                        return  # cut off mid-record: the run was killed while writing
                    yield OpEvent(ops, op, module, phase, location, args, inputs, outputs, rng)
                    ops += 1
                elif kind == SCOPE:
                    scope_kind = SCOPE_KINDS[number()]
                    seed = number()
                    location = text()
                    yield ScopeEvent(scope_kind or "enter", seed, location, ops)
                elif kind == ALERT:
                    op = text()
                    location = text()
                    message = text()
                    yield AlertEvent(op, location, message, max(ops - 1, 0))
                elif kind == END:
                    number()
                    self.complete = True
                    return
                else:
                    raise ValueError(f"{self.path} is corrupt: unknown record type {kind} at byte {position}")
        except IndexError:
            return  # cut off mid-record: the run was killed while writing
