"""batch_invariant=True and batch_divergence on single ops and small functions, with real torch."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import dispatch_modes, full_state

torch = pytest.importorskip("torch")
nn = torch.nn

from deterministic import (
    BatchDivergence,
    batch_divergence,
    deterministic,
    seeded,
    trace,
)
from deterministic._invariance import invariant_mode

pytestmark = pytest.mark.torch

SIZES = (1, 3, 8, 17)


@seeded(0)
def build(factory: Callable[[], Any]) -> Any:
    """Build a model from the same seeded stream every time, leaving the global generator alone."""
    return factory()


def make(*shape: int, seed: int = 0, dtype: Any = torch.float32) -> Any:
    """A seeded random tensor, drawn without touching the global generator."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


WEIGHT, BIAS = make(7, 90, seed=1), make(7, seed=2)
SQUARE = make(64, 64, seed=3)
KERNELS = {1: make(8, 3, 3, seed=4), 2: make(8, 3, 3, 3, seed=5), 3: make(4, 3, 3, 3, 3, seed=6)}

# Each op as a function of a batch whose row r is everything the op's row r reads.
OPS = {
    "mm": lambda x: torch.mm(x[:, :64], SQUARE),
    "addmm": lambda x: torch.addmm(BIAS, x[:, :90], WEIGHT.t()),
    "matmul": lambda x: torch.matmul(x[:, :90].reshape(-1, 9, 10), make(10, 7, seed=7)),
    "linear": lambda x: nn.functional.linear(x[:, :90], WEIGHT, BIAS),
    "linear-3d": lambda x: nn.functional.linear(x[:, :90].reshape(-1, 5, 18), WEIGHT[:, :18], BIAS),
    "mv": lambda x: x[:, :90] @ WEIGHT[0],
    "bmm": lambda x: torch.bmm(x[:, :180].reshape(-1, 9, 20), x[:, 76:256].reshape(-1, 20, 9)),
    "baddbmm": lambda x: torch.baddbmm(
        BIAS[:1], x[:, :180].reshape(-1, 9, 20), x[:, 76:256].reshape(-1, 20, 9), alpha=0.5
    ),
    "conv1d": lambda x: nn.functional.conv1d(x[:, :60].reshape(-1, 3, 20), KERNELS[1], padding=1),
    "conv2d": lambda x: nn.functional.conv2d(x[:, :192].reshape(-1, 3, 8, 8), KERNELS[2], padding=1),
    "conv3d": lambda x: nn.functional.conv3d(x[:, :192].reshape(-1, 3, 4, 4, 4), KERNELS[3], padding=1),
}


def check_rows(op: Callable[[Any], Any], batch: Any) -> Any:
    """Assert each row of ``op(batch)`` equals the row alone and the first rows at B = 1, 3, 8."""
    full = op(batch)
    for size in SIZES:
        assert torch.equal(op(batch[:size].clone()), full[:size]), f"B={size}"
    for row in range(batch.shape[0]):
        assert torch.equal(op(batch[row : row + 1].clone()), full[row : row + 1]), f"row {row}"
    return full


@pytest.mark.parametrize("name", sorted(OPS))
def test_flag_makes_each_row_independent_of_batch_size_and_other_rows(name: str) -> None:
    """Under the flag each covered op's row equals the row alone at B = 1, 3, 8, 17, whatever else is in."""
    op = OPS[name]
    batch = make(17, 256, seed=8)
    other = batch.clone()
    other[1:] = make(16, 256, seed=9)
    before = full_state()
    with deterministic(0, batch_invariant=True):
        full = check_rows(op, batch)
        assert torch.equal(op(other)[:1], full[:1])
    assert full_state() == before
    assert torch.allclose(op(batch), full, rtol=1e-5, atol=1e-5)


def test_without_the_flag_rows_depend_on_the_batch() -> None:
    """The control: torch's own kernels give a row alone other bits than inside a batch of 17."""
    batch = make(17, 256, seed=8)
    differing = [
        name
        for name, op in OPS.items()
        if any(not torch.equal(op(batch)[r : r + 1], op(batch[r : r + 1].clone())) for r in range(17))
    ]
    assert {"mm", "addmm", "linear", "bmm", "conv2d"} <= set(differing)


