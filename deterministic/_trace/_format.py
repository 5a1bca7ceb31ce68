"""The trace file: a header line, then checksummed chunks of compact binary records.

A file starts with ``DTRACE2`` and a JSON header line (the run's argv and environment),
then chunks. A chunk is a fixed header (``CHUNK_MARK``, payload length, CRC-32 of the
payload, how many op records it holds, flags, and the scope depth at its start) and a
payload of records followed by the segment boundaries (``ops + 1`` little-endian u32:
where each op's *segment* starts — the records since the previous op record ended, then
the op record — and where the last op record ended). The writer cuts a chunk every
:data:`CHUNK_OPS` operator calls, so two runs that record the same calls write
byte-identical chunks at the same places: the comparison skips equal chunks without
parsing them, and within chunks that differ, compares op segments as bytes and parses
only those that differ. Each chunk starts with an empty string table, so any chunk can
be read on its own. A chunk whose checksum fails, bytes
after the final chunk, or a record that does not parse make the file corrupt; a chunk
cut off by the end of the file is a run killed while writing, and reading stops there.

Records, each a type byte and its fields; numbers are unsigned LEB128 varints, digests
16 raw bytes:

- ``STRING slot length bytes``: defines a slot of the chunk's string table (at most
  :data:`TABLE_SLOTS` slots; ``RESET`` clears it when it would overflow).
- ``OP op module phase location args n_in (tag [digest])* n_out (tag [digest])* rng``:
  one operator call. A tag is ``description_slot << 3 | flags``; flag 1 marks an input
  seen for the first time (not produced by a traced op: it entered torch here), flag 2
  marks a value that has no digest (uninitialised, a view, meta or fully overwritten), flag 4
  an input whose bytes changed while torch saw no write (found with ``rehash=True``). An
  input's tag and digest are followed by the distance back to the op that produced its
  value (0: unknown). ``rng``
  is 0, or 1 followed by ``generator_slot initial_seed state_digest``.
- ``SCOPE kind seed location``: a scope entry (1) or exit (2).
- ``ALERT op location message``: an op torch flagged as nondeterministic.
- ``ENVIRONMENT length json``: the environment (as in the header) when the trace
  stopped, if it changed while tracing (the program set its thread count, say).
- ``END ops``: the block ended normally after ``ops`` operator calls (in the final chunk).

Slot 0 stands for "none" wherever a string is optional.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

__all__ = [
    "AlertEvent",
    "EnvironmentEvent",
    "OpEvent",
    "Reader",
    "RngRecord",
    "ScopeEvent",
    "TensorRecord",
    "Writer",
    "corrupt",
]

MAGIC = b"DTRACE2\n"
TABLE_SLOTS = 1 << 16
DIGEST_SIZE = 16
#: Operator calls per chunk: chunks of equal runs line up and compare as bytes.
CHUNK_OPS = 4096
CHUNK_MARK = 0xC5
#: mark, payload length, CRC-32, op records, flags, scope depth at the chunk's start.
CHUNK_HEADER = struct.Struct("<BIIIBi")
HAS_ALERTS, HAS_SCOPES, FINAL, HAS_ENVIRONMENT = 1, 2, 4, 8

STRING, RESET, OP, SCOPE, ALERT, END, ENVIRONMENT = 1, 2, 3, 4, 5, 6, 7
FRESH, NO_DIGEST, CHANGED = 1, 2, 4
TAG_SHIFT = 3
PHASES = (None, "forward", "backward")
#: The operator name of a batch a DataLoader worker produced, recorded where the loop gets it.
BATCH_OP = "DataLoader.__next__"
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
        producer: For an input, the index of the traced op that produced its value
            (through views), when known.
    """

    __slots__ = ("changed", "description", "digest", "fresh", "producer")

    def __init__(
        self,
        description: str,
        digest: bytes | None,
        fresh: bool,
        changed: bool = False,
        producer: int | None = None,
    ) -> None:
        self.description = description
        self.digest = digest
        self.fresh = fresh
        self.changed = changed
        self.producer = producer

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


class EnvironmentEvent:
    """The environment when the trace stopped, recorded only when it changed while tracing.

    Attributes:
        facts: As the header's ``environment``.
    """

    __slots__ = ("facts",)

    def __init__(self, facts: dict[str, Any]) -> None:
        self.facts = facts


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


def new_table() -> list[str | None]:
    """An empty string table."""
    return [None] * TABLE_SLOTS


def corrupt(path: str, what: str, position: int) -> ValueError:
    """The error for a damaged trace file, naming the damage and its byte offset."""
    return ValueError(f"{path} is corrupt: {what} at byte {position}")


