"""Reporting: the human text of a :class:`Divergence`: what differs, why, and how to fix it."""

from __future__ import annotations

import os

from ._format import BATCH_OP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._comparing import Divergence
    from ._format import AlertEvent, OpEvent, ScopeEvent

__all__ = ["alert_line", "report", "short_location"]

#: Differing inputs described one by one; the rest are counted.
SHOWN_INPUTS = 3
#: Inputs and outputs listed per run in a report; the rest are counted.
SHOWN_VALUES = 8

_WHY = {
    "nondeterministic-op": "the op received identical inputs and returned different outputs: "
    "it is nondeterministic here.",
    "rng-state": "the random op received identical inputs but drew different values: "
    "its generator started from a different state.",
    "external-input": "the op consumed a value that differs between the runs and that no earlier "
    "traced op produced: it entered torch from outside (NumPy, Python data, files, time, entropy).",
    "control-flow": "the runs took different paths: up to here they ran the same ops, "
    "now they run different ones.",
}


def short_location(location: str) -> str:
    """Show a ``file:line`` relative to the working directory when the file is under it."""
    path, _, line = location.rpartition(":")
    if not path:
        return location
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return location
    return location if relative.startswith(os.pardir) else f"{relative}:{line}"


def report(divergence: Divergence, depths: tuple[int, int]) -> str:
    """Write the report of a divergence.

    Args:
        divergence: The divergence.
        depths: How many scopes were active in each run at the divergence.

    Returns:
        Several lines of text.
    """
    where = divergence.module or "no module"
    if divergence.phase is not None:
        where += f", {divergence.phase}"
    lines = _setting_lines(divergence)
    lines += [
        f"first divergence at op #{divergence.index}: {divergence.op} ({divergence.kind})",
        f"  module:   {where}",
        f"  location: {short_location(divergence.location)}",
    ]
    event_a, event_b = divergence.events
    lines.append(f"  why:      {_WHY[divergence.kind]}")
    if divergence.confirmed_at is not None and divergence.confirmed_at != divergence.index:
        lines.append(
            f"  matters:  op #{divergence.confirmed_at} read this op's differing output, "
            "and its own output differs"
        )
    detail = {
        "nondeterministic-op": _nondeterministic_op,
        "rng-state": _rng_state,
        "external-input": _external_input,
        "control-flow": _control_flow,
    }[divergence.kind](divergence, depths)
    lines += [f"  {line}" for line in detail]
    if event_a is not None and event_b is not None and divergence.kind != "control-flow":
        lines += ["  run 1:", *_event_lines(event_a), "  run 2:", *_event_lines(event_b)]
    lines += _scope_lines(divergence.scopes)
    if divergence.alerts:
        lines.append("torch flagged these ops as nondeterministic on this device (warn_only alerts):")
        lines += [alert_line(alert) for alert in divergence.alerts]
    lines.append(f"traces: {divergence.paths[0]}")
    lines.append(f"        {divergence.paths[1]}")
    return "\n".join(lines)


def _setting_lines(divergence: Divergence) -> list[str]:
    """What differs before any op: the program (argv) and the environment."""
    lines = []
    if divergence.argv is not None:
        lines.append("the runs ran different programs: their command lines differ")
        lines.append(f"  run 1: {' '.join(divergence.argv[0])}")
        lines.append(f"  run 2: {' '.join(divergence.argv[1])}")
    if divergence.environment:
        lines.append("the runs ran in different environments:")
        lines += [
            f"  {name}: {value_a!r} (run 1), {value_b!r} (run 2)"
            for name, value_a, value_b in divergence.environment
        ]
    return lines