def test_flag_restores_torchs_kernels_on_exit_and_after_an_exception() -> None:
    """After the scope, and after an exception inside it, the batch-variant results come back exactly."""
    batch = make(17, 256, seed=8)
    plain = OPS["addmm"](batch)
    modes = dispatch_modes()
    with deterministic(0, batch_invariant=True):
        assert invariant_mode()
        blocked = OPS["addmm"](batch)
    assert not torch.equal(plain, blocked)
    assert torch.equal(OPS["addmm"](batch), plain)
    assert dispatch_modes() == modes
    with pytest.raises(KeyError), deterministic(0, batch_invariant=True):
        raise KeyError("inside")
    assert torch.equal(OPS["addmm"](batch), plain)
    assert dispatch_modes() == modes and not invariant_mode()


def test_flag_engages_when_torch_is_imported_inside_the_scope() -> None:
    """A scope entered before torch is imported applies the flag once torch arrives, and undoes it."""
    code = textwrap.dedent(
        """
        import sys
        from deterministic import deterministic
        assert "torch" not in sys.modules
        with deterministic(0, batch_invariant=True):
            import torch
            from torch.utils._python_dispatch import _get_current_dispatch_mode_stack as modes
            a, w = torch.randn(17, 90), torch.randn(90, 7)
            full = a @ w
            rows = [torch.equal(full[r : r + 1], a[r : r + 1].clone() @ w) for r in range(17)]
            print(len(modes()), all(rows))
        print(len(modes()))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "True", "0"]


def test_flag_leaves_meta_and_subclass_tensors_to_torch() -> None:
    """Tensors without data (meta) and sparse tensors take torch's own kernel under the flag."""
    sparse, dense = make(6, 5).relu().to_sparse(), make(5, 3)
    expected = torch.sparse.mm(sparse, dense)
    with deterministic(0, batch_invariant=True):
        assert (torch.empty(5, 3, device="meta") @ torch.empty(3, 4, device="meta")).shape == (5, 4)
        assert torch.equal(torch.sparse.mm(sparse, dense), expected)


def test_flag_applies_again_after_its_mode_was_popped_by_other_code() -> None:
    """A mode popped by other code (a stack cleared around a call) is replaced, not trusted."""
    from torch.utils._python_dispatch import _disable_current_modes

    batch = make(17, 256, seed=8)
    op = OPS["addmm"]
    with deterministic(0, batch_invariant=True):
        blocked = op(batch)
        with _disable_current_modes():
            with deterministic(1, batch_invariant=True):
                assert torch.equal(op(batch), blocked)
        assert torch.equal(op(batch), blocked)
    assert not invariant_mode() and dispatch_modes() == ()


def test_flag_values_nest_and_restore() -> None:
    """True, False and None nest like the other flags: False inside True is torch's kernel, and back."""
    batch = make(17, 256, seed=8)
    op = OPS["linear"]
    plain, blocked = op(batch), None
    with deterministic(0, batch_invariant=True):
        blocked = op(batch)
        with deterministic(1, batch_invariant=False):
            assert torch.equal(op(batch), plain)
            with deterministic(2, batch_invariant=True):
                assert torch.equal(op(batch), blocked)
            assert torch.equal(op(batch), plain)
        with deterministic(3):  # None: as it is
            assert torch.equal(op(batch), blocked)
        assert torch.equal(op(batch), blocked)
    assert torch.equal(op(batch), plain)
    with deterministic(4, batch_invariant=False):
        assert torch.equal(op(batch), plain)
    assert not invariant_mode()


def test_flag_leaves_other_threads_alone() -> None:
    """The flag is thread-local, like a scope: another thread running meanwhile gets torch's kernels."""
    batch = make(17, 256, seed=8)
    op = OPS["addmm"]
    plain = op(batch)
    seen: list[Any] = []
    inside, go = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait()
        seen.append(op(batch))
        go.set()

    thread = threading.Thread(target=other)
    thread.start()
    with deterministic(0, batch_invariant=True):
        blocked = op(batch)
        inside.set()
        go.wait()
    thread.join()
    assert torch.equal(seen[0], plain) and not torch.equal(seen[0], blocked)


def test_flag_with_a_mode_pushed_inside_and_left_open() -> None:
    """Leaving the scope removes only the flag's mode, even when another mode was pushed above it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counting(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            return func(*args, **(kwargs or {}))

    counting = Counting()
    modes = dispatch_modes()
    scope = deterministic(0, batch_invariant=True)
    scope.__enter__()
    counting.__enter__()
    scope.__exit__(None, None, None)
    assert dispatch_modes() == (*modes, counting)
    counting.__exit__(None, None, None)
    assert dispatch_modes() == modes


@pytest.mark.parametrize(
    ("name", "inputs"),
    [
        ("addmm", lambda: (make(3, dtype=torch.float64), make(20, 4, dtype=torch.float64), make(4, 3))),
        ("bmm", lambda: (make(3, 2, 4, dtype=torch.float64), make(3, 4, 5, dtype=torch.float64))),
        ("baddbmm", lambda: (make(1, 2, 5, dtype=torch.float64), make(3, 2, 4), make(3, 4, 5))),
        ("conv2d", lambda: (make(3, 2, 5, 5, dtype=torch.float64), make(3, 2, 3, 3, dtype=torch.float64))),
        ("mv", lambda: (make(19, 4, dtype=torch.float64), make(4, dtype=torch.float64))),
    ],
)
def test_gradcheck_passes_under_the_flag(name: str, inputs: Any) -> None:
    """Autograd works through the flag: gradcheck (and gradgradcheck) pass in float64, backward included."""
    functions = {
        "addmm": torch.addmm,
        "bmm": torch.bmm,
        "baddbmm": torch.baddbmm,
        "conv2d": torch.conv2d,
        "mv": torch.mv,
    }
    tensors = tuple(t.double().requires_grad_() for t in inputs())
    with deterministic(0, batch_invariant=True):
        assert torch.autograd.gradcheck(functions[name], tensors)
        assert torch.autograd.gradgradcheck(functions[name], tensors)


def test_gradients_under_the_flag_match_torchs_within_tolerance() -> None:
    """A small network's input and weight gradients under the flag equal the plain ones within tolerance."""
    model = build(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)))
    x = make(9, 3, 8, 8).requires_grad_()

    def gradients() -> list[Any]:
        model.zero_grad()
        x.grad = None
        model(x).square().sum().backward()
        return [x.grad.clone()] + [p.grad.clone() for p in model.parameters()]

    with deterministic(0, batch_invariant=True):
        blocked = gradients()
    plain = gradients()
    for mine, theirs in zip(blocked, plain, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_bad_flag_values_are_type_errors_that_change_nothing() -> None:
    """A non-bool batch_invariant is a TypeError naming what is accepted, and nothing changes."""
    before = full_state()
    for value in ("yes", 1, 0.5):
        with pytest.raises(TypeError, match="batch_invariant must be True, False or None, not"):
            deterministic(0, batch_invariant=value)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="batch_invariant"):
            seeded(0, batch_invariant=value)
    assert full_state() == before and not invariant_mode()


