"""The tracer on real programs: no false alarms, DataLoader workers, nested tensors, forks, damaged files."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from deterministic import TracedCompileWarning, deterministic, first_divergence, trace
from deterministic._trace._comparing import compare
from deterministic._trace._format import BATCH_OP, OpEvent, Reader


def ops(path: Path) -> list[OpEvent]:
    with Reader(path) as reader:
        return [event for event in reader.events() if isinstance(event, OpEvent)]


def dirty_heap(value: float) -> None:
    """Leave freed memory full of ``value``, so that uninitialised allocations differ between runs."""
    held = [
        torch.full((size,), value) for size in (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536) for _ in range(4)
    ]
    del held


def traced_twice(tmp_path: Path, program: Any) -> tuple[Path, Path]:
    """Trace ``program`` twice from the same seed, with different garbage in freed memory.

    It runs once untraced first: torch's one-time lazy set-up (a cached dummy tensor, say)
    happens in every fresh process and is not what the test compares.
    """
    with deterministic(0):
        program()
    paths = (tmp_path / "a.dtrace", tmp_path / "b.dtrace")
    for path, dirt in zip(paths, (3.0, -7.0), strict=True):
        with deterministic(0):
            dirty_heap(dirt)
            with trace(path):
                program()
    return paths


# -- values no later op reads, or reads only to overwrite, are never compared ---------------------


def lstm_step() -> None:
    model = nn.LSTM(8, 16, num_layers=2)
    tokens = torch.randn(5, 3, 8)
    output, _ = model(tokens)
    output.sum().backward()
    with torch.no_grad():
        model.eval()
        print(model(tokens)[0].sum().item())


def rrelu_step() -> None:
    activation = nn.RReLU()
    x = torch.randn(4, 32, requires_grad=True)
    activation(x).sum().backward()
    assert x.grad is not None
    print(x.grad.sum().item())


def vmap_step() -> None:
    x = torch.randn(6, 5)
    # Batched dropout expands an uninitialised scalar that bernoulli(p) then ignores.
    dropped = torch.func.vmap(lambda row: nn.functional.dropout(row, 0.5), randomness="different")(x)
    print(dropped.sum().item())


def deepcopy_step() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    model(torch.randn(6, 4)).sum().backward()
    ema = copy.deepcopy(model)
    best = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        for ema_value, value in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_value.is_floating_point():
                ema_value.lerp_(value, 0.1)
    print(sum(value.sum().item() for value in ema.state_dict().values() if value.is_floating_point()))
    print(sum(value.float().sum().item() for value in best.values()))


@pytest.mark.parametrize(
    "program", [lstm_step, rrelu_step, vmap_step, deepcopy_step], ids=lambda p: p.__name__
)
def test_identical_programs_match_despite_uninitialised_memory(tmp_path: Path, program: Any) -> None:
    """Scratch outputs, write-only buffers and storages filled after set_ are never a divergence."""
    first, second = traced_twice(tmp_path, program)
    divergence, _ = compare(first, second)
    assert divergence is None, str(divergence)


def garbage_traced_twice(tmp_path: Path, read: Any) -> tuple[Path, Path]:
    """Trace ``read(torch.empty(n))`` twice, with ``n`` chosen so that the garbage read differs.

    Which freed chunk the allocator hands out depends on what ran before in the process,
    so a size is tried until the two traced runs really read different garbage.
    """
    for size in (64, 1000, 4096, 16384, 50000):
        seen: list[float] = []

        def program(size: int = size, seen: list[float] = seen) -> None:
            seen.append(float(read(torch.empty(size))))

        paths = traced_twice(tmp_path, program)
        if seen[-1] != seen[-2]:
            return paths
    raise AssertionError("the allocator never handed out differing garbage")


def test_a_differing_value_that_a_later_op_reads_is_still_found(tmp_path: Path) -> None:
    """The same garbage, read by an op whose output matters, is reported where it was made."""
    first, second = garbage_traced_twice(tmp_path, lambda scratch: (scratch * 1).sum().item())
    divergence = first_divergence(first, second)
    assert divergence is not None and divergence.kind == "external-input"
    assert divergence.op == "aten::mul.Tensor"


def test_a_difference_no_op_reads_is_named_when_outputs_differ(tmp_path: Path) -> None:
    """A differing value read only outside torch ops is the 'unread' difference, not a divergence."""
    first, second = garbage_traced_twice(tmp_path, lambda scratch: (scratch * 1).numpy().sum())
    divergence, unread = compare(first, second)
    assert divergence is None
    assert unread is not None and unread.op == "aten::mul.Tensor"


# -- DataLoader workers -----------------------------------------------------------------------------


class Jittery(torch.utils.data.Dataset):  # type: ignore[misc]
    """Samples made with torch ops in the worker; odd samples are slow, so arrival order races."""

    def __init__(self, entropy: bool = False) -> None:
        self.entropy = entropy

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> Any:
        import time

        time.sleep(0.02 * (index % 2) + 0.001 * (os.getpid() % 3))
        sample = torch.rand(3) + index
        if self.entropy:
            sample = sample + torch.from_numpy(np.random.default_rng().standard_normal(3).astype(np.float32))
        return sample


def loop(entropy: bool = False) -> list[float]:
    loader = torch.utils.data.DataLoader(Jittery(entropy), batch_size=2, num_workers=2)
    model = nn.Linear(3, 1)
    losses = []
    for batch in loader:  # the loop's line
        losses.append(model(batch).sum().item())
    return losses


def test_worker_batches_are_recorded_in_the_loaders_order(tmp_path: Path) -> None:
    """Batches from 2 racing workers compare equal: recorded where the loop gets them, in order."""
    first, second = tmp_path / "a.dtrace", tmp_path / "b.dtrace"
    for path in (first, second):
        with deterministic(0), trace(path):
            loop()
    assert first_divergence(first, second) is None
    batches = [event for event in ops(first) if event.op == BATCH_OP]
    assert [event.args for event in batches] == ["worker 0", "worker 1"] * 4
    assert all(event.location.endswith(f"{Path(__file__).name}:{LOOP_LINE}") for event in batches)
    # No op of a forked worker reached the parent's file (they would break its chunks or add calls).
    assert not any("Jittery" in event.location or "__getitem__" in event.location for event in ops(first))


LOOP_LINE = next(
    number
    for number, line in enumerate(Path(__file__).read_text().splitlines(), start=1)
    if line.endswith("# the loop's line")
)


def test_worker_entropy_is_reported_at_the_loop_with_the_worker(tmp_path: Path) -> None:
    """Unseeded NumPy noise in a worker: the loop's line, the worker, how to find the line, no dumps."""
    first, second = tmp_path / "a.dtrace", tmp_path / "b.dtrace"
    for path in (first, second):
        with deterministic(0), trace(path):
            loop(entropy=True)
    divergence = first_divergence(first, second)
    assert divergence is not None and divergence.kind == "external-input"
    assert divergence.op == BATCH_OP
    assert divergence.location.endswith(f":{LOOP_LINE}")
    text = str(divergence)
    assert "DataLoader worker 0" in text
    assert "num_workers=0" in text and "SeededDataset" in text
    assert "Storage" not in text and len(text.splitlines()) < 30


