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
