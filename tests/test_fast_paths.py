"""Byte-copy fast paths for `random` and NumPy equal the public API on arbitrary states."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import classic_recipe, draws, full_state, outside_state_restored
from hypothesis import given, settings
from hypothesis import strategies as st

from deterministic import RNGState, deterministic, restore, snapshot
from deterministic._sources import SOURCES, NumpySource, PythonRandomSource

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
DRAWS = st.integers(min_value=0, max_value=700)  # past 624 forces a twist of the state


def numpy_public() -> dict[str, object]:
    state = np.random.get_state(legacy=False)
    state["state"] = {"key": state["state"]["key"].tolist(), "pos": state["state"]["pos"]}
    return state


def test_fast_paths_found_on_this_interpreter() -> None:
    """On CPython both layouts are found and verified (else the slow path would be used)."""
    python_source, numpy_source = PythonRandomSource(), NumpySource()
    python_source.capture()
    numpy_source.capture()
    assert python_source._layout is not None
    assert numpy_source._layout is not None


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS, count=DRAWS, gauss=st.booleans(), later=DRAWS)
def test_random_fast_path_equals_public_api(seed: int, count: int, gauss: bool, later: int) -> None:
    """A byte capture of random equals getstate(), and restoring it equals setstate()."""
    source = PythonRandomSource()
    with outside_state_restored():
        random.seed(seed)
        for _ in range(count):
            random.random()
        if gauss:
            random.gauss(0, 1)
        public = random.getstate()
        captured = source.capture()
        assert source.public_state(captured) == public
        expected = [random.random() for _ in range(later)] + [random.gauss(0, 1)]
        source.restore(captured)
        assert random.getstate() == public
        assert [random.random() for _ in range(later)] + [random.gauss(0, 1)] == expected


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS, count=DRAWS, gauss=st.booleans(), later=DRAWS)
def test_numpy_fast_path_equals_public_api(seed: int, count: int, gauss: bool, later: int) -> None:
    """A byte capture of NumPy's generator equals get_state(), Gaussian cache included."""
    source = NumpySource()
    with outside_state_restored():
        np.random.seed(seed)
        np.random.rand(count)
        if gauss:
            np.random.randn()
        public = numpy_public()
        captured = source.capture()
        assert source.public_state(captured) == public
        expected = (np.random.rand(later).tolist(), np.random.randn(3).tolist())
        source.restore(captured)
        assert numpy_public() == public
        assert (np.random.rand(later).tolist(), np.random.randn(3).tolist()) == expected


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS)
def test_cached_seeding_equals_random_seed(seed: int) -> None:
    """Seeding through the seed cache gives exactly random.seed(seed)'s state."""
    source = PythonRandomSource()
    with outside_state_restored():
        source.seed(seed)
        first = random.getstate()
        random.random()
        source.seed(seed)  # served from the cache
        assert random.getstate() == first
        random.seed(seed)
        assert random.getstate() == first


@pytest.fixture
def slow_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the public-API path for random and NumPy in every scope of one test."""
    for name in ("random", "numpy"):
        monkeypatch.setattr(SOURCES[name], "_layout", None)


def test_scope_on_slow_paths(slow_paths: None) -> None:
    """With the fast paths off, scopes still match the classic recipe and restore exactly."""
    before = full_state()
    with deterministic(31):
        scoped = draws()
    assert full_state() == before
    with outside_state_restored():
        classic_recipe(31)
        assert draws() == scoped


BIT_GENERATORS = ["PCG64", "PCG64DXSM", "Philox", "SFC64"]


def numpy_legacy_free_state() -> Any:
    """The global generator's full state, arrays as lists (no legacy warnings for any bit generator)."""
    state = np.random.get_state(legacy=False)
    return json.loads(json.dumps(state, default=lambda array: array.tolist()))


@contextlib.contextmanager
def global_bit_generator(bit_generator: Any) -> Iterator[None]:
    """Install a bit generator behind np.random for the block, then put the original back."""
    original = np.random.get_bit_generator()
    np.random.set_bit_generator(bit_generator)
    try:
        yield
    finally:
        np.random.set_bit_generator(original)