def test_a_forked_child_never_writes_to_the_trace(tmp_path: Path) -> None:
    """A child forked inside a trace runs many torch ops; the parent's file stays whole and only its own."""
    path = tmp_path / "a.dtrace"
    with deterministic(0), trace(path) as recording:
        x = torch.ones(3)
        pid = os.fork()
        if pid == 0:  # the child: ops enough to fill several chunks (and a megabyte), then exit
            for _ in range(30_000):
                x = x + 1
            os._exit(0)
        os.waitpid(pid, 0)
        y = x * 2
        recorded = recording.ops
    assert y.sum().item() == 6
    events = ops(path)
    assert len(events) == recorded
    assert [event.op for event in events][-1] == "aten::mul.Tensor"


# -- nested tensors and other layouts -------------------------------------------------------------------


def nested_program() -> None:
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=2).eval()
    tokens = torch.randn(3, 5, 16)
    mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])
    with torch.no_grad():
        print(encoder(tokens, src_key_padding_mask=mask).sum().item())
    nested = torch.nested.nested_tensor([torch.randn(2, 4), torch.randn(3, 4)])
    print(torch.nested.to_padded_tensor(nested + nested, 0.0).sum().item())
    jagged = torch.nested.nested_tensor([torch.randn(2, 4), torch.randn(3, 4)], layout=torch.jagged)
    print((jagged * 2).values().sum().item())
    print(torch.randn(4, 4).to_sparse().coalesce().values().sum().item())


def test_nested_tensors_are_recorded_and_compare_equal(tmp_path: Path) -> None:
    """The encoder's nested fast path and torch.nested ops are recorded without crashing."""
    first, second = traced_twice(tmp_path, nested_program)
    assert first_divergence(first, second) is None
    descriptions = [record.description for event in ops(first) for record in event.outputs]
    assert any("nested" in description for description in descriptions)


# -- the environment, other programs, damaged files ----------------------------------------------------