def test_configuration_carries_the_flag() -> None:
    """The flag is part of the configuration: property, repr, equality, pickling and the scope's config."""
    config = deterministic(5, batch_invariant=True)
    assert config.batch_invariant is True and deterministic(5).batch_invariant is None
    assert "batch_invariant=True" in repr(config)
    assert config == deterministic(5, batch_invariant=True) != deterministic(5, batch_invariant=False)
    assert pickle.loads(pickle.dumps(config)) == config
    with config as scope:
        assert scope.config.batch_invariant is True and invariant_mode()
    with deterministic(5, batch_invariant=True, sources=("random",)):
        assert invariant_mode()
    assert not invariant_mode()


def test_seeded_functions_and_generators_run_under_the_flag() -> None:
    """@seeded(..., batch_invariant=True) applies the flag to each call and to each generator step only."""
    batch = make(17, 256, seed=8)
    op = OPS["addmm"]
    plain = op(batch)

    @seeded(1, batch_invariant=True)
    def evaluate(x: Any) -> Any:
        return op(x)

    @seeded(2, batch_invariant=True)
    def stream(x: Any) -> Any:
        while True:
            yield op(x)

    blocked = evaluate(batch)
    assert torch.equal(evaluate(batch[:3].clone()), blocked[:3])
    steps = stream(batch)
    assert torch.equal(next(steps), blocked)
    assert torch.equal(op(batch), plain)  # between steps: torch's kernels
    assert torch.equal(next(steps), blocked)
    steps.close()
    assert not invariant_mode()


