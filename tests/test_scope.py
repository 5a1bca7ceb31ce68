"""The `with deterministic(...)` scope: classic compatibility, exact restore, nesting, validation."""

from __future__ import annotations

import asyncio
import logging
import random

import numpy as np
import pytest
from conftest import classic_recipe, draws, full_state, outside_state_restored

from deterministic import Scope, _scope, deterministic
from deterministic._seeds import derive_seed
from deterministic._sources import SOURCES

SEEDS = [0, 1, 42, 2**31, 2**32 - 1]


@pytest.mark.parametrize("seed", SEEDS)
def test_draws_equal_classic_recipe(seed: int) -> None:
    """Draws inside the scope equal the draws after the classic global recipe, bit for bit."""
    before = full_state()
    with deterministic(seed):
        scoped = draws()
    assert full_state() == before
    with outside_state_restored():
        classic_recipe(seed)
        classic = draws()
    assert classic == scoped


def test_numpy_integer_seed_is_verbatim() -> None:
    """A NumPy integer seed is used verbatim, like the equal Python int."""
    with deterministic(np.uint32(7)) as scope:
        assert scope.seed == 7
        first = draws()
    with deterministic(7):
        assert first == draws()


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64 + 3, "experiment-a", b"\x00\x01"])
def test_other_seeds_map_through_derive_seed(seed: object) -> None:
    """Out-of-range ints, strs and bytes use derive_seed(seed) as the effective seed."""
    with deterministic(seed) as scope:
        assert scope.seed == derive_seed(seed)
        mapped = draws()
    with deterministic(derive_seed(seed)):
        assert mapped == draws()


def test_none_draws_fresh_seed_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    """seed=None draws a fresh seed per entry, exposes it and logs it for reproduction."""
    before = full_state()
    with caplog.at_level(logging.INFO, logger="deterministic"), deterministic(None) as scope:
        fresh = draws()
    assert full_state() == before
    assert 0 <= scope.seed < 2**32
    assert str(scope.seed) in caplog.text
    with deterministic(scope.seed):
        assert fresh == draws()


@pytest.mark.parametrize("seed", [True, False, 1.0, 1.5, [1], object(), np.float64(2.0)])
def test_bad_seed_is_type_error_naming_accepted(seed: object) -> None:
    """Bools, floats and other types raise TypeError listing what is accepted, changing nothing."""
    before = full_state()
    with pytest.raises(TypeError, match="int.*str.*bytes.*None"):
        deterministic(seed)  # type: ignore[arg-type]
    assert full_state() == before


def test_constructor_touches_nothing() -> None:
    """Building a configuration validates only; global state is unchanged until entry."""
    before = full_state()
    config = deterministic(3, deterministic_algorithms=True, fill_uninitialized_memory=False)
    assert full_state() == before
    assert config.seed == 3


def test_configuration_is_immutable_and_comparable() -> None:
    """The configuration rejects attribute changes and compares by value."""
    config = deterministic(3)
    with pytest.raises(AttributeError, match="immutable"):
        config.seed = 4  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        config._seed = 4  # type: ignore[misc]
    assert config == deterministic(3)
    assert hash(config) == hash(deterministic(3))
    assert config != deterministic(3, cudnn_benchmark=True)
    assert "deterministic(3" in repr(config)


def test_enter_returns_per_entry_scope() -> None:
    """Each entry returns a new Scope object carrying the effective seed."""
    config = deterministic("name")
    with config as first, config as second:
        assert first is not second
    assert isinstance(first, Scope)
    assert first.seed == second.seed == derive_seed("name")
    assert first.config is config


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, GeneratorExit, SystemExit])
def test_restores_on_exception(error: type[BaseException]) -> None:
    """State is restored exactly when the block raises, including BaseExceptions."""
    before = full_state()
    with pytest.raises(error), deterministic(5):
        draws()
        raise error()
    assert full_state() == before


def test_gaussian_caches_restored() -> None:
    """Python's gauss_next and NumPy's cached Gaussian survive a scope exactly."""
    with outside_state_restored():
        random.gauss(0, 1)  # leaves gauss_next set
        np.random.randn()  # leaves has_gauss set
        assert random.getstate()[2] is not None
        assert np.random.get_state()[3] == 1
        before = full_state()
        with outside_state_restored():
            expected = (random.gauss(0, 1), np.random.randn())
        with deterministic(9):
            random.gauss(0, 1)
            np.random.randn()
        assert full_state() == before
        assert (random.gauss(0, 1), np.random.randn()) == expected