def test_set_bit_generator_after_fast_path_writes_nothing_stray() -> None:
    """After np.random.set_bit_generator, scopes never write MT19937 bytes over other objects (no crash)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import numpy as np
                from deterministic import RNGState, deterministic, restore, snapshot
                with deterministic(0):  # the fast path is set up for the MT19937 global
                    np.random.rand()
                pcg = np.random.PCG64(1)
                bystanders = [np.random.PCG64(i) for i in range(40)]  # likely next to it in memory
                np.random.set_bit_generator(pcg)
                expected = pcg.state
                for round in range(500):
                    with deterministic(round):
                        np.random.rand(3)
                        for bystander in bystanders:
                            bystander.random_raw()  # changes while the scope is open
                        states = [b.state for b in bystanders]
                    assert [b.state for b in bystanders] == states, "a bystander generator was reverted"
                    [bytearray(160) for _ in range(20)]  # allocation churn around the PCG64 object
                assert np.random.get_bit_generator() is pcg
                assert pcg.state == expected, "the global PCG64 was not restored"
                print("ok")
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok"]


@pytest.mark.parametrize("name", BIT_GENERATORS)
def test_scope_with_other_global_bit_generator(name: str) -> None:
    """A non-MT19937 global is seeded as type(X)(seed), restored exactly and snapshotted, without warnings."""
    kind = getattr(np.random, name)
    with global_bit_generator(kind(1)), warnings.catch_warnings():
        warnings.simplefilter("error")
        np.random.standard_normal()  # leave a cached Gaussian, which must come back too
        before = numpy_legacy_free_state()
        with deterministic(42):
            scoped = np.random.standard_normal(4).tolist()
            inside = snapshot(sources=("numpy",))
        assert numpy_legacy_free_state() == before
        assert scoped == np.random.RandomState(kind(42)).standard_normal(4).tolist()
        data = json.loads(json.dumps(inside.state_dict()))
        assert data["sources"]["numpy"]["bit_generator"] == name
        restored = RNGState.from_state_dict(data)
        with deterministic(42):
            np.random.standard_normal(4)
            expected = np.random.standard_normal(3).tolist()
        restore(restored)
        assert np.random.standard_normal(3).tolist() == expected


def test_snapshot_restores_the_bit_generator_kind() -> None:
    """Restoring a PCG64 snapshot where the global draws from MT19937 installs a PCG64 with that state."""
    original = np.random.get_bit_generator()
    with global_bit_generator(np.random.PCG64(5)):
        np.random.rand()
        state = snapshot(sources=("numpy",))
        expected = np.random.rand(3).tolist()
    with outside_state_restored():
        try:
            restore(RNGState.from_state_dict(json.loads(json.dumps(state.state_dict()))))
            assert type(np.random.get_bit_generator()) is np.random.PCG64
            assert np.random.rand(3).tolist() == expected
        finally:
            np.random.set_bit_generator(original)


def test_replaced_random_inst_changes_nothing_the_module_functions_do() -> None:
    """After random._inst is replaced, scopes seed and restore what random.random() draws from."""
    original = random.getstate.__self__  # type: ignore[attr-defined]
    replacement = random.Random(5)
    replacement.random()
    replaced_state = replacement.getstate()
    random._inst = replacement  # type: ignore[attr-defined]
    try:
        with outside_state_restored():
            random.seed(8)
            expected = [random.random() for _ in range(3)]
        for _ in range(3):  # the second entry is served from the seed cache
            before = full_state()
            with deterministic(8):
                assert random.getstate() == random.Random(8).getstate()
                assert [random.random() for _ in range(3)] == expected
            assert full_state() == before
            assert replacement.getstate() == replaced_state  # not the object the functions use
            assert random._inst is replacement  # type: ignore[attr-defined]
    finally:
        random._inst = original  # type: ignore[attr-defined]


def test_subclass_bound_to_the_module_functions_is_seeded_through_its_methods() -> None:
    """When the module's functions are bound to a Random subclass, scopes use its own methods."""

    class Subclass(random.Random):
        pass

    special = Subclass(3)
    saved = {name: getattr(random, name) for name in ("getstate", "setstate", "seed", "random")}
    for name in saved:
        setattr(random, name, getattr(special, name))
    try:
        before = special.getstate()
        with deterministic(8):
            assert special.getstate() == random.Random(8).getstate()
            random.random()
        assert special.getstate() == before
    finally:
        for name, function in saved.items():
            setattr(random, name, function)


def test_replacing_random_inst_inside_a_scope_leaves_the_module_functions_exact() -> None:
    """random._inst replaced inside a scope stays the user's; what random.getstate() shows is restored."""
    original = random._inst  # type: ignore[attr-defined]
    before = full_state()
    try:
        with deterministic(2):
            random._inst = random.Random(1)  # type: ignore[attr-defined]
            random.random()
        assert full_state() == before
    finally:
        random._inst = original  # type: ignore[attr-defined]