def threads_differ(divergence: Divergence) -> list[str]:
    """The thread settings that differ between the runs, by name."""
    names = ("threads", "interop threads", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return [name for name, _, _ in divergence.environment if name in names]


def alert_line(alert: AlertEvent) -> str:
    """One line of the alert list: op, location and torch's message."""
    return f"  - {alert.op} at {short_location(alert.location)}: {alert.message}"


def _event_lines(event: OpEvent) -> list[str]:
    lines: list[str] = []
    if event.args not in ("()", ""):
        lines.append(f"    arguments: {event.args}")
    for number, record in enumerate(event.inputs[:SHOWN_VALUES]):
        lines.append(f"    input {number}:  {record}")
    if len(event.inputs) > SHOWN_VALUES:
        lines.append(f"    ... {len(event.inputs) - SHOWN_VALUES} more inputs")
    if event.rng is not None:
        rng = event.rng
        lines.append(f"    generator: {rng.generator}, seed {rng.initial_seed}, state {rng.state.hex()[:12]}")
    for number, record in enumerate(event.outputs[:SHOWN_VALUES]):
        lines.append(f"    output {number}: {record}")
    if len(event.outputs) > SHOWN_VALUES:
        lines.append(f"    ... {len(event.outputs) - SHOWN_VALUES} more outputs")
    return lines


def _scope_lines(scopes: tuple[ScopeEvent | None, ScopeEvent | None]) -> list[str]:
    def text(scope: ScopeEvent | None) -> str:
        if scope is None:
            return "none (no deterministic scope was entered while tracing)"
        return (
            f"{scope.kind} seed {scope.seed} at {short_location(scope.location)} (before op #{scope.index})"
        )

    first, second = text(scopes[0]), text(scopes[1])
    if first == second:
        return [f"last scope event: {first}, in both runs"]
    return [f"last scope event: run 1: {first}", f"                  run 2: {second}"]


def _nondeterministic_op(divergence: Divergence, depths: tuple[int, int]) -> list[str]:
    namespace = divergence.op.split("::", 1)[0]
    alerts = [alert for alert in divergence.alerts if alert.op == divergence.op]
    lines = []
    threads = threads_differ(divergence)
    if threads:
        return [
            f"cause:    likely the thread count: {', '.join(threads)} differ between the runs, and CPU "
            "kernels split reductions by thread, so the same inputs give different roundings",
            "fix:      run with the same thread count (torch.set_num_threads, OMP_NUM_THREADS); "
            "deterministic_algorithms=True does not make results independent of the thread count",
        ]
    if alerts:
        lines.append(f"torch:    {alerts[0].message} (its warn_only alert)")
    elif namespace != "aten":
        lines.append(
            f"torch:    {divergence.op} is not a torch operator ({namespace}::): the nondeterminism "
            "is in its implementation"
        )
    else:
        lines.append(
            "torch:    raised no nondeterminism alert for this op in the traced runs (alerts are "
            'recorded in warn-only mode: deterministic(seed, deterministic_algorithms="warn"))'
        )
    if namespace == "aten":
        lines.append(
            "fix:      deterministic(seed, deterministic_algorithms=True) makes torch pick deterministic "
            "implementations (and raise where it has none); on CUDA also export "
            "CUBLAS_WORKSPACE_CONFIG=:4096:8"
        )
    else:
        lines.append(
            f"fix:      make {divergence.op} deterministic: for equal inputs it must return equal outputs "
            "(no time, entropy, unseeded RNG or unordered reductions inside)"
        )
    return lines


def _rng_state(divergence: Divergence, depths: tuple[int, int]) -> list[str]:
    event_a, event_b = divergence.events
    assert event_a is not None and event_b is not None
    rng_a, rng_b = event_a.rng, event_b.rng
    if rng_a is None or rng_b is None:  # a random op on a device whose generator is not recorded
        return ["generator: not recorded for this device"]
    explicit = rng_a.generator.startswith("torch.Generator")
    lines = [f"generator: {rng_a.generator}"]
    seeds_differ = rng_a.initial_seed != rng_b.initial_seed
    if seeds_differ:
        lines.append(f"seeds:    {rng_a.initial_seed} (run 1) and {rng_b.initial_seed} (run 2)")
        first_a, first_b = divergence.seeded
        if first_a is not None and first_a < divergence.index:
            lines.append(f"seeding:  run 1's generator took that seed before op #{first_a}")
        if first_b is not None and first_b < divergence.index:
            lines.append(f"seeding:  run 2's generator took that seed before op #{first_b}")
    else:
        lines.append(f"seeds:    {rng_a.initial_seed} in both runs, but the states differ")
    if explicit and seeds_differ:
        lines.append(
            "cause:    an explicit torch.Generator seeded from a value that changes between runs "
            "(os.urandom, time, Generator().seed()); scopes never touch explicit generators"
        )
        lines.append(
            "fix:      seed it from the scope: `with deterministic(seed) as scope: "
            'g = scope.torch_generator()`, or torch.Generator().manual_seed(derive_seed(seed, "name"))'
        )
    elif explicit:
        lines.append(
            "cause:    the generator drew a different number of values before this op, outside "
            "traced ops (another thread, or before the trace began)"
        )
        lines.append("fix:      give each consumer its own generator, seeded from the scope")
    elif seeds_differ and depths[0] == 0:
        lines.append(
            "cause:    this draw is outside any deterministic scope, from a default generator seeded "
            "differently in each run"
        )
        lines.append("fix:      run this code inside `with deterministic(seed):` (or under @seeded)")
    elif seeds_differ and divergence.scopes[0] is not None and divergence.scopes[1] is not None:
        if divergence.scopes[0].seed != divergence.scopes[1].seed:
            lines.append(
                "cause:    the enclosing scope's seed differs between the runs: it draws a fresh seed "
                "per entry (deterministic(None) or @seeded(None))"
            )
            lines.append("fix:      give the scope a fixed seed")
        else:
            lines.append(
                "cause:    the default generator was seeded again inside the scope with a value that "
                "changes between runs (torch.seed(), manual_seed(time...))"
            )
            lines.append("fix:      remove that reseeding; the scope already seeds every generator")
    else:
        lines.append(
            "cause:    the default generator drew a different number of values before this op outside "
            "traced ops (another thread, e.g. DataLoader worker threads, or draws before the trace began)"
        )
        lines.append("fix:      draw from an explicit generator per consumer, seeded from the scope")
    return lines


def _external_input(divergence: Divergence, depths: tuple[int, int]) -> list[str]:
    event_a, event_b = divergence.events
    assert event_a is not None and event_b is not None
    if event_a.op == BATCH_OP:
        return _worker_batch(event_a, event_b)
    lines = []
    if event_a.args != event_b.args:
        lines.append(
            "what:     the non-tensor arguments differ (a Python value computed outside torch: time, "
            "os.urandom, an unseeded RNG, dict or set order)"
        )
    differing = [
        (number, x, y)
        for number, (x, y) in enumerate(zip(event_a.inputs, event_b.inputs, strict=False))
        if not x.same_value(y)
    ]
    for shown, (number, x, y) in enumerate(differing):
        if shown == SHOWN_INPUTS:
            lines.append(f"what:     and {len(differing) - shown} more inputs differ")
            break
        lines.append(f"what:     input {number} differs: {x} (run 1), {y} (run 2)")
        if x.changed or y.changed:
            lines.append(
                "entered:  its memory came from an earlier traced op, but its bytes were then "
                "changed outside torch ops (through .numpy(), a buffer, ctypes or another process)"
            )
        elif x.fresh or y.fresh:
            lines.append(
                "entered:  here; no earlier traced op produced this value: it came into torch at this "
                "line (torch.tensor, torch.from_numpy, a file read, a DataLoader batch), or its memory "
                "was written outside torch ops (trace(..., rehash=True) tells the two apart)"
            )
        else:
            lines.append(
                "entered:  before this op in a way torch did not see: written outside torch ops, "
                "or produced so long ago that the trace no longer remembers it"
            )
    if len(event_a.inputs) != len(event_b.inputs):
        lines.append(f"what:     {len(event_a.inputs)} inputs in run 1, {len(event_b.inputs)} in run 2")
    lines.append(
        "fix:      make the data reproducible: seed what produces it from the scope "
        "(scope.numpy_generator(), scope.random(), derive_seed), and keep time and OS entropy out of it"
    )
    return lines


def _worker_batch(event_a: OpEvent, event_b: OpEvent) -> list[str]:
    differing = [
        number
        for number, (x, y) in enumerate(zip(event_a.outputs, event_b.outputs, strict=False))
        if not x.same_value(y)
    ]
    return [
        f"what:     the batch the DataLoader handed to this line came from DataLoader {event_a.args}, "
        f"and its tensor(s) {', '.join(map(str, differing)) or '(count)'} differ between the runs",
        "entered:  in the worker process, whose ops are not traced (it is another process)",
        "find:     to see the line inside the worker, trace it in the main process: run with "
        "num_workers=0 under check --trace; the worker's dataset code then runs here, traced",
        "fix:      make the dataset reproducible per sample: wrap it in deterministic.SeededDataset(dataset, "
        "seed), or seed each worker from the loader (deterministic's worker_init_fn / seeded loaders)",
    ]


def _control_flow(divergence: Divergence, depths: tuple[int, int]) -> list[str]:
    lines = []
    for run, event, complete in zip((1, 2), divergence.events, divergence.complete, strict=True):
        if event is None:
            state = "left its traced block" if complete else "stopped without leaving its traced block"
            lines.append(f"run {run}:    had ended ({state}) after {divergence.index} ops")
        else:
            where = event.module or "no module"
            if event.phase is not None:
                where += f", {event.phase}"
            lines.append(f"run {run}:    {event.op} ({where}) at {short_location(event.location)}")
    if divergence.argv is not None and divergence.index == 0:
        lines.append("cause:    the traces are of different programs (see their command lines above)")
    lines.append(
        "fix:      find the branch or loop bound that differs: a condition on time, os.urandom, an "
        "unseeded RNG, set or dict order, or a file's contents"
    )
    return lines
