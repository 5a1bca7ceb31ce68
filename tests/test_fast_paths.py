"""Byte-copy fast paths for `random` and NumPy equal the public API on arbitrary states."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import classic_recipe, draws, full_state, outside_state_restored
from hypothesis import given, settings
from hypothesis import strategies as st

from deterministic import deterministic
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
