"""``python -m deterministic selftest``: the library's correctness probes, each in a fresh process.

Every claim the library makes about accelerators — no initialisation as a side effect,
exact lazy seeding, every device saved and restored, no device synchronisation, flags
restored, CUDA graphs, ``torch.compile``, deterministic algorithms and cuBLAS — is a probe
here. ``selftest`` runs each probe in a fresh interpreter (initialisation is one-way),
prints a table or JSON, and exits 0 when every probe that could run passed. The
``cuda``-marked tests call the same probe functions, so the two never disagree.

Probes reach the device through a :class:`Device` adapter, so that tests without a GPU
can run the device-independent ones against a test double.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = ["ACCELERATORS", "PROBES", "Device", "Probe", "main", "run_probe"]

#: The accelerator kinds ``--device`` accepts.
ACCELERATORS = ("cuda", "mps", "xpu")
#: Seconds one probe may take before it counts as failed.
PROBE_TIMEOUT = 150.0


class Device:
    """One torch device module (``torch.cuda``, ``torch.xpu``, ``torch.mps``) as the probes use it.

    Args:
        kind: ``"cuda"``, ``"xpu"`` or ``"mps"``.
        module: The device module; ``None`` takes ``getattr(torch, kind)``.
    """

    def __init__(self, kind: str, module: Any = None) -> None:
        import torch  # noqa: PLC0415 - probes need torch

        self.kind = kind
        self.torch = torch
        self.module = module if module is not None else getattr(torch, kind)

    def initialized(self) -> bool:
        """Return whether the device module is initialised (MPS always is)."""
        is_initialized = getattr(self.module, "is_initialized", None)
        return True if is_initialized is None else bool(is_initialized())

    def count(self) -> int:
        """Return the number of devices."""
        count = getattr(self.module, "device_count", None)
        return 1 if count is None else int(count())

    def draw(self, device: int = 0) -> list[float]:
        """Draw four uniforms on one device (initialising it, as any op does)."""
        return self.torch.rand(4, device=f"{self.kind}:{device}").tolist()

    def states(self) -> list[list[int]]:
        """Return every device's generator state (initialises the module)."""
        if self.kind == "mps":
            return [self.module.get_rng_state().tolist()]
        return [self.module.get_rng_state(index).tolist() for index in range(self.count())]

    def fresh_states(self, seed: int | None = None) -> list[list[int]]:
        """Return the states new generators have, optionally after ``manual_seed(seed)``."""
        states = []
        for index in range(self.count()):
            generator = self.torch.Generator(device=f"{self.kind}:{index}")
            if seed is not None:
                generator.manual_seed(seed)
            states.append(generator.get_state().tolist())
        return states


@dataclass(frozen=True)
class Probe:
    """A named check; ``devices`` lists where it applies (``"cpu"`` or accelerator kinds)."""

    name: str
    devices: tuple[str, ...]
    check: Callable[[str], str]
    summary: str