def test_the_tracer_records_whole_ops_under_the_flag(tmp_path: Path) -> None:
    """Inside trace(), the flag's pieces stay below the recorder: one aten::addmm per linear."""
    from deterministic._trace._format import Reader

    lin = build(lambda: nn.Linear(90, 7))
    with trace(tmp_path / "a.dtrace"), deterministic(0, batch_invariant=True):
        lin(make(40, 90))
    names = [event.op for event in Reader(tmp_path / "a.dtrace").events() if hasattr(event, "op")]
    assert names.count("aten::addmm") == 1 and "aten::mm" not in names


def test_compiled_functions_stay_compiled_and_are_invariant_under_the_flag() -> None:
    """A function compiled inside the scope is compiled (and stays so); its BLAS calls are blocked."""
    lin = build(lambda: nn.Linear(90, 7))
    graphs: list[int] = []

    def backend(module: Any, example: Any) -> Any:
        graphs.append(len(module.graph.nodes))
        return module.forward

    compiled = torch.compile(lambda x: torch.relu(lin(x)), backend=backend, dynamic=False)
    batch = make(17, 90)
    with deterministic(0, batch_invariant=True):
        full = compiled(batch)
        assert graphs, "Dynamo skipped the function under the flag's mode"
        alone = compiled(batch[4:5].clone())
    assert torch.equal(alone, full[4:5])
    compiled(batch)
    assert len(graphs) == 2  # B=17 and B=1, nothing recompiled or skipped after the scope


# -- batch_divergence --------------------------------------------------------------


def test_batch_divergence_rejects_bad_input_and_changes_nothing() -> None:
    """Bad arguments raise the documented error with what is accepted, leaving states and the model alone."""
    model = build(lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
    x = make(6, 4)
    buffers = [b.clone() for b in model.buffers()]
    before = full_state()
    cases = [
        ((42, x), {}, TypeError, "fn must be callable"),
        ((model, "text"), {}, TypeError, "must hold a tensor"),
        ((model, (x, make(5, 4))), {}, ValueError, "disagree on the batch size"),
        ((model, x[:1]), {}, ValueError, "at least 2"),
        ((model, x), {"rows": [7]}, IndexError, r"outside range\(6\)"),
        ((model, x), {"rows": True}, TypeError, "rows must be None, an int or an iterable of ints"),
        ((model, x), {"rows": ["a"]}, TypeError, "holds a str"),
        ((model, x), {"dim": 1.0}, TypeError, "dim must be an int"),
    ]
    for args, kwargs, error, text in cases:
        with pytest.raises(error, match=text):
            batch_divergence(*args, **kwargs)
    assert full_state() == before
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers(), strict=True))


def test_a_batch_variant_linear_is_found_with_module_line_and_fix() -> None:
    """An MLP's first linear is a batch-variant-op at its module and this line; the report names the fix."""
    model = build(lambda: nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)).eval())
    before = full_state()
    found = batch_divergence(model, make(8, 32))
    assert full_state() == before
    assert isinstance(found, BatchDivergence)
    assert (found.kind, found.op, found.module, found.phase, found.row) == (
        "batch-variant-op",
        "aten::addmm",
        "Sequential.0",
        "forward",
        0,
    )
    assert found.index == 1  # aten::t of the weight comes first
    line = _line_of("found = batch_divergence(model, make(8, 32))")
    assert found.location.endswith(f"test_batch.py:{line}")
    assert 0 < found.max_abs_diff < 1e-4
    text = str(found)
    assert "batch-variant-op" in text and "Sequential.0" in text and "batch_invariant=True" in text
    with deterministic(0, batch_invariant=True):
        assert batch_divergence(model, make(8, 32)) is None


