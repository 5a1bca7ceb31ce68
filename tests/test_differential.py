"""Differential: any sequence of public-API operations gives the same draws with the fast paths on and off."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from conftest import outside_state_restored, torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deterministic import deterministic, restore, seeded, snapshot
from deterministic._sources import SOURCES
from deterministic._sources._layout import FAST_PATHS_VARIABLE

SEED = st.integers(min_value=0, max_value=2**32 - 1)
KINDS = ("MT19937", "PCG64", "Philox")
OPERATION = st.one_of(
    st.tuples(st.sampled_from(["seed_random", "seed_numpy", "seed_torch", "setstate_random"]), SEED),
    st.tuples(st.sampled_from(["set_state_numpy", "replace_inst", "enter", "gen_new"]), SEED),
    st.tuples(st.just("set_bit_generator"), st.sampled_from(KINDS), SEED),
    st.tuples(st.sampled_from(["draw", "exit", "snapshot", "restore"])),
    st.tuples(st.just("gen_step"), st.integers(min_value=0, max_value=7)),
)


def draw_all() -> list[Any]:
    """Draw from every global generator, cached-Gaussian paths included."""
    values: list[Any] = [random.random(), random.gauss(0, 1), random._inst.random()]  # type: ignore[attr-defined]
    values += [np.random.rand(2).tolist(), np.random.randn(3).tolist()]
    if torch is not None:
        values += [torch.rand(2).tolist(), torch.randn(2).tolist()]
    return values


def final_state() -> list[Any]:
    """Every global state, comparable (no legacy NumPy call: the bit generator may be any kind)."""
    numpy_state = json.dumps(np.random.get_state(legacy=False), default=lambda array: array.tolist())
    torch_state = None if torch is None else torch.get_rng_state().tolist()
    return [random.getstate(), random._inst.getstate(), numpy_state, torch_state]  # type: ignore[attr-defined]


@contextmanager
def fast_paths(enabled: bool, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run the block with the byte-copy fast paths on or forced off (as DETERMINISTIC_FAST_PATHS=0 does)."""
    monkeypatch.setenv(FAST_PATHS_VARIABLE, "1" if enabled else "0")
    for name in ("random", "numpy"):
        SOURCES[name].forget_layout()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        monkeypatch.delenv(FAST_PATHS_VARIABLE)
        for name in ("random", "numpy"):
            SOURCES[name].forget_layout()  # type: ignore[attr-defined]


@seeded(17)
def generator() -> Iterator[list[Any]]:
    """A decorated generator drawing from every source at each step."""
    while True:
        yield draw_all()


def run(operations: list[tuple[Any, ...]]) -> list[Any]:
    """Apply the operations from a fixed start and return every observation and the final state."""
    original_inst = random._inst  # type: ignore[attr-defined]
    original_bits = np.random.get_bit_generator()
    random.seed(0)
    np.random.seed(0)
    if torch is not None:
        torch.manual_seed(0)
    observed: list[Any] = []
    scopes: list[deterministic] = []
    generators: list[Any] = []
    saved: list[Any] = []
    try:
        for operation in operations:
            name, *arguments = operation
            if name == "seed_random":
                random.seed(arguments[0])
            elif name == "seed_numpy":
                np.random.seed(arguments[0])
            elif name == "seed_torch" and torch is not None:
                torch.manual_seed(arguments[0])
            elif name == "setstate_random":
                other = random.Random(arguments[0])
                other.gauss(0, 1)
                random.setstate(other.getstate())
            elif name == "set_state_numpy":
                kind = type(np.random.get_bit_generator())
                np.random.set_state(np.random.RandomState(kind(arguments[0])).get_state(legacy=False))
            elif name == "replace_inst":
                random._inst = random.Random(arguments[0])  # type: ignore[attr-defined]
            elif name == "set_bit_generator":
                np.random.set_bit_generator(getattr(np.random, arguments[0])(arguments[1]))
            elif name == "enter" and len(scopes) < 4:
                config = deterministic(arguments[0])
                config.__enter__()
                scopes.append(config)
            elif name == "exit" and scopes:
                scopes.pop().__exit__(None, None, None)
            elif name == "gen_new" and len(generators) < 3:
                generators.append(generator())
            elif name == "gen_step" and generators:
                observed.append(next(generators[arguments[0] % len(generators)]))
            elif name == "snapshot":
                saved.append(snapshot())
            elif name == "restore" and saved:
                restore(saved[-1])
            elif name == "draw":
                observed.append(draw_all())
        while scopes:
            scopes.pop().__exit__(None, None, None)
        for started in generators:
            started.close()
        observed.append(final_state())
        observed.append([type(np.random.get_bit_generator()).__name__])
    finally:
        random._inst = original_inst  # type: ignore[attr-defined]
        np.random.set_bit_generator(original_bits)
    return observed


@settings(max_examples=40, deadline=None)
@given(operations=st.lists(OPERATION, max_size=30))
def test_fast_and_public_paths_agree(operations: list[tuple[Any, ...]]) -> None:
    """The same operations give identical draws and final states with the fast paths on and forced off."""
    with pytest.MonkeyPatch.context() as monkeypatch, outside_state_restored():
        with fast_paths(True, monkeypatch):
            fast = run(operations)
        with fast_paths(False, monkeypatch):
            public = run(operations)
    assert fast == public


def test_switch_turns_the_fast_paths_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """DETERMINISTIC_FAST_PATHS=0 makes the sources capture through the public API."""
    with fast_paths(False, monkeypatch):
        assert SOURCES["random"].capture()[1] is None  # no struct bytes
        assert SOURCES["numpy"].capture()[2] is None
    with fast_paths(True, monkeypatch):
        assert isinstance(SOURCES["random"].capture()[1], bytes)
        assert isinstance(SOURCES["numpy"].capture()[2], tuple)