def _flags(torch: Any) -> dict[str, Any]:
    cuda = getattr(torch.backends, "cuda", None)
    return {
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.enabled": torch.backends.cudnn.enabled,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "fill_uninitialized_memory": torch.utils.deterministic.fill_uninitialized_memory,
        "matmul.allow_tf32": None if cuda is None else cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def _cpu_state(torch: Any) -> list[Any]:
    import random  # noqa: PLC0415

    import numpy  # noqa: PLC0415

    numpy_state: Any = numpy.random.get_state()
    return [random.getstate(), numpy_state[1].tolist(), torch.get_rng_state().tolist()]


def probe_cpu_scope(device: str) -> str:
    """Scoped draws equal the classic recipe's; every CPU state and flag is restored, also on error."""
    import random  # noqa: PLC0415

    import numpy  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from ._scope import deterministic  # noqa: PLC0415

    before, flags = _cpu_state(torch), _flags(torch)
    with deterministic(3, deterministic_algorithms=True, cudnn_benchmark=True):
        scoped = [random.random(), float(numpy.random.rand()), torch.rand(2).tolist()]
    assert _cpu_state(torch) == before and _flags(torch) == flags, "not restored after a normal exit"
    try:
        with deterministic(4):
            torch.rand(3)
            raise KeyError("probe")
    except KeyError:
        pass
    assert _cpu_state(torch) == before, "not restored after an exception"
    random.seed(3)
    numpy.random.seed(3)
    torch.manual_seed(3)
    classic = [random.random(), float(numpy.random.rand()), torch.rand(2).tolist()]
    assert scoped == classic, "scoped draws differ from the classic recipe's"
    return "draws equal the classic recipe; states and flags restored after exit and exception"


def probe_cpu_snapshot(device: str) -> str:
    """A snapshot survives JSON and reproduces every CPU draw after restore."""
    import torch  # noqa: PLC0415

    from ._snapshot import RNGState, restore, snapshot  # noqa: PLC0415

    state = RNGState.from_state_dict(json.loads(json.dumps(snapshot().state_dict())))
    first = torch.rand(3).tolist()
    restore(state)
    assert torch.rand(3).tolist() == first, "restored snapshot draws differently"
    return "snapshot -> JSON -> restore reproduces the draws"


def probe_no_init(device: str, target: Device | None = None) -> str:
    """A scope, a snapshot and doctor leave an uninitialised device uninitialised."""
    target = target or Device(device)
    from ._cli import doctor_report  # noqa: PLC0415
    from ._scope import deterministic  # noqa: PLC0415
    from ._snapshot import snapshot  # noqa: PLC0415

    assert not target.initialized(), f"{device} was initialised before the probe"
    with deterministic(0):
        target.torch.rand(2)
    snapshot()
    doctor_report()
    assert not target.initialized(), f"{device} was initialised by a scope, a snapshot or doctor"
    return "scope, snapshot and doctor left the device uninitialised"


def probe_lazy_seed(device: str, target: Device | None = None) -> str:
    """A block that initialises the device draws as the classic recipe; later state is as if it never ran."""
    target = target or Device(device)
    from ._scope import deterministic  # noqa: PLC0415

    assert not target.initialized(), f"{device} was initialised before the probe"
    target.module.manual_seed_all(5)  # a seed the program queued before the scope
    with deterministic(11):
        scoped = [target.draw(index) for index in range(target.count())]
    assert target.states() == target.fresh_states(5), (
        "after exit the devices are not as init would leave them"
    )
    target.torch.manual_seed(11)
    target.module.manual_seed_all(11)
    classic = [target.draw(index) for index in range(target.count())]
    assert scoped == classic, "draws in the block differ from the classic recipe's"
    return f"{target.count()} device(s): classic draws in the block; queued seed replayed after exit"


def probe_restore_exact(device: str, target: Device | None = None) -> str:
    """With the device initialised, states and flags come back after exit, exception and a suspension."""
    target = target or Device(device)
    from ._scope import deterministic  # noqa: PLC0415
    from ._wrappers import seeded  # noqa: PLC0415

    torch = target.torch
    target.draw()
    before, flags = target.states(), _flags(torch)
    with deterministic(
        2, deterministic_algorithms="warn", cudnn_benchmark=True, fill_uninitialized_memory=True
    ):
        target.draw()
    assert target.states() == before and _flags(torch) == flags, "not restored after a normal exit"
    try:
        with deterministic(3, deterministic_algorithms=True):
            target.draw()
            raise KeyError("probe")
    except KeyError:
        pass
    assert target.states() == before and _flags(torch) == flags, "not restored after an exception"

    @seeded(4)
    def stream() -> Any:
        while True:
            yield target.draw()

    steps = stream()
    next(steps)
    assert target.states() == before, "not restored while a decorated generator is suspended"
    steps.close()
    return "device states and flags restored after exit, exception and a generator's suspension"


def probe_no_sync(device: str) -> str:
    """Entering and leaving a scope does not wait for queued kernels."""
    torch = Device(device).torch
    from ._scope import deterministic  # noqa: PLC0415

    torch.cuda.init()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(int(2e8))  # a long kernel: some tenths of a second of device time
    end.record()
    host = time.perf_counter()
    with deterministic(0):
        pass
    host = time.perf_counter() - host
    torch.cuda.synchronize()
    kernel = start.elapsed_time(end) / 1000
    torch.cuda.set_sync_debug_mode("error")
    try:
        with deterministic(0):
            pass
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert host < kernel / 10, (
        f"the scope took {host * 1e6:.0f} us while a {kernel * 1e3:.0f} ms kernel was queued"
    )
    return f"scope {host * 1e6:.0f} us on the host while a {kernel * 1e3:.0f} ms kernel was queued"


def probe_graphs(device: str) -> str:
    """Random ops captured in a CUDA graph inside a scope replay fresh values; scope generators register."""
    torch = Device(device).torch
    from ._scope import deterministic  # noqa: PLC0415

    def capture(fill: Callable[[], Any]) -> Any:
        graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fill()  # warm-up, as torch's documentation asks
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(graph):
            fill()
        return graph

    static = torch.empty(8, device="cuda")
    with deterministic(0) as scope:
        inside = capture(static.uniform_)
        inside.replay()
        first = static.clone()
        inside.replay()
        assert not torch.equal(first, static), "replays inside the scope repeat their values"
    notes = ["a graph captured in a scope replays fresh values and the scope exits cleanly"]
    outside = capture(static.uniform_)
    outside.replay()
    previous = static.clone()
    with deterministic(1):
        outside.replay()
        assert not torch.equal(previous, static), "a graph replayed inside a scope repeated its values"
    notes.append("a graph captured outside replays fresh values inside a scope")
    generator = scope.torch_generator("cuda")
    register = getattr(torch.cuda.CUDAGraph, "register_generator_state", None)
    if register is None:
        notes.append(f"torch {torch.__version__} cannot register generators with graphs")
    else:
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(generator)
        target = torch.empty(8, device="cuda")
        with torch.cuda.graph(graph):
            target.uniform_(generator=generator)
        graph.replay()
        first = target.clone()
        graph.replay()
        assert not torch.equal(first, target), "a registered scope generator repeats in replays"
        notes.append("scope.torch_generator('cuda') registers with a graph")
    return "; ".join(notes)


def probe_compile(device: str) -> str:
    """torch.compile (inductor) inside and around scopes: repeatable values, exact restore, no warnings."""
    torch = Device(device).torch if device != "cpu" else __import__("torch")
    from ._scope import deterministic  # noqa: PLC0415
    from ._wrappers import seeded  # noqa: PLC0415

    where = "cpu" if device == "cpu" else device

    def step(x: Any) -> Any:
        with deterministic(0):
            inside = x + torch.rand(4, device=where)
        return inside * 2

    compiled = torch.compile(step, backend="inductor")
    around = seeded(1)(torch.compile(lambda x: x + torch.rand(4, device=where), backend="inductor"))
    x = torch.zeros(4, device=where)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = torch.get_rng_state()
        results = [compiled(x), compiled(x), around(x), around(x)]
        assert torch.equal(before, torch.get_rng_state()), "compiled scopes did not restore the CPU state"
    assert torch.equal(results[0], results[1]) and torch.equal(results[2], results[3]), "not repeatable"
    noisy = [str(w.message)[:80] for w in caught if "Dynamo" in str(w.message)]
    assert not noisy, f"Dynamo warned: {noisy}"
    return "repeatable inside and around compiled code, CPU state restored, no Dynamo warnings"


def probe_deterministic_algorithms(device: str) -> str:
    """A nondeterministic CUDA op raises only inside deterministic_algorithms=True; cuBLAS set or warned."""
    torch = Device(device).torch
    from ._flags import CUBLAS_VARIABLE  # noqa: PLC0415
    from ._scope import deterministic  # noqa: PLC0415

    os.environ.pop(CUBLAS_VARIABLE, None)
    assert not torch.cuda.is_initialized(), "CUDA was initialised before the probe"

    def nondeterministic() -> None:
        x = torch.rand(1, 2, 8, 8, device="cuda", requires_grad=True)
        torch.nn.functional.adaptive_avg_pool2d(x, 3).sum().backward()

    with deterministic(0, deterministic_algorithms=True):
        assert os.environ.get(CUBLAS_VARIABLE) in (":4096:8", ":16:8"), "cuBLAS variable not set in the scope"
        try:
            nondeterministic()
        except RuntimeError as error:
            raised = "deterministic" in str(error)
        else:
            raised = False
    assert raised, "a known nondeterministic op did not raise inside the scope"
    assert CUBLAS_VARIABLE not in os.environ, "the cuBLAS variable was not restored"
    nondeterministic()  # outside: allowed again
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with deterministic(0, deterministic_algorithms=True):
            pass
    hints = [str(w.message) for w in caught if CUBLAS_VARIABLE in str(w.message)]
    assert hints and ":4096:8" in hints[0], "no warning with the fix once CUDA is initialised"
    return (
        "nondeterministic op raised only inside; cuBLAS variable set before init, warned with the fix after"
    )


def probe_batch_invariant(device: str) -> str:
    """Under batch_invariant=True each row's result is the same at every batch size, on this device."""
    torch = __import__("torch") if device == "cpu" else Device(device).torch
    from ._scope import deterministic  # noqa: PLC0415
    from ._trace import batch_divergence  # noqa: PLC0415

    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> Any:
        return torch.randn(*shape, generator=generator).to(device)

    weight, bias = rand(90, 7), rand(7)
    wide = rand(256, 384)
    kernel = rand(8, 3, 3, 3)
    ops: dict[str, Callable[[Any], Any]] = {
        "mm": lambda x: torch.mm(x, wide),
        "addmm": lambda x: torch.addmm(bias, x[:, :90], weight),
        "bmm": lambda x: torch.bmm(x[:, :180].reshape(-1, 9, 20), x[:, 76:].reshape(-1, 20, 9)),
        "conv2d": lambda x: torch.conv2d(x[:, :192].reshape(-1, 3, 8, 8), kernel, padding=1),
    }
    batch = rand(17, 256)
    varied = []
    for name, op in ops.items():
        plain_full = op(batch)
        if any(not torch.equal(plain_full[r : r + 1], op(batch[r : r + 1].clone())) for r in range(17)):
            varied.append(name)
        with deterministic(0, batch_invariant=True):
            full = op(batch)
            for size in (1, 3, 8):
                assert torch.equal(op(batch[:size].clone()), full[:size]), f"{name}: rows changed at B={size}"
            for row in (0, 5, 16):
                alone = op(batch[row : row + 1].clone())
                assert torch.equal(alone, full[row : row + 1]), f"{name}: row {row} alone differs"
        assert torch.equal(op(batch), plain_full), f"{name}: torch's own kernel not back after the scope"
    model = torch.nn.Sequential(torch.nn.Linear(256, 384), torch.nn.GELU(), torch.nn.Linear(384, 10)).to(
        device
    )
    with deterministic(0, batch_invariant=True):
        found = batch_divergence(model.eval(), batch[:8])
    assert found is None, f"an MLP under the flag still diverges:\n{found}"
    without = batch_divergence(model, batch[:8])
    plain = "no divergence" if without is None else f"{without.kind} at {without.op}"
    return (
        f"rows bit-identical at B=1,3,8,17 for {', '.join(ops)} under the flag, torch's kernels back after; "
        f"without it rows varied for {', '.join(varied) or 'none'}; MLP: {plain} without the flag, "
        "none with it"
    )


PROBES: tuple[Probe, ...] = (
    Probe("scope", ("cpu",), probe_cpu_scope, "classic draws, exact restore of CPU states and flags"),
    Probe("snapshot", ("cpu",), probe_cpu_snapshot, "snapshot -> JSON -> restore"),
    Probe("compile", ("cpu", "cuda"), probe_compile, "torch.compile inside and around scopes"),
    Probe("no-init", ACCELERATORS, probe_no_init, "no initialisation as a side effect"),
    Probe("lazy-seed", ("cuda", "xpu"), probe_lazy_seed, "exact lazy seeding, queued seeds replayed"),
    Probe("restore", ACCELERATORS, probe_restore_exact, "device states and flags restored"),
    Probe("no-sync", ("cuda",), probe_no_sync, "no device synchronisation per scope"),
    Probe("graphs", ("cuda",), probe_graphs, "CUDA graphs inside and around scopes"),
    Probe("algorithms", ("cuda",), probe_deterministic_algorithms, "deterministic algorithms and cuBLAS"),
    Probe(
        "batch-invariant", ("cpu", "cuda"), probe_batch_invariant, "batch_invariant=True on matmul and conv"
    ),
)


def run_probe(name: str, device: str) -> dict[str, Any]:
    """Run one probe in this process and report it.

    Args:
        name: The probe's name.
        device: ``"cpu"`` or an accelerator kind.

    Returns:
        ``{"probe", "device", "result": "pass" | "fail", "detail", "seconds"}``.
    """
    probe = next(probe for probe in PROBES if probe.name == name)
    start = time.perf_counter()
    try:
        detail, result = probe.check(device), "pass"
    except Exception as error:  # noqa: BLE001 - a failed probe is a result
        detail, result = f"{type(error).__name__}: {error}", "fail"
    return {
        "probe": name,
        "device": device,
        "result": result,
        "detail": detail,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _available(kind: str) -> tuple[bool, str]:
    """Whether an accelerator can be probed here (checked without initialising it)."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return False, "torch is not installed"
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return (mps is not None and bool(mps.is_available())), "no MPS device"
    module = getattr(torch, kind, None)
    if module is None or not bool(module.is_available()):
        return False, f"no {kind.upper()} device (torch {torch.__version__})"
    return True, ""


def _in_fresh_process(name: str, device: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "deterministic._selftest", name, device]
    start = time.perf_counter()
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return {
            "probe": name,
            "device": device,
            "result": "fail",
            "detail": f"timed out after {PROBE_TIMEOUT:g} s",
            "seconds": PROBE_TIMEOUT,
        }
    lines = finished.stdout.strip().splitlines()
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        report = {
            "probe": name,
            "device": device,
            "result": "fail",
            "detail": f"crashed: {tail}",
            "seconds": round(time.perf_counter() - start, 3),
        }
    return report


def main(as_json: bool, device: str) -> int:
    """Run the probes for ``device`` (``"all"``: every kind) and CPU, each in a fresh process.

    Args:
        as_json: Print one JSON object instead of the table.
        device: An accelerator kind, or ``"all"``.

    Returns:
        0 when every probe that ran passed, else 1.
    """
    kinds = ACCELERATORS if device == "all" else (device,)
    reports: list[dict[str, Any]] = []
    try:
        import torch  # noqa: PLC0415, F401
    except ImportError:
        reports.append(
            {
                "probe": "*",
                "device": "cpu",
                "result": "skip",
                "detail": "torch is not installed",
                "seconds": 0.0,
            }
        )
    else:
        reports += [_in_fresh_process(probe.name, "cpu") for probe in PROBES if "cpu" in probe.devices]
    for kind in kinds:
        available, why = _available(kind)
        for probe in PROBES:
            if kind not in probe.devices:
                continue
            if available:
                reports.append(_in_fresh_process(probe.name, kind))
            else:
                reports.append(
                    {"probe": probe.name, "device": kind, "result": "skip", "detail": why, "seconds": 0.0}
                )
    failed = [report for report in reports if report["result"] == "fail"]
    if as_json:
        print(json.dumps({"passed": not failed, "probes": reports}, indent=2))
    else:
        print(_table(reports))
    return 1 if failed else 0


def _table(reports: Sequence[dict[str, Any]]) -> str:
    rows = [("probe", "device", "result", "seconds", "detail")]
    rows += [(r["probe"], r["device"], r["result"], f"{r['seconds']:.2f}", r["detail"]) for r in reports]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
    passed = sum(report["result"] == "pass" for report in reports)
    failed = sum(report["result"] == "fail" for report in reports)
    skipped = sum(report["result"] == "skip" for report in reports)
    return "\n".join(
        [*lines, "", f"probes: {passed} of {len(reports)} passed ({failed} failing, {skipped} skipped)"]
    )


if __name__ == "__main__":
    print(json.dumps(run_probe(sys.argv[1], sys.argv[2])))
