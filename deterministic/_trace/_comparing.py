"""Comparing: find the first operator call where two traces differ in a way that matters.

Both files are read chunk by chunk, in step: chunks with equal bytes hold equal calls
and are skipped unparsed, so comparing long runs is fast and takes no more memory than
short ones. Where chunks differ, calls are compared one by one.

A call whose outputs differ is a *candidate*. It becomes the divergence only once the
difference is seen to matter: a later call reads that output and its own outputs
differ, or the output is a Python value (``.item()``, a comparison). A candidate whose
output no later call reads, or whose readers absorb the difference (the same outputs
from different inputs), is dropped: scratch memory an op returns uninitialised (an
LSTM's workspace), a noise buffer written without being read, a fresh storage filled
by ``copy_`` after ``set_`` (``copy.deepcopy``). A call that reads a differing input
nobody traced produced (data entering torch) is a candidate of its own. Inputs are
linked to their producers through the producer index each input record carries.
"""

from __future__ import annotations

import collections
import os

from ._format import (
    BATCH_OP,
    HAS_ALERTS,
    HAS_ENVIRONMENT,
    HAS_SCOPES,
    OP,
    AlertEvent,
    Chunk,
    EnvironmentEvent,
    OpEvent,
    Reader,
    ScopeEvent,
    new_table,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["Divergence", "first_divergence"]

KINDS = ("nondeterministic-op", "rng-state", "external-input", "control-flow")
#: How many distinct explicit generators a stream remembers the seeding of.
GENERATORS_REMEMBERED = 4096
#: Candidates remembered at most (the oldest are dropped).
PENDING_LIMIT = 4096
#: Header entries that differ between any two runs and say nothing about numerics.
_RUN_SPECIFIC = ("pid",)


class _Stream:
    """One trace read chunk by chunk, keeping the context a report needs."""

    #: Chunks with scope events remembered, to name the last scope event before a report's op.
    SCOPED_CHUNKS = 4

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.chunks: Iterator[Chunk] = reader.chunks()
        self.last_scope: ScopeEvent | None = None
        # The latest chunks seen that hold scope events (a report's op lies in or after them).
        self.scoped: collections.deque[Chunk] = collections.deque(maxlen=self.SCOPED_CHUNKS)
        self.depth = 0
        self.environment: dict[str, Any] = reader.header.get("environment") or {}
        self.table = new_table()
        self.alerts: dict[tuple[str, str], AlertEvent] = {}
        # generator label -> (initial seed, index of the first op that saw it)
        self.seeded: dict[str, tuple[int, int]] = {}

    def skip(self, chunk: Chunk) -> None:
        """Account for a chunk that is not parsed (equal in both runs)."""
        self._seen(chunk)
        if chunk.flags & (HAS_ALERTS | HAS_ENVIRONMENT):
            self.absorb(self.reader.parse(chunk))

    def begin(self, chunk: Chunk) -> None:
        """Start reading a chunk record by record."""
        self._seen(chunk)
        self.table = new_table()

    def _seen(self, chunk: Chunk) -> None:
        self.depth = chunk.depth
        if chunk.flags & HAS_SCOPES:
            self.scoped.append(chunk)

    def take(self, events: list[Any]) -> list[OpEvent]:
        """Absorb alerts and the environment; return the op events."""
        ops = [event for event in events if isinstance(event, OpEvent)]
        if len(ops) != len(events):
            self.absorb(events)
        return ops

    def parsed(self, chunk: Chunk) -> list[OpEvent]:
        """Parse a chunk; absorb its alerts and environment; return its op events."""
        self.begin(chunk)
        return self.take(self.reader.parse(chunk))

    def segment(self, chunk: Chunk, number: int) -> list[OpEvent]:
        """Parse op ``number`` of a chunk begun with :meth:`begin`, with the records before it."""
        boundaries = chunk.boundaries
        start, end = boundaries[number], boundaries[number + 1]
        return self.take(self.reader.parse_records(chunk, start, end, self.table, chunk.first + number))

    def tail(self, chunk: Chunk) -> None:
        """Parse the records after a chunk's last op (scope exits, the end, the environment)."""
        start = chunk.boundaries[-1]
        self.take(
            self.reader.parse_records(chunk, start, chunk.records_end, self.table, chunk.first + chunk.ops)
        )

    def absorb(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, AlertEvent):
                self.alerts.setdefault((event.op, event.location), event)
            elif isinstance(event, EnvironmentEvent):
                self.environment = event.facts

    def context(self, chunk: Chunk | None, index: int) -> None:
        """Set ``last_scope`` and ``depth`` to what they were just before op ``index``.

        Args:
            chunk: The chunk holding op ``index``, or ``None`` when this run had ended.
            index: The op.
        """
        scopes: list[ScopeEvent] = []
        if chunk is not None and chunk.flags & HAS_SCOPES:
            scopes = [
                event
                for event in self.reader.parse(chunk)
                if isinstance(event, ScopeEvent) and event.index <= index
            ]
        if chunk is not None:
            self.depth = chunk.depth + sum(1 if scope.kind == "enter" else -1 for scope in scopes)
        if scopes:
            self.last_scope = scopes[-1]
            return
        earlier = [seen for seen in self.scoped if chunk is None or seen.first < chunk.first]
        if earlier:
            found = [event for event in self.reader.parse(earlier[-1]) if isinstance(event, ScopeEvent)]
            self.last_scope = found[-1] if found else None

    def note_rng(self, event: OpEvent) -> None:
        """Remember the seed each generator had, to name where it was seeded again."""
        rng = event.rng
        if rng is None:
            return
        previous = self.seeded.get(rng.generator)
        if previous is None or previous[0] != rng.initial_seed:
            if len(self.seeded) >= GENERATORS_REMEMBERED:
                self.seeded.clear()
            self.seeded[rng.generator] = (rng.initial_seed, event.index)

    def drain(self, current: Chunk | None) -> None:
        """Read the rest of the file from the current chunk on, for its alerts and environment.

        Only chunks that hold some are parsed.
        """
        if current is not None and current.flags & (HAS_ALERTS | HAS_ENVIRONMENT):
            self.absorb(self.reader.parse(current))
        for chunk in self.chunks:
            if chunk.flags & (HAS_ALERTS | HAS_ENVIRONMENT):
                self.absorb(self.reader.parse(chunk))


class Divergence:
    """Where two traces first differ, and why.

    ``str(divergence)`` is the human report.

    Attributes:
        index: The index of the first differing operator call.
        op: Its operator (run 1's, or run 2's when run 1 had ended).
        module: The ``nn.Module`` path it ran under, or ``None``.
        phase: ``"forward"``, ``"backward"`` or ``None``.
        location: The user's ``file:line``.
        kind: ``"nondeterministic-op"``, ``"rng-state"``, ``"external-input"`` or
            ``"control-flow"``.
        events: The two runs' events at ``index`` (``None`` where a run had ended).
        paths: The two trace files.
        scopes: The last scope entry or exit before ``index`` in each run.
        alerts: Ops torch flagged as nondeterministic in either run, once per op and location.
        seeded: For each run, where the generator of a random op took the seed it had
            (index of the first op seeing it), when known.
        complete: Whether each run left its traced block normally.
        environment: What differs between the runs' environments (versions, thread
            counts, flags, devices, environment variables), as ``(name, run 1, run 2)``.
        argv: The two runs' command lines, when they differ (different programs); else ``None``.
        confirmed_at: The index of the later call that showed the difference matters
            (it read this call's output and its own outputs differed, or Python read it).
    """

    __slots__ = (
        "_depths",
        "alerts",
        "argv",
        "complete",
        "confirmed_at",
        "environment",
        "events",
        "index",
        "kind",
        "location",
        "module",
        "op",
        "paths",
        "phase",
        "scopes",
        "seeded",
    )

    def __init__(
        self,
        *,
        kind: str,
        events: tuple[OpEvent | None, OpEvent | None],
        index: int,
        paths: tuple[str, str],
        scopes: tuple[ScopeEvent | None, ScopeEvent | None],
        depths: tuple[int, int],
        alerts: tuple[AlertEvent, ...],
        seeded: tuple[int | None, int | None],
        complete: tuple[bool, bool],
        environment: tuple[tuple[str, Any, Any], ...] = (),
        argv: tuple[list[str], list[str]] | None = None,
        confirmed_at: int | None = None,
    ) -> None:
        self.kind = kind
        self.events = events
        self.index = index
        shown = events[0] if events[0] is not None else events[1]
        assert shown is not None
        self.op = shown.op
        self.module = shown.module
        self.phase = shown.phase
        self.location = shown.location
        self.paths = paths
        self.scopes = scopes
        self._depths = depths
        self.alerts = alerts
        self.seeded = seeded
        self.complete = complete
        self.environment = environment
        self.argv = argv
        self.confirmed_at = confirmed_at

    def __repr__(self) -> str:
        return f"<Divergence {self.kind} at op #{self.index} {self.op} ({self.location})>"

    def __str__(self) -> str:
        from ._reporting import report  # noqa: PLC0415 - only printing needs it

        return report(self, self._depths)


class _Candidate:
    """A call whose outputs differ, waiting for a reader that shows the difference matters."""

    __slots__ = ("chunks", "events", "index", "kind", "seeded")

    def __init__(
        self,
        kind: str,
        events: tuple[OpEvent, OpEvent],
        seeded: tuple[int | None, int | None],
        chunks: tuple[Chunk | None, Chunk | None],
    ) -> None:
        self.kind = kind
        self.events = events
        self.index = events[0].index
        self.seeded = seeded
        self.chunks = chunks


def _differs(a: OpEvent, b: OpEvent) -> bool:
    """Whether the calls' outputs differ."""
    return len(a.outputs) != len(b.outputs) or any(
        not x.same_value(y) for x, y in zip(a.outputs, b.outputs, strict=True)
    )


def _python_visible(a: OpEvent, b: OpEvent) -> bool:
    """Whether a differing output is a Python value (the program sees it at once)."""
    return any(
        x.description.startswith("py:") and not x.same_value(y)
        for x, y in zip(a.outputs, b.outputs, strict=False)
    )


def environment_difference(
    facts_a: dict[str, Any], facts_b: dict[str, Any]
) -> tuple[tuple[str, Any, Any], ...]:
    """What differs between two runs' recorded environments, as ``(name, run 1, run 2)``."""
    found = []
    for name in sorted(set(facts_a) | set(facts_b)):
        value_a, value_b = facts_a.get(name), facts_b.get(name)
        if name == "environment variables" and isinstance(value_a, dict) and isinstance(value_b, dict):
            for variable in sorted(set(value_a) | set(value_b)):
                if value_a.get(variable) != value_b.get(variable):
                    found.append((variable, value_a.get(variable), value_b.get(variable)))
        elif value_a != value_b:
            found.append((name, value_a, value_b))
    return tuple(found)


class _Comparison:
    """Two traces compared in step; :meth:`run` returns the divergence and the first unread difference."""

    def __init__(self, reader_a: Reader, reader_b: Reader) -> None:
        self.readers = (reader_a, reader_b)
        self.a, self.b = _Stream(reader_a), _Stream(reader_b)
        self.pending: dict[int, _Candidate] = {}
        self.first_unread: _Candidate | None = None
        self.chunk_pair: tuple[Chunk | None, Chunk | None] = (None, None)

    def run(self) -> tuple[Divergence | None, Divergence | None]:  # noqa: PLR0912 - two streams in step
        a, b = self.a, self.b
        ops_a: collections.deque[OpEvent] = collections.deque()
        ops_b: collections.deque[OpEvent] = collections.deque()
        chunk_a: Chunk | None = None
        chunk_b: Chunk | None = None
        while True:
            if not ops_a and not ops_b:
                chunk_a, chunk_b = next(a.chunks, None), next(b.chunks, None)
                if chunk_a is None and chunk_b is None:
                    return None, self._unread()
                if (
                    chunk_a is not None
                    and chunk_b is not None
                    and chunk_a.ops == chunk_b.ops
                    and chunk_a.payload == chunk_b.payload
                ):
                    a.skip(chunk_a)
                    b.skip(chunk_b)
                    continue
                if chunk_a is not None and chunk_b is not None and chunk_a.ops == chunk_b.ops:
                    found = self._walk(chunk_a, chunk_b)
                    if found is not None:
                        return found, None
                    continue
                if chunk_a is not None:
                    ops_a.extend(a.parsed(chunk_a))
                if chunk_b is not None:
                    ops_b.extend(b.parsed(chunk_b))
            elif not ops_a or not ops_b:
                # Only the last chunks can differ in length: the run with fewer calls has ended.
                stream, queue = (a, ops_a) if not ops_a else (b, ops_b)
                chunk = next(stream.chunks, None)
                if chunk is not None:
                    queue.extend(stream.parsed(chunk))
                    if stream is a:
                        chunk_a = chunk
                    else:
                        chunk_b = chunk
                if not queue:
                    self.chunk_pair = (chunk_a, chunk_b)
                    return self.step(
                        ops_a.popleft() if ops_a else None, ops_b.popleft() if ops_b else None
                    ), None
                continue
            if not ops_a or not ops_b:
                continue
            self.chunk_pair = (chunk_a, chunk_b)
            found = self.step(ops_a.popleft(), ops_b.popleft())
            if found is not None:
                return found, None

    def _walk(self, chunk_a: Chunk, chunk_b: Chunk) -> Divergence | None:
        """Compare two chunks of equal length op by op, parsing only the ops whose bytes differ.

        An op's segment (the records since the previous op, then its own) with equal bytes
        in both runs holds the same call, as long as the two string tables have stayed in
        step: they do until two differing segments define different strings.
        """
        a, b = self.a, self.b
        a.begin(chunk_a)
        b.begin(chunk_b)
        self.chunk_pair = (chunk_a, chunk_b)
        payload_a, payload_b = chunk_a.payload, chunk_b.payload
        bounds_a, bounds_b = chunk_a.boundaries, chunk_b.boundaries
        in_step = True
        for number in range(chunk_a.ops):
            segment_a = payload_a[bounds_a[number] : bounds_a[number + 1]]
            segment_b = payload_b[bounds_b[number] : bounds_b[number + 1]]
            if in_step and segment_a == segment_b:
                if segment_a[0] != OP:  # strings or events before the op: keep both tables current
                    a.segment(chunk_a, number)
                    b.segment(chunk_b, number)
                continue
            (event_a,) = a.segment(chunk_a, number)
            prefix_a = segment_a[: a.reader.last_op_start - bounds_a[number]]
            (event_b,) = b.segment(chunk_b, number)
            prefix_b = segment_b[: b.reader.last_op_start - bounds_b[number]]
            in_step = in_step and prefix_a == prefix_b
            found = self.step(event_a, event_b)
            if found is not None:
                return found
        a.tail(chunk_a)
        b.tail(chunk_b)
        return None

    def step(  # noqa: PLR0912 - one branch per way a pair of calls can differ
        self, event_a: OpEvent | None, event_b: OpEvent | None
    ) -> Divergence | None:
        """Compare one pair of calls; return the divergence once one is confirmed."""
        if event_a is None or event_b is None or not event_a.same_place(event_b):
            return self._divergence("control-flow", (event_a, event_b), (None, None), None)
        self.a.note_rng(event_a)
        self.b.note_rng(event_b)
        if event_a.args != event_b.args or len(event_a.inputs) != len(event_b.inputs):
            return self._divergence(
                "external-input", (event_a, event_b), self._seeded(event_a, event_b), None
            )
        outputs_differ = _differs(event_a, event_b)
        external = False
        for x, y in zip(event_a.inputs, event_b.inputs, strict=True):
            if x.same_value(y):
                continue
            producer = x.producer if x.producer == y.producer else None
            candidate = self.pending.get(producer) if producer is not None else None
            if candidate is not None:
                if outputs_differ:
                    return self._confirm(candidate, event_a.index)
                continue  # this reader absorbed the difference
            # A value that differs, and no differing traced output explains: it entered torch
            # (or was written) outside traced ops.
            external = True
        if not outputs_differ:
            return None  # equal outputs (from equal inputs, or absorbing a difference): nothing to see
        if external or event_a.op == BATCH_OP:  # a worker's batch enters the traced process here
            kind = "external-input"
        elif event_a.rng != event_b.rng or event_a.rng is not None:
            kind = "rng-state"
        else:
            kind = "nondeterministic-op"
        candidate = _Candidate(kind, (event_a, event_b), self._seeded(event_a, event_b), self.chunk_pair)
        if _python_visible(event_a, event_b):
            return self._confirm(candidate, event_a.index)
        if len(self.pending) >= PENDING_LIMIT:
            del self.pending[next(iter(self.pending))]
        self.pending[candidate.index] = candidate
        if self.first_unread is None:
            self.first_unread = candidate
        return None

    def _seeded(self, event_a: OpEvent, event_b: OpEvent) -> tuple[int | None, int | None]:
        if event_a.rng is None and event_b.rng is None:
            return (None, None)
        found = tuple(
            stream.seeded.get(event.rng.generator, (0, None))[1] if event.rng is not None else None
            for stream, event in ((self.a, event_a), (self.b, event_b))
        )
        return (found[0], found[1])

    def _confirm(self, candidate: _Candidate, reader: int) -> Divergence:
        return self._divergence(candidate.kind, candidate.events, candidate.seeded, reader, candidate)

    def _divergence(  # noqa: PLR0917 - internal, called in three places
        self,
        kind: str,
        events: tuple[OpEvent | None, OpEvent | None],
        seeded: tuple[int | None, int | None],
        confirmed_at: int | None,
        candidate: _Candidate | None = None,
        drain: bool = True,
    ) -> Divergence:
        shown = events[0] if events[0] is not None else events[1]
        assert shown is not None
        index = shown.index
        chunks = candidate.chunks if candidate is not None else self.chunk_pair
        for stream, chunk in ((self.a, chunks[0]), (self.b, chunks[1])):
            inside = chunk is not None and chunk.first <= index < chunk.first + max(chunk.ops, 1)
            stream.context(chunk if inside else None, index)
        scopes = (self.a.last_scope, self.b.last_scope)
        depths = (self.a.depth, self.b.depth)
        if drain:
            self.a.drain(self.chunk_pair[0])
            self.b.drain(self.chunk_pair[1])
        header_a, header_b = self.readers[0].header, self.readers[1].header
        argv = None
        if header_a.get("argv") != header_b.get("argv"):
            argv = (list(header_a.get("argv") or []), list(header_b.get("argv") or []))
        return Divergence(
            kind=kind,
            events=events,
            index=index,
            paths=(self.readers[0].path, self.readers[1].path),
            scopes=scopes,
            depths=depths,
            alerts=tuple({**self.a.alerts, **self.b.alerts}.values()),
            seeded=seeded,
            complete=(self.readers[0].complete, self.readers[1].complete),
            environment=environment_difference(self.a.environment, self.b.environment),
            argv=argv,
            confirmed_at=confirmed_at,
        )

    def _unread(self) -> Divergence | None:
        candidate = self.first_unread
        if candidate is None:
            return None
        return self._divergence(
            candidate.kind, candidate.events, candidate.seeded, None, candidate, drain=False
        )


def compare(
    path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]
) -> tuple[Divergence | None, Divergence | None]:
    """Compare two traces: (the first divergence, or ``None``; else the first difference no call read).

    The second item is for a report when the traces match yet the outputs differ: a
    call whose outputs differ but that no later traced call read (a value the program
    used outside torch ops, through ``.numpy()`` say, or never used at all).
    """
    for path in (path_a, path_b):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"first_divergence() paths must be str or os.PathLike, not {type(path).__name__}")
    with Reader(path_a) as reader_a, Reader(path_b) as reader_b:
        return _Comparison(reader_a, reader_b).run()


def first_divergence(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]) -> Divergence | None:
    """Compare two traces and return where they first differ in a way that matters.

    Args:
        path_a: The first run's trace (written by :func:`trace`).
        path_b: The second run's trace.

    Returns:
        ``None`` when the runs made the same calls (same op, module, phase, line and
        arguments) and every value a later call read is equal, else the
        :class:`Divergence` at the first call whose differing output mattered. A
        value that no later call reads, or that its readers absorb (equal outputs
        from it), is not a divergence: scratch memory, uninitialised buffers.

    Raises:
        TypeError: If a path is not a str or ``os.PathLike``.
        ValueError: If a file is not a trace, or is corrupt.
        OSError: If a file cannot be read.
    """
    return compare(path_a, path_b)[0]


def alerts_of(path: str | os.PathLike[str]) -> tuple[AlertEvent, ...]:
    """Return the nondeterminism alerts a trace recorded, once per op and location.

    Args:
        path: The trace.

    Returns:
        The alerts, in the order they were first raised.
    """
    with Reader(path) as reader:
        stream = _Stream(reader)
        stream.drain(None)
        return tuple(stream.alerts.values())