def test_environment_is_recorded_and_a_thread_difference_is_named(tmp_path: Path) -> None:
    """A different thread count is said first, and named as the likely cause of a nondeterministic op."""
    jitter = iter((1e-6, 2e-6))

    @torch.library.custom_op("trace_real::jitter", mutates_args=())
    def noisy(x: torch.Tensor) -> torch.Tensor:
        return x + next(jitter)

    before = torch.get_num_threads()
    paths = (tmp_path / "a.dtrace", tmp_path / "b.dtrace")
    try:
        for path, threads in zip(paths, (1, 2), strict=True):
            torch.set_num_threads(threads)
            with trace(path):
                torch.ops.trace_real.jitter(torch.ones(4)).sum().item()
    finally:
        torch.set_num_threads(before)
    with Reader(paths[0]) as reader:
        facts = reader.header["environment"]
    assert facts["threads"] == 1 and facts["torch"] == torch.__version__ and "numpy" in facts
    divergence = first_divergence(*paths)
    assert divergence is not None and divergence.kind == "nondeterministic-op"
    assert ("threads", 1, 2) in divergence.environment
    text = str(divergence)
    assert text.splitlines()[0] == "the runs ran in different environments:"
    assert "likely the thread count" in text and "deterministic_algorithms=True\n" not in text


def test_traces_of_different_programs_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Different command lines are reported as different programs."""
    paths = (tmp_path / "a.dtrace", tmp_path / "b.dtrace")
    for path, argv in zip(paths, (["train.py"], ["evaluate.py", "--fast"]), strict=True):
        monkeypatch.setattr(sys, "argv", argv)
        with trace(path):
            (torch.ones(2) * (2 if argv[0] == "train.py" else 3)).sum().item()
    divergence = first_divergence(*paths)
    assert divergence is not None and divergence.argv == (["train.py"], ["evaluate.py", "--fast"])
    text = str(divergence)
    assert text.startswith("the runs ran different programs")
    assert "evaluate.py --fast" in text


def write_trace(path: Path, steps: int = 3) -> None:
    with trace(path):
        x = torch.ones(3)
        for _ in range(steps):
            x = x * 2


@pytest.mark.parametrize("damage", ["appended", "flipped", "header"])
def test_damaged_traces_raise_a_value_error_naming_where(tmp_path: Path, damage: str) -> None:
    """Appended garbage, a flipped byte in a chunk or in the header: ValueError naming the byte."""
    good, bad = tmp_path / "good.dtrace", tmp_path / "bad.dtrace"
    write_trace(good)
    write_trace(bad)
    data = bytearray(bad.read_bytes())
    header_end = data.index(b"\n", 8)
    if damage == "appended":
        data += b"\x03garbage"
    elif damage == "flipped":
        data[-5] ^= 0x40
    else:
        data[header_end - 3] ^= 0x80
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"is corrupt: .* at byte \d+"):
        first_divergence(good, bad)


def test_a_trace_cut_off_mid_chunk_reads_up_to_the_cut(tmp_path: Path) -> None:
    """A run killed while writing leaves complete chunks, which are read; the rest is the cut."""
    path = tmp_path / "a.dtrace"
    write_trace(path, steps=5000)
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size - 100)
    with Reader(path) as reader:
        events = list(reader.events())
        assert not reader.complete
    assert 4000 <= len(events) < 5000


def test_equal_chunks_are_compared_without_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Identical traces of many ops compare byte-wise, parsing no chunk."""
    paths = (tmp_path / "a.dtrace", tmp_path / "b.dtrace")
    for path in paths:
        write_trace(path, steps=20_000)
    parsed = []
    original = Reader.parse
    monkeypatch.setattr(Reader, "parse", lambda self, chunk: parsed.append(chunk) or original(self, chunk))
    assert first_divergence(*paths) is None
    assert parsed == []


# -- torch.compile -------------------------------------------------------------------------------------


def test_compiled_code_in_a_trace_warns_once(tmp_path: Path) -> None:
    """A compiled function run under a trace runs eagerly; the trace warns once, at the user's line."""

    @torch.compile(backend="eager")
    def double(x: torch.Tensor) -> torch.Tensor:
        return x.sin() * 2

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with trace(tmp_path / "a.dtrace"):
            double(torch.ones(3))
            double(torch.ones(3))
    compiled = [warning for warning in caught if issubclass(warning.category, TracedCompileWarning)]
    assert len(compiled) == 1
    assert compiled[0].filename == __file__
    assert "runs eagerly" in str(compiled[0].message)


# -- check --trace on a failing run ---------------------------------------------------------------------


def test_check_trace_compares_the_traces_of_a_run_that_crashed(tmp_path: Path) -> None:
    """Run 2 dies on a NaN guard; check --trace still names the op where the runs first differ."""
    script = tmp_path / "nan_guard.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            import torch
            counter = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs")
            run = len(open(counter).read()) if os.path.exists(counter) else 0
            open(counter, "a").write("x")
            scale = float("nan") if run == 1 else 1.0
            loss = (torch.ones(3) * scale).sum()  # the scaled loss
            if torch.isnan(loss):
                sys.exit("loss is NaN")
            print(loss.item())
            """
        )
    )
    command = [sys.executable, "-m", "deterministic", "check", "--trace", "--trace-dir", str(tmp_path / "t")]
    result = subprocess.run([*command, str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1
    assert "run 2 exited with status 1" in result.stderr
    assert "aten::mul.Tensor (external-input)" in result.stdout
    assert "nan_guard.py:8" in result.stdout