def test_stream_continues_as_if_block_never_ran() -> None:
    """After the block, the surrounding stream continues exactly as without the block."""
    with outside_state_restored():
        classic_recipe(123)
        without = [draws(), draws()]
        classic_recipe(123)
        with_block = [draws()]
        with deterministic(7):
            draws()
        with_block.append(draws())
    assert with_block == without


def test_nesting_innermost_wins_and_outer_continues() -> None:
    """An inner scope gets its own seed; the outer stream continues as if it never ran."""
    with deterministic(1):
        a1 = draws()
        a2 = draws()
    with deterministic(1):
        b1 = draws()
        with deterministic(2):
            inner = draws()
        b2 = draws()
    with deterministic(2):
        solo_inner = draws()
    assert (b1, b2) == (a1, a2)
    assert inner == solo_inner


def test_same_object_reentered_recursively() -> None:
    """One configuration entered recursively keeps per-entry state apart."""
    config = deterministic(11)
    before = full_state()

    def recurse(depth: int) -> list[tuple[object, ...]]:
        with config:
            first = draws()
            rest = recurse(depth - 1) if depth else []
            return [first, draws(), *rest]

    results = recurse(3)
    assert full_state() == before
    assert all(r == results[0] for r in results[0::2])
    assert all(r == results[1] for r in results[1::2])


def test_sources_select_what_is_touched() -> None:
    """sources=('random',) seeds and restores random only; NumPy keeps drawing its own stream."""
    with outside_state_restored():
        np.random.seed(77)
        expected_numpy = np.random.rand()
        np.random.seed(77)
        before_random = random.getstate()
        with deterministic(3, sources=("random",)):
            r = random.random()
            n = np.random.rand()
        assert random.getstate() == before_random
        assert n == expected_numpy
        random.seed(3)
        assert r == random.random()


@pytest.mark.parametrize(
    ("sources", "error", "match"),
    [
        (("random", "nope"), ValueError, "'nope'.*valid sources are 'random', 'numpy', 'torch', 'cuda'"),
        ("random", TypeError, "collection of source names"),
        ((1,), TypeError, "must be str"),
        (5, TypeError, "collection of source names"),
    ],
)
def test_bad_sources_rejected(sources: object, error: type[Exception], match: str) -> None:
    """Unknown or malformed source names raise a clear error listing the valid names."""
    with pytest.raises(error, match=match):
        deterministic(0, sources=sources)  # type: ignore[arg-type]


def test_known_source_names() -> None:
    """At least random, numpy, torch and cuda are known source names."""
    assert {"random", "numpy", "torch", "cuda"} <= set(SOURCES)
    assert deterministic(0, sources=["cuda", "random"]).sources == ("random", "cuda")


class _Exploding:
    """A source whose seed or restore fails, to exercise rollback and exit handling."""

    name = "exploding"
    module = "random"

    def __init__(self, fail_seed: bool, fail_restore: bool) -> None:
        self.fail_seed = fail_seed
        self.fail_restore = fail_restore
        self.restored: list[object] = []

    def available(self) -> bool:
        return True

    def capture(self) -> object:
        return "state"

    def seed(self, seed: int) -> None:
        if self.fail_seed:
            raise OSError("seed failed")

    def restore(self, state: object) -> None:
        self.restored.append(state)
        if self.fail_restore:
            raise OSError("restore failed")


def test_failed_seeding_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """If seeding fails part-way, what was already seeded is put back before raising."""
    exploding = _Exploding(fail_seed=True, fail_restore=False)
    monkeypatch.setitem(SOURCES, "exploding", exploding)
    before = full_state()
    with pytest.raises(OSError, match="seed failed"), deterministic(1):
        pytest.fail("the block must not run")
    assert full_state() == before
    assert exploding.restored == ["state"]