class Writer:
    """Streams records to a file, a chunk at a time."""

    def __init__(self, file: BinaryIO, header: dict[str, Any]) -> None:
        """Write the magic and header.

        Args:
            file: A file opened for binary writing, best unbuffered (a forked child must not
                inherit unwritten bytes); the writer closes it.
            header: Facts about the run, stored as one JSON line.
        """
        self._file: BinaryIO | None = file
        file.write(MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n")
        self._buffer = bytearray()
        # Where each op's segment starts in the payload, and where the last op record ended.
        self._boundaries: list[int] = []
        self._segment = 0
        self._slots: dict[str, int] = {}
        self._refs: dict[str, bytes] = {}  # encoded slots, for op records
        self._tags: dict[str, list[bytes]] = {}  # encoded tags of descriptions, by flags
        self.ops = 0
        self._chunk_ops = 0
        self._flags = 0
        self._depth = 0
        self._chunk_depth = 0
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
        self.reserve(len(texts))
        table = self._slots
        result = []
        for text in texts:
            if text is None:
                result.append(0)
                continue
            slot = table.get(text)
            if slot is None:
                slot = self._define(text)
            result.append(slot)
        return result

    def reserve(self, count: int) -> None:
        """Clear the table now if ``count`` new strings could overflow it midway through a record."""
        if len(self._slots) + count >= TABLE_SLOTS:
            self._clear_table()
            self._buffer.append(RESET)

    def ref(self, text: str) -> bytes:
        """Return the encoded slot of ``text``, defining it if new (call :meth:`reserve` first)."""
        encoded = self._refs.get(text)
        if encoded is None:
            encoded = self._refs[text] = varint(self._define(text))
        return encoded

    def tags(self, text: str) -> list[bytes]:
        """Return the encoded tags of a description, one per flag combination (see :meth:`ref`)."""
        encoded = self._tags.get(text)
        if encoded is None:
            slot = self._slots.get(text) or self._define(text)
            encoded = self._tags[text] = [
                varint(slot << TAG_SHIFT | flags) for flags in range(1 << TAG_SHIFT)
            ]
        return encoded

    def _define(self, text: str) -> int:
        slot = len(self._slots) + 1
        self._slots[text] = slot
        data = text.encode("utf-8", "surrogatepass")
        self._buffer += _SMALL[STRING] + varint(slot) + varint(len(data)) + data
        return slot

    def _clear_table(self) -> None:
        self._slots.clear()
        self._refs.clear()
        self._tags.clear()

    def op(self, fields: bytes | bytearray) -> None:
        """Append an operator call's fields (everything after the type byte)."""
        buffer = self._buffer
        # The op's segment: the records written since the previous op record ended, and this one.
        self._boundaries.append(self._segment)
        buffer.append(OP)
        buffer += fields
        self._segment = len(buffer)
        self.ops += 1
        self._chunk_ops += 1
        self.end_op()
        if self._chunk_ops >= CHUNK_OPS:
            self.cut()

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
        self._depth += 1 if kind == 1 else -1
        self._flags |= HAS_SCOPES

    def alert(self, op: str, location: str, message: str) -> None:
        """Append an alert for the last operator call."""
        if self._building:
            self._waiting.append((ALERT, (op, location, message)))
            return
        slots = self.slots((op, location, message))
        self._buffer += _SMALL[ALERT] + b"".join(varint(slot) for slot in slots)
        self._flags |= HAS_ALERTS

    def cut(self, final: bool = False) -> None:
        """Write the current chunk to the file and start an empty one."""
        payload = self._buffer
        if self._file is None or (not payload and not final):
            return
        boundaries = [*self._boundaries, self._segment]
        payload += struct.pack(f"<{len(boundaries)}I", *boundaries)
        flags = self._flags | (FINAL if final else 0)
        header = CHUNK_HEADER.pack(
            CHUNK_MARK, len(payload), zlib.crc32(payload), self._chunk_ops, flags, self._chunk_depth
        )
        self._file.write(header + payload)
        self._buffer = bytearray()
        self._boundaries = []
        self._segment = 0
        self._clear_table()
        self._chunk_ops = 0
        self._flags = 0
        self._chunk_depth = self._depth

    def close(self, complete: bool, environment: dict[str, Any] | None = None) -> None:
        """Write the last chunk and close.

        Args:
            complete: Whether the block ended normally (an end record is written).
            environment: The environment at the end, when it differs from the header's.
        """
        try:
            self.end_op()
            if environment is not None and self._file is not None:
                data = json.dumps(environment, sort_keys=True).encode()
                self._buffer += _SMALL[ENVIRONMENT] + varint(len(data)) + data
                self._flags |= HAS_ENVIRONMENT
            if complete:
                self._buffer += _SMALL[END] + varint(self.ops)
            self.cut(final=complete)
        finally:
            if self._file is not None:
                self._file.close()

    def abandon(self) -> None:
        """Never write again, dropping what is unwritten (in a forked child: the file is the parent's)."""
        self._buffer = bytearray()
        self._waiting.clear()
        self._file = None


class Chunk:
    """One chunk of a trace file, not yet parsed.

    Attributes:
        offset: Where its header starts in the file.
        payload: Its records.
        ops: How many op records it holds.
        flags: ``HAS_ALERTS | HAS_SCOPES | FINAL`` bits.
        depth: How many scopes were open when it started.
        first: The index of its first op record.
        boundaries: Where each op's segment starts, then where the last op record ends.
        records_end: Where its records end (the boundaries follow).
    """

    __slots__ = ("boundaries", "depth", "first", "flags", "offset", "ops", "payload", "records_end")

    def __init__(  # noqa: PLR0917 - the header's fields
        self,
        offset: int,
        payload: bytes,
        ops: int,
        flags: int,
        depth: int,
        first: int,
        boundaries: tuple[int, ...],
    ) -> None:
        self.offset = offset
        self.payload = payload
        self.ops = ops
        self.flags = flags
        self.depth = depth
        self.first = first
        self.boundaries = boundaries
        self.records_end = len(payload) - 4 * (ops + 1)


class Reader:
    """Reads a trace file, as chunks or as a stream of events, in the order they were recorded.

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
            ValueError: If the file is not a trace, or its header is damaged.
            OSError: If it cannot be read.
        """
        self.path = os.fspath(path)
        self.complete = False
        self.last_op_start = 0  # where the last op record parse_records read starts
        with open(self.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size < len(MAGIC):
                raise ValueError(f"{self.path} is not a deterministic trace (too short)")
            self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        if self._map[: len(MAGIC)] != MAGIC:
            found = bytes(self._map[: len(MAGIC)])
            self._map.close()
            if found.startswith(b"DTRACE"):
                raise ValueError(
                    f"{self.path} is a trace of another format ({found[:-1].decode(errors='replace')}); "
                    f"this version reads {MAGIC[:-1].decode()}: trace the runs again"
                )
            raise ValueError(f"{self.path} is not a deterministic trace (no {MAGIC[:-1].decode()} header)")
        end = self._map.find(b"\n", len(MAGIC))
        if end < 0:
            self._map.close()
            raise ValueError(f"{self.path} is not a deterministic trace (no header line)")
        try:
            header = json.loads(self._map[len(MAGIC) : end])
            if not isinstance(header, dict):
                raise TypeError
        except (ValueError, TypeError):
            self._map.close()
            raise corrupt(self.path, "the header line is not a JSON object", len(MAGIC)) from None
        self.header: dict[str, Any] = header
        self._start = end + 1

    def close(self) -> None:
        """Release the file."""
        self._map.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def chunks(self) -> Iterator[Chunk]:
        """Yield the file's chunks, checking each one's checksum.

        Yields:
            Each complete chunk; a chunk cut off by the end of the file ends the iteration.

        Raises:
            ValueError: If a chunk is damaged, or bytes follow the final chunk.
        """
        data = self._map
        size = len(data)
        position = self._start
        first = 0
        header_size = CHUNK_HEADER.size
        while position < size:
            if self.complete:
                raise corrupt(self.path, f"{size - position} bytes after the end of the trace", position)
            if size - position < header_size:
                if data[position] != CHUNK_MARK:
                    raise corrupt(self.path, "bytes that are not a chunk", position)
                return  # cut off in a chunk header: the run was killed while writing
            mark, length, checksum, ops, flags, depth = CHUNK_HEADER.unpack_from(data, position)
            if mark != CHUNK_MARK:
                raise corrupt(self.path, "bytes that are not a chunk", position)
            start = position + header_size
            if start + length > size:
                return  # cut off mid-chunk: the run was killed while writing
            payload = data[start : start + length]
            if zlib.crc32(payload) != checksum:
                raise corrupt(self.path, "a chunk that fails its checksum", position)
            trailer = 4 * (ops + 1)
            if trailer > length:
                raise corrupt(self.path, "a chunk too short for its op count", position)
            boundaries = struct.unpack_from(f"<{ops + 1}I", payload, length - trailer)
            if boundaries[-1] > length - trailer or list(boundaries) != sorted(boundaries):
                raise corrupt(self.path, "a chunk whose boundaries are out of order", position)
            yield Chunk(position, payload, ops, flags, depth, first, boundaries)
            first += ops
            if flags & FINAL:
                self.complete = True
            position = start + length

    def events(self) -> Iterator[OpEvent | ScopeEvent | AlertEvent | EnvironmentEvent]:
        """Yield every event of the file in order.

        Yields:
            Operator calls, scope events and alerts.

        Raises:
            ValueError: If the file is corrupt.
        """
        for chunk in self.chunks():
            yield from self.parse(chunk)

    def parse(self, chunk: Chunk) -> list[OpEvent | ScopeEvent | AlertEvent | EnvironmentEvent]:
        """Return the events of one chunk.

        Args:
            chunk: A chunk from :meth:`chunks`.

        Returns:
            Its operator calls, scope events and alerts, in order.

        Raises:
            ValueError: If a record does not parse.
        """
        return self.parse_records(chunk, 0, chunk.records_end, new_table(), chunk.first)

    def parse_records(  # noqa: PLR0912, PLR0915 - one parser, every record type
        self,
        chunk: Chunk,
        start: int,
        end: int,
        table: list[str | None],
        first: int,
    ) -> list[OpEvent | ScopeEvent | AlertEvent | EnvironmentEvent]:
        """Return the events of the records in ``chunk.payload[start:end]``.

        Args:
            chunk: A chunk from :meth:`chunks`.
            start: Where the first record starts.
            end: Where the last record ends.
            table: The chunk's string table as it stands at ``start``; updated in place.
            first: The index of the first op record in the range.

        Returns:
            Its operator calls, scope events and alerts, in order.

        Raises:
            ValueError: If a record does not parse.
        """
        data = chunk.payload
        size = end
        position = start
        ops = first
        found: list[OpEvent | ScopeEvent | AlertEvent | EnvironmentEvent] = []

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
                raise ValueError("a record refers to an undefined string")
            return value

        def optional() -> str | None:
            slot = number()
            return None if slot == 0 else table[slot]

        def records(count: int, inputs: bool) -> tuple[TensorRecord, ...]:
            nonlocal position
            result = []
            for _ in range(count):
                tag = data[position]
                if tag < 0x80:  # most tags fit one byte: skip the call
                    position += 1
                else:
                    tag = number()
                description = table[tag >> TAG_SHIFT]
                if description is None:
                    raise ValueError("a record refers to an undefined string")
                digest = None
                if not tag & NO_DIGEST:
                    digest = data[position : position + DIGEST_SIZE]
                    position += DIGEST_SIZE
                producer = None
                if inputs:
                    distance = data[position]
                    if distance < 0x80:
                        position += 1
                    else:
                        distance = number()
                    producer = ops - distance if distance else None
                result.append(
                    TensorRecord(
                        description,
                        digest,
                        inputs and bool(tag & FRESH),
                        inputs and bool(tag & CHANGED),
                        producer,
                    )
                )
            return tuple(result)

        record = start
        try:
            while position < size:
                record = position
                kind = data[position]
                position += 1
                if kind == STRING:
                    slot = number()
                    length = number()
                    table[slot] = data[position : position + length].decode("utf-8", "surrogatepass")
                    position += length
                elif kind == RESET:
                    table[:] = new_table()
                elif kind == OP:
                    self.last_op_start = record
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
                    found.append(OpEvent(ops, op, module, phase, location, args, inputs, outputs, rng))
                    ops += 1
                elif kind == SCOPE:
                    scope_kind = SCOPE_KINDS[number()]
                    seed = number()
                    location = text()
                    found.append(ScopeEvent(scope_kind or "enter", seed, location, ops))
                elif kind == ALERT:
                    op = text()
                    location = text()
                    message = text()
                    found.append(AlertEvent(op, location, message, max(ops - 1, 0)))
                elif kind == ENVIRONMENT:
                    length = number()
                    found.append(EnvironmentEvent(json.loads(data[position : position + length])))
                    position += length
                elif kind == END:
                    number()
                else:
                    raise ValueError(f"unknown record type {kind}")
            if position > size:
                raise IndexError
        except IndexError:
            where = chunk.offset + CHUNK_HEADER.size + record
            raise corrupt(self.path, "a record that runs past its chunk", where) from None
        except (ValueError, UnicodeDecodeError) as error:
            where = chunk.offset + CHUNK_HEADER.size + record
            raise corrupt(self.path, str(error), where) from None
        if start == 0 and end == chunk.records_end and ops - first != chunk.ops:
            raise corrupt(self.path, f"a chunk of {chunk.ops} ops holding {ops - first}", chunk.offset)
        return found
