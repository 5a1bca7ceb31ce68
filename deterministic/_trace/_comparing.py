"""Comparing: find the first operator call where two traces differ, and say why.

Both files are read as streams, in step, so comparing long runs takes no more memory
than short ones. At the first call that differs, the kind of difference follows from
what differs (:func:`_classify`); the report is written by ``_reporting``.
"""

from __future__ import annotations

import os

from ._format import AlertEvent, OpEvent, Reader, ScopeEvent

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Divergence", "first_divergence"]

KINDS = ("nondeterministic-op", "rng-state", "external-input", "control-flow")
#: How many distinct explicit generators a stream remembers the seeding of.
GENERATORS_REMEMBERED = 4096


class _Stream:
    """One trace read op by op, keeping the context a report needs."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self._events: Iterator[OpEvent | ScopeEvent | AlertEvent] = reader.events()
        self.last_scope: ScopeEvent | None = None
        self.depth = 0
        self.alerts: dict[tuple[str, str], AlertEvent] = {}
        # generator label -> (initial seed, index of the first op that saw it)
        self.seeded: dict[str, tuple[int, int]] = {}
        self.reseeded: tuple[int, int] | None = None  # for the last random op: (old seed, index)
        self.ops = 0

    def next_op(self) -> OpEvent | None:
        """Advance to the next operator call, absorbing scope events and alerts on the way."""
        for event in self._events:
            if isinstance(event, OpEvent):
                self.ops += 1
                return event
            if isinstance(event, ScopeEvent):
                self.last_scope = event
                self.depth += 1 if event.kind == "enter" else -1
            else:
                self.alerts.setdefault((event.op, event.location), event)
        return None

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

    def drain(self) -> None:
        """Read the rest of the file, for its alerts."""
        while self.next_op() is not None:
            pass


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
    """

    __slots__ = (
        "_depths",
        "alerts",
        "complete",
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

    def __repr__(self) -> str:
        return f"<Divergence {self.kind} at op #{self.index} {self.op} ({self.location})>"

    def __str__(self) -> str:
        from ._reporting import report  # noqa: PLC0415 - only printing needs it

        return report(self, self._depths)


def _classify(a: OpEvent, b: OpEvent) -> str | None:
    """The kind of difference between two calls at the same place, or ``None`` if equal."""
    if a.args != b.args or len(a.inputs) != len(b.inputs):
        return "external-input"
    if any(not x.same_value(y) for x, y in zip(a.inputs, b.inputs, strict=True)):
        return "external-input"
    if a.rng != b.rng:
        return "rng-state"
    if len(a.outputs) != len(b.outputs) or any(
        not x.same_value(y) for x, y in zip(a.outputs, b.outputs, strict=True)
    ):
        return "rng-state" if a.rng is not None else "nondeterministic-op"
    return None


def first_divergence(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]) -> Divergence | None:
    """Compare two traces and return where they first differ.

    Args:
        path_a: The first run's trace (written by :func:`trace`).
        path_b: The second run's trace.

    Returns:
        ``None`` when every operator call matches (same op, module, phase, line,
        arguments, input and output digests and generator states), else the
        :class:`Divergence` at the first call that does not.

    Raises:
        TypeError: If a path is not a str or ``os.PathLike``.
        ValueError: If a file is not a trace.
        OSError: If a file cannot be read.
    """
    for path in (path_a, path_b):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"first_divergence() paths must be str or os.PathLike, not {type(path).__name__}")
    with Reader(path_a) as reader_a, Reader(path_b) as reader_b:
        a, b = _Stream(reader_a), _Stream(reader_b)
        while True:
            event_a, event_b = a.next_op(), b.next_op()
            if event_a is None and event_b is None:
                return None
            kind = None
            if event_a is None or event_b is None or not event_a.same_place(event_b):
                kind = "control-flow"
            else:
                a.note_rng(event_a)
                b.note_rng(event_b)
                kind = _classify(event_a, event_b)
            if kind is None:
                continue
            index = (event_a or event_b).index  # type: ignore[union-attr]
            scopes = (a.last_scope, b.last_scope)
            depths = (a.depth, b.depth)
            seeded = tuple(
                stream.seeded.get(event.rng.generator, (0, None))[1]
                if event is not None and event.rng is not None
                else None
                for stream, event in ((a, event_a), (b, event_b))
            )
            a.drain()
            b.drain()
            alerts = tuple({**a.alerts, **b.alerts}.values())
            return Divergence(
                kind=kind,
                events=(event_a, event_b),
                index=index,
                paths=(reader_a.path, reader_b.path),
                scopes=scopes,
                depths=depths,
                alerts=alerts,
                seeded=(seeded[0], seeded[1]),
                complete=(reader_a.complete, reader_b.complete),
            )


def alerts_of(path: str | os.PathLike[str]) -> tuple[AlertEvent, ...]:
    """Return the nondeterminism alerts a trace recorded, once per op and location.

    Args:
        path: The trace.

    Returns:
        The alerts, in the order they were first raised.
    """
    with Reader(path) as reader:
        stream = _Stream(reader)
        stream.drain()
        return tuple(stream.alerts.values())