def test_rows_select_the_rows_checked() -> None:
    """rows= limits the check: the reported row is the lowest checked row that diverges."""
    model = build(lambda: nn.Linear(32, 64))
    assert batch_divergence(model, make(8, 32), rows=5).row == 5  # type: ignore[union-attr]
    assert batch_divergence(model, make(8, 32), rows=[6, 3]).row == 3  # type: ignore[union-attr]


def test_a_branch_on_the_batch_size_is_control_flow() -> None:
    """Code that branches on x.shape[0] is reported as control-flow with both runs' ops."""

    def branchy(x: Any) -> Any:
        if x.shape[0] > 1:
            x = x * 2
        return torch.tanh(x)

    found = batch_divergence(branchy, make(8, 64))
    assert found is not None
    assert (found.kind, found.op, found.solo_op) == ("control-flow", "aten::mul.Tensor", "aten::tanh")
    assert "different ops" in str(found)


def test_ops_fed_only_by_the_batch_size_are_never_blamed() -> None:
    """An arange(B) and what is computed from it alone differ by design and are not reported."""

    def positions(x: Any) -> Any:
        index = torch.arange(x.shape[0])
        weights = index.double().cumsum(0)[:, None]  # row r: r(r+1)/2, alone: 0
        return torch.tanh(x) + 0 * weights.float()

    assert batch_divergence(positions, make(8, 64)) is None


def test_a_clone_only_when_batched_is_aligned_not_control_flow() -> None:
    """Op sequences that differ only by a layout op (a clone when B > 1) are aligned."""

    def cloning(x: Any) -> Any:
        if x.shape[0] > 1:
            x = x.clone()
        return torch.tanh(x.transpose(0, 1).contiguous().transpose(0, 1))

    assert batch_divergence(cloning, make(8, 64)) is None


def test_merged_batch_dimensions_are_compared_row_by_row() -> None:
    """Where B is merged with T ((B*T, C) or time-major (T*B, C)), each row's block is compared."""
    lin = build(lambda: nn.Linear(64, 64))

    def batch_major(x: Any) -> Any:
        b, t, c = x.shape
        return torch.tanh(lin(x.reshape(b * t, c))).reshape(b, t, c)

    def time_major(x: Any) -> Any:
        t, b, c = x.shape
        return torch.tanh(lin(x.reshape(t * b, c))).reshape(t, b, c)

    found = batch_divergence(batch_major, make(6, 5, 64))
    assert found is not None and (found.kind, found.op) == ("batch-variant-op", "aten::addmm")
    found = batch_divergence(time_major, make(5, 6, 64), dim=1)
    assert found is not None and (found.kind, found.op) == ("batch-variant-op", "aten::addmm")
    with deterministic(0, batch_invariant=True):
        assert batch_divergence(batch_major, make(6, 5, 64)) is None
        assert batch_divergence(time_major, make(5, 6, 64), dim=1) is None


def test_elementwise_ops_with_a_simd_tail_are_reported_and_not_covered() -> None:
    """sigmoid on rows of 20 values varies with the batch (the SIMD tail): reported, and not covered."""
    found = batch_divergence(torch.sigmoid, make(9, 5, 4))
    assert found is not None and (found.kind, found.op) == ("batch-variant-op", "aten::sigmoid")
    assert "does not cover sigmoid" in str(found)
    with deterministic(0, batch_invariant=True):
        assert batch_divergence(torch.sigmoid, make(9, 5, 4)) is not None
    assert batch_divergence(torch.sigmoid, make(9, 64)) is None  # rows of 64 values are invariant


def test_bmm_entries_depend_on_their_position_until_the_flag() -> None:
    """bmm's entries vary with their position in the batch; under the flag they do not."""

    def attention(x: Any) -> Any:
        scores = torch.bmm(x, x.transpose(1, 2))
        return torch.bmm(scores, x)

    found = batch_divergence(attention, make(8, 9, 40))
    assert found is not None and (found.kind, found.op) == ("batch-variant-op", "aten::bmm")
    with deterministic(0, batch_invariant=True):
        assert batch_divergence(attention, make(8, 9, 40)) is None


