"""The divergence tracer: recording, exact digests, comparison, the report and ``check --trace``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from deterministic import deterministic, restore, snapshot

torch = pytest.importorskip("torch")
nn = torch.nn

from deterministic import Divergence, first_divergence, trace
from deterministic._trace._comparing import alerts_of
from deterministic._trace._digesting import digest_tensor
from deterministic._trace._format import AlertEvent, OpEvent, Reader, ScopeEvent, TensorRecord

SCRIPT = Path(__file__).with_name("trace_train.py")


def line_of(marker: str, path: Path = SCRIPT) -> int:
    """The number of the line of ``path`` containing ``marker``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} not in {path}")


def here(offset: int = 0) -> str:
    """``file:line`` of the caller's line plus ``offset``, as the tracer records locations."""
    frame = sys._getframe(1)
    return f"{frame.f_code.co_filename}:{frame.f_lineno + offset}"


def ops(path: Path) -> list[OpEvent]:
    with Reader(path) as reader:
        return [event for event in reader.events() if isinstance(event, OpEvent)]


def events(path: Path) -> list[Any]:
    with Reader(path) as reader:
        return list(reader.events())


def check_trace(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deterministic", "check", "--trace", "--trace-dir", str(tmp_path)]
    command += ["--seed", "0", str(SCRIPT), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


# -- check --trace on a real training script, one injected cause each -------------------------


@pytest.mark.parametrize(
    ("inject", "kind", "module", "phase"),
    [
        ("rng", "rng-state", "Net.drop", "forward"),
        ("data", "external-input", None, None),
        ("op", "nondeterministic-op", "Net.jitter", "forward"),
    ],
)
def test_check_trace_names_kind_module_and_line(
    tmp_path: Path, inject: str, kind: str, module: str | None, phase: str | None
) -> None:
    """Each injected cause is reported with its kind, module path and the line that holds it."""
    result = check_trace(tmp_path, "--inject", inject)
    assert result.returncode == 1, result.stdout + result.stderr
    line = line_of(f"# cause: {inject}")
    assert f"({kind})" in result.stdout
    assert f"trace_train.py:{line}" in result.stdout
    assert str(tmp_path / "run1.dtrace") in result.stdout and str(tmp_path / "run2.dtrace") in result.stdout
    divergence = first_divergence(tmp_path / "run1.dtrace", tmp_path / "run2.dtrace")
    assert isinstance(divergence, Divergence)
    assert (divergence.kind, divergence.module, divergence.phase) == (kind, module, phase)
    assert divergence.location == f"{SCRIPT}:{line}"
    first, second = divergence.events
    assert first is not None and second is not None
    assert first.index == second.index == divergence.index
    assert first.op == second.op == divergence.op
    assert str(divergence) in result.stdout


def test_check_trace_rng_report_names_the_generator_and_fix(tmp_path: Path) -> None:
    """An entropy-seeded explicit generator is named, with both seeds and the scope-derived fix."""
    result = check_trace(tmp_path, "--inject", "rng")
    divergence = first_divergence(tmp_path / "run1.dtrace", tmp_path / "run2.dtrace")
    assert divergence is not None and divergence.op == "aten::rand.generator"
    first, second = divergence.events
    assert first is not None and second is not None and first.rng is not None and second.rng is not None
    assert first.rng.generator == "torch.Generator #1 (cpu)"
    assert first.rng.initial_seed != second.rng.initial_seed
    assert first.inputs == second.inputs == () and first.args == second.args
    assert "scope.torch_generator()" in result.stdout
    # check seeds each run's process at its start (no scope is held), so no scope event precedes it.
    assert divergence.scopes == (None, None)
    assert "last scope event: none" in result.stdout


def test_check_trace_external_input_says_where_it_entered(tmp_path: Path) -> None:
    """A batch perturbed by time in the dataset enters torch at the perturbing line (from_numpy)."""
    result = check_trace(tmp_path, "--inject", "data")
    divergence = first_divergence(tmp_path / "run1.dtrace", tmp_path / "run2.dtrace")
    assert divergence is not None and divergence.op == "aten::lift_fresh"
    first, second = divergence.events
    assert first is not None and second is not None
    assert first.inputs[0].fresh and second.inputs[0].fresh
    assert first.inputs[0].digest != second.inputs[0].digest
    assert "entered:  here" in result.stdout


def test_check_trace_control_flow_shows_both_paths(tmp_path: Path) -> None:
    """A branch on os.urandom is reported as control-flow with both runs' modules and lines."""
    result = check_trace(tmp_path, "--inject", "branch")
    assert result.returncode == 1, result.stdout + result.stderr
    divergence = first_divergence(tmp_path / "run1.dtrace", tmp_path / "run2.dtrace")
    assert divergence is not None and divergence.kind == "control-flow"
    first, second = divergence.events
    assert first is not None and second is not None
    assert {first.module, second.module} == {"Net.left", "Net.right"}
    lines = {f"{SCRIPT}:{line_of('# branch: left')}", f"{SCRIPT}:{line_of('# branch: right')}"}
    assert {first.location, second.location} == lines
    for location in lines:
        assert f"trace_train.py:{location.rsplit(':', 1)[1]}" in result.stdout


def test_check_trace_clean_script_exits_zero(tmp_path: Path) -> None:
    """Without an injected cause the traces match and check --trace exits 0."""
    result = check_trace(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "traces identical" in result.stdout
    assert first_divergence(tmp_path / "run1.dtrace", tmp_path / "run2.dtrace") is None
    assert len(ops(tmp_path / "run1.dtrace")) > 500


def test_check_trace_output_difference_outside_torch(tmp_path: Path) -> None:
    """Matching traces with differing output say the difference arose outside torch ops."""
    result = check_trace(tmp_path, "--print-time")
    assert result.returncode == 1
    assert "the traces match" in result.stdout
    assert "line 4 differs" in result.stdout and "finished at" in result.stdout


def test_check_trace_lists_alerts_of_a_reproducible_run(tmp_path: Path) -> None:
    """A reproducible run's warn_only alerts are listed once each with their line, not as warnings."""
    script = tmp_path / "alerting.py"
    script.write_text(
        "import torch\n"
        "from deterministic import deterministic\n"
        'with deterministic(0, deterministic_algorithms="warn"):\n'
        "    for _ in range(3):\n"
        "        torch.zeros(5).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))\n"
        "print('done')\n"
    )
    command = [sys.executable, "-m", "deterministic", "check", "--trace-dir", str(tmp_path / "traces")]
    result = subprocess.run(
        [*command, "--seed", "0", str(script)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("- aten::put_ at ") == 1
    assert "alerting.py:5: put_ does not have a deterministic implementation" in result.stdout
    assert "does not have a deterministic implementation" not in result.stderr


# -- recording ------------------------------------------------------------------------------


def exotic_step() -> torch.Tensor:
    """A forward and backward pass through views, in-place ops and unusual dtypes and devices."""
    with deterministic(0):
        model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 3))
        x = torch.randn(6, 4).t()  # non-contiguous
        hidden = model(x)
        hidden = hidden * 1.0
        hidden[:, 0].add_(1)  # in-place through a view
        stacked = torch.cat([hidden, torch.zeros(0, 3)])  # a zero-size tensor
        counts = torch.arange(12).reshape(3, 4).t()  # int64, non-contiguous
        flags = counts > 5  # bool
        spectrum = torch.randn(3, dtype=torch.complex64)
        mixed = (spectrum.conj() * 2).real  # a conjugate view
        shape_only = torch.empty(3, 3, device="meta") + 1  # meta: no values
        loss = stacked.sum() + flags.sum() + counts.sum() + mixed.sum() + shape_only.shape[0]
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()] + [loss.detach().reshape(1)])


def test_identical_runs_trace_identical_digests(tmp_path: Path) -> None:
    """Two identical forward+backward runs give the same digests everywhere: no false positives."""
    with trace(tmp_path / "a.dtrace"):
        exotic_step()
    with trace(tmp_path / "b.dtrace"):
        exotic_step()
    assert first_divergence(tmp_path / "a.dtrace", tmp_path / "b.dtrace") is None
    first, second = ops(tmp_path / "a.dtrace"), ops(tmp_path / "b.dtrace")
    assert len(first) > 40
    for a, b in zip(first, second, strict=True):
        assert a.same_place(b) and a.args == b.args and a.rng == b.rng
        assert all(x.same_value(y) for x, y in zip(a.inputs + a.outputs, b.inputs + b.outputs, strict=True))
    descriptions = " ".join(r.description for e in first for r in e.inputs + e.outputs)
    for seen in ("complex64", "bool[", "int64[", "@meta", "[0, 3]", "uninitialized"):
        assert seen in descriptions
    assert any(e.phase == "backward" for e in first)


def test_traced_numerics_equal_untraced(tmp_path: Path) -> None:
    """A traced run's results equal an untraced run's bit for bit."""
    untraced = exotic_step()
    with trace(tmp_path / "t.dtrace"):
        traced = exotic_step()
    assert torch.equal(untraced.view(torch.int32), traced.view(torch.int32))


def test_module_paths_and_phases(tmp_path: Path) -> None:
    """Ops carry the nn.Module path they ran under, in forward and in backward."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([Block(), Block()])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.blocks[0](x)
            x = x * 3.0  # between blocks: belongs to Model itself
            return self.blocks[1](x)

    with deterministic(0):
        model = Model()
        x = torch.randn(2, 4)
        with trace(tmp_path / "m.dtrace"):
            model(x).sum().backward()
    recorded = ops(tmp_path / "m.dtrace")
    forward = [(e.op, e.module) for e in recorded if e.phase == "forward"]
    assert ("aten::addmm", "Model.blocks.0.proj") in forward
    assert ("aten::addmm", "Model.blocks.1.proj") in forward
    assert ("aten::mul.Tensor", "Model") in forward
    backward = {(e.op, e.module) for e in recorded if e.phase == "backward"}
    assert ("aten::mm", "Model.blocks.1.proj") in backward
    assert ("aten::mm", "Model.blocks.0.proj") in backward
    assert ("aten::mul.Tensor", "Model") in backward
    assert all(e.module is None for e in recorded if e.op == "aten::sum")  # outside any module


def test_locations_are_the_users_lines(tmp_path: Path) -> None:
    """An op's location is the user's line, not a frame inside torch or this library."""
    with deterministic(0), trace(tmp_path / "l.dtrace"):
        layer = nn.Linear(3, 3)
        expected = here(1)
        layer(torch.ones(1, 3))
    recorded = ops(tmp_path / "l.dtrace")
    assert [e.location for e in recorded if e.op == "aten::addmm"] == [expected]


def test_scope_events_are_recorded(tmp_path: Path) -> None:
    """Scope entries and exits are recorded with their seed and the user's line."""
    with trace(tmp_path / "s.dtrace"):
        entered = here(1)
        with deterministic(5):
            torch.rand(2)
    recorded = events(tmp_path / "s.dtrace")
    scopes = [e for e in recorded if isinstance(e, ScopeEvent)]
    assert [(s.kind, s.seed) for s in scopes] == [("enter", 5), ("exit", 5)]
    assert scopes[0].location == entered
    assert isinstance(recorded[1], OpEvent) and recorded[1].rng is not None
    assert recorded[1].rng.generator == "default cpu generator" and recorded[1].rng.initial_seed == 5


def test_in_place_and_data_writes_are_seen(tmp_path: Path) -> None:
    """A digest is not reused after an in-place op or a write through .data."""
    with trace(tmp_path / "w.dtrace"):
        x = torch.ones(3)
        _ = x * 2
        x.add_(1)
        _ = x * 2
        x.data.mul_(5)
        _ = x * 2
    products = [e for e in ops(tmp_path / "w.dtrace") if e.op == "aten::mul.Tensor"]
    seen = [e.inputs[0].digest for e in products]
    assert seen == [digest_tensor(torch.full((3,), value)) for value in (1.0, 2.0, 10.0)]


def test_rehash_sees_writes_that_bypass_torch(tmp_path: Path) -> None:
    """With rehash=True a write through .numpy() is seen, and reported as a change outside torch ops."""
    for name, value in (("a", 1.0), ("b", 2.0)):
        with trace(tmp_path / f"{name}.dtrace", rehash=True):
            x = torch.zeros(4)
            _ = x + 1
            x.numpy()[0] = value
            _ = (x + 1).sum().item()
            consumer = here(-1)
    divergence = first_divergence(tmp_path / "a.dtrace", tmp_path / "b.dtrace")
    assert divergence is not None and divergence.kind == "external-input"
    assert (divergence.op, divergence.location) == ("aten::add.Tensor", consumer)
    first, _ = divergence.events
    assert first is not None and first.inputs[0].digest == digest_tensor(torch.tensor([1.0, 0, 0, 0]))
    assert first.inputs[0].changed
    assert "changed outside torch ops" in str(divergence)


def test_only_the_tracing_thread_is_recorded(tmp_path: Path) -> None:
    """Ops another thread runs during the trace are not recorded."""

    def other() -> None:
        for _ in range(50):
            torch.ones(3).add(1)

    with trace(tmp_path / "t.dtrace"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        torch.zeros(2)
    assert [e.op for e in ops(tmp_path / "t.dtrace")] == ["aten::zeros"]


def test_warn_only_alerts_listed_once_without_warnings(tmp_path: Path) -> None:
    """Torch's warn_only alerts are recorded once per op and line instead of warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with trace(tmp_path / "w.dtrace"), deterministic(0, deterministic_algorithms="warn"):
            for _ in range(3):
                torch.zeros(5).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
                line = here(-1)
    assert not [w for w in caught if "deterministic implementation" in str(w.message)]
    alerts = alerts_of(tmp_path / "w.dtrace")
    assert [(a.op, a.location) for a in alerts] == [("aten::put_", line)]
    assert "put_ does not have a deterministic implementation" in alerts[0].message


def test_other_warnings_pass_through_in_warn_only_mode(tmp_path: Path) -> None:
    """Warnings that are not nondeterminism alerts still reach the user while tracing."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with trace(tmp_path / "w.dtrace"), deterministic(0, deterministic_algorithms="warn"):
            torch.zeros(5).index_reduce_(0, torch.tensor([0, 0]), torch.tensor([1.0, 2.0]), "prod")
    assert any("index_reduce() is in beta" in str(w.message) for w in caught)


def test_string_table_stays_bounded_and_readable(tmp_path: Path) -> None:
    """Over 65,536 distinct argument texts still read back exactly (the table is recycled)."""
    base = torch.zeros(1)
    with trace(tmp_path / "big.dtrace") as recording:
        for number in range(70_000):
            base.add(number)
        assert os.path.getsize(tmp_path / "big.dtrace") > 0  # streamed before the block ends
    assert recording.ops == 70_000
    recorded = ops(tmp_path / "big.dtrace")
    assert [e.args for e in recorded[::9999]] == [f"(T, {n})" for n in range(0, 70_000, 9999)]


# -- comparing and reporting ----------------------------------------------------------------


def test_fresh_scope_seed_is_named_as_the_cause(tmp_path: Path) -> None:
    """A scope drawing a fresh seed per entry is named as the cause of an rng-state divergence."""
    for name in ("a", "b"):
        with trace(tmp_path / f"{name}.dtrace"), deterministic(None):
            torch.rand(3).sum().item()
    divergence = first_divergence(tmp_path / "a.dtrace", tmp_path / "b.dtrace")
    assert divergence is not None and divergence.kind == "rng-state"
    assert "fresh seed per entry" in str(divergence)


def test_draw_outside_any_scope_is_named_as_the_cause(tmp_path: Path) -> None:
    """A draw outside every scope from a reseeded default generator names the missing scope."""
    saved = snapshot(sources=["torch"])
    try:
        for name in ("a", "b"):
            torch.seed()
            with trace(tmp_path / f"{name}.dtrace"):
                torch.randn(3).sum().item()
    finally:
        restore(saved)
    divergence = first_divergence(tmp_path / "a.dtrace", tmp_path / "b.dtrace")
    assert divergence is not None and divergence.kind == "rng-state"
    assert "outside any deterministic scope" in str(divergence)
    assert "with deterministic(seed)" in str(divergence)


def test_a_run_that_ends_early_is_control_flow(tmp_path: Path) -> None:
    """When one run stops earlier, the divergence is control-flow at the first missing op."""

    def work(stop: bool) -> None:
        zeros = torch.zeros(2)
        if stop:
            raise ValueError("stop")
        zeros.add(1)

    with trace(tmp_path / "a.dtrace"):
        work(False)
    with pytest.raises(ValueError, match="stop"), trace(tmp_path / "b.dtrace"):
        work(True)
    divergence = first_divergence(tmp_path / "a.dtrace", tmp_path / "b.dtrace")
    assert divergence is not None and divergence.kind == "control-flow"
    assert divergence.index == 1 and divergence.events[1] is None
    assert divergence.complete == (True, False)
    assert "stopped without leaving its traced block" in str(divergence)


def test_report_quotes_torchs_alert_for_a_nondeterministic_aten_op() -> None:
    """The nondeterministic-op report quotes torch's alert for the op when one was recorded."""
    message = "index_add_cuda_ does not have a deterministic implementation"
    alert = AlertEvent("aten::index_add_", "train.py:9", message, 3)

    def event(output: bytes) -> OpEvent:
        inputs = (TensorRecord("float32[4]", b"a" * 16, False),)
        outputs = (TensorRecord("float32[4]", output * 16, False),)
        return OpEvent(
            3, "aten::index_add_", "Net.pool", "forward", "train.py:9", "(T, 0, T, T)", inputs, outputs, None
        )

    divergence = Divergence(
        kind="nondeterministic-op",
        events=(event(b"b"), event(b"c")),
        index=3,
        paths=("a", "b"),
        scopes=(None, None),
        depths=(0, 0),
        alerts=(alert,),
        seeded=(None, None),
        complete=(True, True),
    )
    text = str(divergence)
    assert "torch:    index_add_cuda_ does not have a deterministic implementation" in text
    assert "deterministic_algorithms=True" in text


# -- bad input ------------------------------------------------------------------------------


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    """Bad paths and options raise clear errors and create nothing."""
    with pytest.raises(TypeError, match="str or os.PathLike, not int"):
        trace(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rehash must be a bool"):
        trace(tmp_path / "x", rehash="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not NoneType"):
        first_divergence(None, tmp_path / "x")  # type: ignore[arg-type]
    not_a_trace = tmp_path / "notes.txt"
    not_a_trace.write_text("hello, this is not a trace\n")
    with pytest.raises(ValueError, match="not a deterministic trace"):
        first_divergence(not_a_trace, not_a_trace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_traces_do_not_nest(tmp_path: Path) -> None:
    """A second trace inside a recording one is refused; the outer one keeps recording."""
    with trace(tmp_path / "outer.dtrace"):
        with pytest.raises(RuntimeError, match="traces do not nest"), trace(tmp_path / "inner.dtrace"):
            pass
        torch.zeros(1)
    assert [e.op for e in ops(tmp_path / "outer.dtrace")] == ["aten::zeros"]
    assert not (tmp_path / "inner.dtrace").exists()


@pytest.mark.cuda
def test_cuda_trace_twice_matches_and_records_the_cuda_generator(tmp_path: Path) -> None:
    """On a real GPU, two identical CUDA steps give identical traces, with CUDA generator records."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")

    def step() -> None:
        with deterministic(0, deterministic_algorithms=True):
            model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5)).cuda()
            model(torch.randn(4, 8, device="cuda")).sum().backward()

    for name in ("a", "b"):
        with trace(tmp_path / f"{name}.dtrace"):
            step()
    assert first_divergence(tmp_path / "a.dtrace", tmp_path / "b.dtrace") is None
    generators = {e.rng.generator for e in ops(tmp_path / "a.dtrace") if e.rng is not None}
    assert "default cuda:0 generator" in generators


@pytest.mark.cuda
def test_cuda_alert_is_recorded(tmp_path: Path) -> None:
    """On a real GPU, a CUDA op torch knows as nondeterministic is listed as an alert."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    with trace(tmp_path / "a.dtrace"), deterministic(0, deterministic_algorithms="warn"):
        target = torch.zeros(4, device="cuda")
        target.index_add_(0, torch.tensor([0, 0], device="cuda"), torch.ones(2, device="cuda"))
    assert any(a.op == "aten::index_add_" for a in alerts_of(tmp_path / "a.dtrace"))


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_trace_module_is_lazy() -> None:
    """``import deterministic`` does not import the tracer or torch."""
    code = "import sys, deterministic; print('deterministic._trace' in sys.modules, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


# -- digests --------------------------------------------------------------------------------


def test_masks_with_equal_parity_and_sum_get_different_digests() -> None:
    """Two dropout-like masks with the same parity and sum differ in digest (unlike an xor-sum)."""
    first = torch.tensor([2.0, 0.0, 2.0, 0.0])
    second = torch.tensor([0.0, 2.0, 0.0, 2.0])
    assert first.sum() == second.sum()
    assert digest_tensor(first) != digest_tensor(second)


def test_digest_is_of_logical_elements() -> None:
    """Views hash their logical elements: strides, conjugation and bytes outside the view do not count."""
    base = torch.arange(12.0).reshape(3, 4)
    assert digest_tensor(base.t()) == digest_tensor(base.t().contiguous())
    assert digest_tensor(base.t()) != digest_tensor(base)
    other = base.clone()
    other[2, 3] = -1.0  # outside the slice below
    assert digest_tensor(base[:2]) == digest_tensor(other[:2])
    spectrum = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
    assert digest_tensor(spectrum.conj()) == digest_tensor(spectrum.conj().resolve_conj())
    assert digest_tensor(spectrum.conj()) != digest_tensor(spectrum)


def test_digest_tells_every_bit_apart() -> None:
    """-0.0 and 0.0, and NaNs with different payloads, get different digests; dtype-agnostic bytes match."""
    assert digest_tensor(torch.tensor([0.0])) != digest_tensor(torch.tensor([-0.0]))
    quiet = torch.tensor([0x7FC00000], dtype=torch.int32).view(torch.float32)
    payload = torch.tensor([0x7FC00001], dtype=torch.int32).view(torch.float32)
    assert digest_tensor(quiet) != digest_tensor(payload)
    assert digest_tensor(torch.zeros(0)) == digest_tensor(torch.zeros(0, 5))
    assert digest_tensor(torch.ones(3, dtype=torch.bfloat16)) is not None
    assert digest_tensor(torch.empty(2, device="meta")) is None


def test_scope_event_arriving_while_an_op_is_built_waits_for_it(tmp_path: Path) -> None:
    """A scope event during an op record (a finaliser) cannot reset the string table under it."""
    from deterministic._trace._format import TABLE_SLOTS, Writer, varint

    path = tmp_path / "w.dtrace"
    writer = Writer(open(path, "wb"), {"format": 1})  # noqa: SIM115 - closed by writer.close
    writer.slots(tuple(f"filler {n}" for n in range(TABLE_SLOTS - 6)))
    writer.start_op()
    op, module, location, args = writer.slots(("aten::demo", None, "x.py:1", "()"))
    # The table is now one short of full: this event's new string would reset it.
    writer.scope(1, 7, "a location never seen before")
    writer.op(varint(op) + varint(module) + b"\0" + varint(location) + varint(args) + b"\0\0\0")
    writer.close(True)
    recorded = events(path)
    assert isinstance(recorded[0], OpEvent) and (recorded[0].op, recorded[0].location) == (
        "aten::demo",
        "x.py:1",
    )
    assert isinstance(recorded[1], ScopeEvent) and recorded[1].location == "a location never seen before"