def test_every_restore_attempted_then_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing restore does not stop the others; its error is raised after all were tried."""
    exploding = _Exploding(fail_seed=False, fail_restore=True)
    monkeypatch.setitem(SOURCES, "exploding", exploding)
    before = full_state()
    with pytest.raises(OSError, match="restore failed"), deterministic(1):
        draws()
    assert full_state() == before
    assert exploding.restored == ["state"]


def test_exit_without_entry_is_an_error() -> None:
    """Leaving a configuration that has no active scope raises RuntimeError."""
    with pytest.raises(RuntimeError, match="no active scope"):
        deterministic(1).__exit__(None, None, None)


def test_out_of_order_exit_raises_and_still_restores() -> None:
    """Leaving an outer scope before an inner one raises, yet both exits restore exactly."""
    before = full_state()
    outer, inner = deterministic(1), deterministic(2)
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError, match="out of order.*@seeded"):
        outer.__exit__(None, None, None)
    inner.__exit__(None, None, None)
    assert full_state() == before


def test_async_with_is_plain_enter_exit() -> None:
    """`async with` seeds like `with` and restores on exit."""
    before = full_state()

    async def body() -> tuple[object, ...]:
        async with deterministic(4) as scope:
            assert scope.seed == 4
            return draws()

    scoped = asyncio.run(body())
    assert full_state() == before
    with deterministic(4):
        assert scoped == draws()


def test_interleaved_async_with_detected() -> None:
    """Plain `async with` in interleaving tasks raises a clear error and leaves state exact."""
    before = full_state()
    config = deterministic(4)

    async def task(first: asyncio.Event, second: asyncio.Event) -> None:
        async with config:
            first.set()
            await second.wait()

    async def main() -> list[object]:
        a_in, b_in = asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(task(a_in, b_in))
        await a_in.wait()
        b_go = asyncio.Event()
        b = asyncio.create_task(task(b_in, b_go))
        await asyncio.sleep(0)
        results = await asyncio.gather(a, return_exceptions=True)
        b_go.set()
        results += await asyncio.gather(b, return_exceptions=True)
        return results

    results = asyncio.run(main())
    assert isinstance(results[0], RuntimeError)
    assert "out of order" in str(results[0])
    assert results[1] is None
    assert full_state() == before


def test_configuration_pickles() -> None:
    """A configuration survives pickling (it travels to spawned DataLoader workers) and stays equal."""
    import pickle

    configs = (deterministic(3, deterministic_algorithms="warn", sources=("random",)), deterministic(None))
    for config in configs:
        copy = pickle.loads(pickle.dumps(config))
        assert copy == config
        assert copy.sources == config.sources
        assert copy.deterministic_algorithms == config.deterministic_algorithms


def test_observer_sees_entries_and_exits_and_can_stop() -> None:
    """An observer is told of every entry and exit with the scope; after stopping it hears nothing."""
    seen: list[tuple[str, int]] = []
    stop = _scope.observe(lambda event, scope: seen.append((event, scope.seed)))
    before = full_state()
    try:
        with deterministic(3), deterministic(4):
            pass
    finally:
        stop()
    with deterministic(5):
        pass
    assert seen == [("enter", 3), ("enter", 4), ("exit", 4), ("exit", 3)]
    assert full_state() == before


def test_failing_observer_warns_and_scope_still_works() -> None:
    """An observer that raises becomes a RuntimeWarning; the scope still seeds and restores exactly."""

    def broken(event: str, scope: Scope) -> None:
        raise ValueError(event)

    stop = _scope.observe(broken)
    before = full_state()
    try:
        with pytest.warns(RuntimeWarning, match="scope observer .* raised ValueError"):
            with deterministic(0):
                inside = random.random()
    finally:
        stop()
    assert full_state() == before
    with deterministic(0):
        assert random.random() == inside


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt arriving inside an observer."""


@pytest.mark.parametrize("event", ["enter", "exit"])
def test_interrupted_observer_leaves_everything_restored(event: str) -> None:
    """A BaseException in an observer propagates, with every state restored and no scope left open."""

    def interrupt(seen: str, scope: Scope) -> None:
        if seen == event:
            raise _Interrupt

    stop = _scope.observe(interrupt)
    before = full_state()
    try:
        with pytest.raises(_Interrupt), deterministic(0):
            random.random()
    finally:
        stop()
    assert full_state() == before
    assert not _scope._STACK
    assert _scope._LOCK.owner is None