def test_an_expanded_mask_and_infinities_do_not_hide_a_divergence() -> None:
    """A mask expanded to B (no row, but the batch's size) and -inf scores still let the op be found."""

    def masked(x: Any) -> Any:
        scores = torch.bmm(x, x.transpose(1, 2))
        mask = torch.full((9, 40), float("-inf")).triu(1).expand(x.shape[0], 9, 40)
        return torch.baddbmm(mask, scores, x)

    found = batch_divergence(masked, make(8, 9, 40))
    assert found is not None and (found.kind, found.op) == ("batch-variant-op", "aten::baddbmm")
    assert 0 < found.max_abs_diff < 1e-3  # the -inf entries are equal, not an infinite difference


def test_flag_results_are_contiguous_as_torchs() -> None:
    """The flag's results are contiguous at every size, as torch's are: a layout must not vary with B."""
    with deterministic(0, batch_invariant=True):
        for size in (1, 2, 64, 65, 200):
            assert OPS["addmm"](make(size, 256)).is_contiguous()
            assert torch.mm(make(size, 33), make(33, 5)).is_contiguous()
            wide = torch.float64
            assert torch.mm(make(size, 33, dtype=wide), make(33, 5, dtype=wide)).is_contiguous()
        assert OPS["bmm"](make(3, 256)).is_contiguous()


def test_a_reduction_over_the_batch_is_cross_row() -> None:
    """Normalising by the batch's mean makes each row depend on the others: cross-row."""

    def normalise(x: Any) -> Any:
        return x - x.mean(0, keepdim=True)

    found = batch_divergence(normalise, make(8, 64))
    assert found is not None and (found.kind, found.op) == ("cross-row", "aten::mean.dim")
    assert "other rows" in str(found)


def test_in_place_writes_to_inputs_are_undone_between_runs() -> None:
    """Tensors the function writes in place (its own input included) are put back after every run."""
    counter = torch.zeros(1)

    def counting(x: Any) -> Any:
        counter.add_(1)
        x.mul_(2)
        return torch.tanh(x)

    x = make(8, 64)
    original = x.clone()
    assert batch_divergence(counting, x) is None
    assert torch.equal(x, original) and torch.equal(counter, torch.zeros(1))


def test_compiled_functions_are_probed_eagerly_and_stay_compilable() -> None:
    """A compiled function is probed op by op, and is compiled as usual afterwards (not skipped for good)."""
    lin = build(lambda: nn.Linear(32, 64))
    graphs: list[int] = []

    def backend(module: Any, example: Any) -> Any:
        graphs.append(1)
        return module.forward

    compiled = torch.compile(lambda x: torch.relu(lin(x)), backend=backend)
    found = batch_divergence(compiled, make(8, 32))
    assert found is not None and found.op == "aten::addmm" and not graphs
    compiled(make(8, 32))
    assert graphs == [1]


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(OPS))
def test_cuda_flag_makes_each_row_independent_of_the_batch(name: str) -> None:
    """On a real GPU, each covered op's row under the flag equals the row alone at B = 1, 3, 8, 17."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    global WEIGHT, BIAS, SQUARE
    saved = (WEIGHT, BIAS, SQUARE, dict(KERNELS))
    WEIGHT, BIAS, SQUARE = WEIGHT.cuda(), BIAS.cuda(), SQUARE.cuda()
    KERNELS.update({k: v.cuda() for k, v in KERNELS.items()})
    try:
        with deterministic(0, batch_invariant=True):
            check_rows(OPS[name], make(17, 256, seed=8).cuda())
    finally:
        WEIGHT, BIAS, SQUARE = saved[:3]
        KERNELS.update(saved[3])


@pytest.mark.cuda
def test_cuda_selftest_probe_passes() -> None:
    """On a real GPU, the selftest's batch-invariant probe passes."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from deterministic import _selftest

    report = _selftest.run_probe("batch-invariant", "cuda")
    assert report["result"] == "pass", report["detail"]


def _line_of(text: str) -> int:
    """The line number of ``text`` in this file."""
    for number, line in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(text)
