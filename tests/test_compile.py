"""torch.compile (inductor, CPU): scopes inside compiled code break the graph silently, eager-exact."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import full_state, outside_state_restored

torch = pytest.importorskip("torch")

from deterministic import deterministic, seeded


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Each test compiles from scratch and leaves no compiled code behind."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def dynamo_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The warnings Dynamo gives when it meets code it cannot trace."""
    return [str(w.message) for w in caught if "Dynamo" in str(w.message) or "graph break" in str(w.message)]


@pytest.mark.torch
def test_scope_inside_compiled_function_is_silent_and_eager_exact() -> None:
    """with deterministic() inside a compiled function gives eager's values and no Dynamo warning."""

    def step(x: Any) -> Any:
        with deterministic(0):
            inside = x + torch.rand(3)
        return inside * 2 + torch.rand(3)

    compiled = torch.compile(step, backend="inductor")
    x = torch.zeros(3)
    with (
        warnings.catch_warnings(record=True) as caught,
        torch._inductor.config.patch(fallback_random=True),
        outside_state_restored(),
    ):
        warnings.simplefilter("always")
        torch.manual_seed(5)
        got, after = compiled(x), torch.rand(2)
        torch.manual_seed(5)
        expected, expected_after = step(x), torch.rand(2)
        torch.manual_seed(5)
        again = compiled(x)
    assert dynamo_warnings(caught) == []
    assert torch.equal(got, expected) and torch.equal(after, expected_after)
    assert torch.equal(again, got)


@pytest.mark.torch
@pytest.mark.parametrize("fallback_random", [True, False])
def test_compile_around_seeded_and_seeded_around_compile(fallback_random: bool) -> None:
    """Both nestings repeat their values call after call and restore the caller's state exactly."""

    @seeded(1)
    def eager(x: Any) -> Any:
        return x + torch.rand(3)

    compiled_seeded = torch.compile(eager, backend="inductor")
    seeded_compiled = seeded(1)(torch.compile(lambda x: x + torch.rand(3), backend="inductor"))
    x = torch.zeros(3)
    with (
        warnings.catch_warnings(record=True) as caught,
        torch._inductor.config.patch(fallback_random=fallback_random),
    ):
        warnings.simplefilter("always")
        before = full_state()
        results = {name: [f(x), f(x)] for name, f in (("outer", compiled_seeded), ("inner", seeded_compiled))}
        assert full_state() == before
    assert dynamo_warnings(caught) == []
    for first, second in results.values():
        assert torch.equal(first, second)
    if fallback_random:  # torch's own compiled RNG differs from eager's unless it falls back
        assert torch.equal(results["outer"][0], eager(x))
        assert torch.equal(results["inner"][0], eager(x))


def test_scope_beside_a_half_imported_dynamo() -> None:
    """A scope entered and left while torch._dynamo is half-initialised (imported by another thread) works."""
    import importlib.util
    import sys

    from deterministic import _scope

    real = sys.modules["torch._dynamo"]
    spec = importlib.util.find_spec("torch._dynamo")
    assert spec is not None
    # What another thread's import leaves in sys.modules before the module's body has run.
    half = importlib.util.module_from_spec(spec)
    before = full_state()
    sys.modules["torch._dynamo"] = half
    try:
        with deterministic(1):
            torch.rand(2)
    finally:
        sys.modules["torch._dynamo"] = real
    assert full_state() == before
    assert not _scope._STACK and _scope._LOCK.owner is None and not _scope._LOCK._lock.locked()


RACE = """
import sys, threading, time
import torch
from deterministic import _scope, deterministic

errors = []
entries = 0
def enter_and_leave():
    global entries
    while not done.is_set():
        try:
            with deterministic(1):
                pass
        except Exception as error:
            errors.append(repr(error))
            break
        entries += 1
        time.sleep(0.0001)  # let the importing thread have the GIL too

done = threading.Event()
worker = threading.Thread(target=enter_and_leave)
worker.start()
import torch._dynamo  # the worker's scopes see it half-initialised meanwhile
done.set()
worker.join()
lock = _scope._LOCK
print(errors, lock.owner is None and not lock._lock.locked(), not _scope._STACK, entries > 100)
"""


def test_scopes_in_a_thread_while_dynamo_is_imported() -> None:
    """Scopes of one thread run through another thread's import of torch._dynamo without error or leak."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] True True True"
