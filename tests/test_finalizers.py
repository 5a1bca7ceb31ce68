"""Abandoned decorated generators closed by the garbage collector: no lost lock, no deadlock, own stream."""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import full_state

from deterministic import _collection, _scope, deterministic, register_source, seeded, unregister_source

STRESS = Path(__file__).with_name("stress_finalizers.py")
#: Seconds each stress run lasts; CI uses the short default, a release check 40.
STRESS_SECONDS = float(os.environ.get("DETERMINISTIC_STRESS_SECONDS", "6"))


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; a hang fails the test instead of hanging it."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


class Cycle:
    """Keeps an object alive until the collector finds the cycle."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload
        self.me = self


@pytest.mark.torch
@pytest.mark.parametrize("sources", ["all", "torch"])
def test_stress_abandoned_generators_match_control(sources: str) -> None:
    """Thousands of scopes with generators abandoned in cycles end in the control run's state, error-free."""
    pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, str(STRESS), "--seconds", str(STRESS_SECONDS), "--sources", sources],
        capture_output=True,
        text=True,
        timeout=STRESS_SECONDS * 3 + 120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert summary["iterations"] > 1000


def test_finaliser_inside_scope_entry_keeps_the_lock() -> None:
    """A collection running a generator's cleanup in the middle of a scope's entry leaves it intact."""

    @seeded(3, sources=("random",))
    def stream() -> Any:
        try:
            while True:
                yield random.random()
        finally:
            cleanup.append(random.random())

    cleanup: list[float] = []

    def collecting_capture() -> int:
        gc.collect()  # an explicit collection runs even while automatic ones are paused
        return 0

    register_source("collector", collecting_capture, lambda seed: None, lambda state: None)
    try:
        before = full_state()
        g = stream()
        next(g)
        Cycle(g)
        del g
        with deterministic(5, sources=("random", "collector")) as scope:
            inside = random.random()
            assert [scope] == _scope._STACK
            assert _scope._LOCK.count == 1
        assert full_state() == before
        assert _scope._LOCK.owner is None
    finally:
        unregister_source("collector")
    with deterministic(5, sources=("random",)):
        assert random.random() == inside
    # The cleanup ran in the generator's stream: its second draw of seed 3.
    expected = random.Random(3)
    expected.random()
    assert cleanup == [expected.random()]


@pytest.mark.torch
def test_collection_inside_user_get_state_does_not_deadlock() -> None:
    """A collection that starts inside torch.get_rng_state() and finalises a generator does not deadlock."""
    pytest.importorskip("torch")
    result = run_python(
        """
        import gc, random, torch
        from deterministic import seeded

        @seeded(3, sources=("random", "torch"))
        def stream():
            try:
                while True:
                    yield
            finally:
                random.random()  # cleanup in its own stream; it leaves torch alone

        class Cycle:
            def __init__(self, payload):
                self.payload = payload
                self.me = self

        gc.set_threshold(1)
        random.seed(0)
        for _ in range(50):
            gc.disable()  # make the garbage now, collect it at the first allocation below
            g = stream()
            next(g)
            Cycle(g)
            del g
            gc.enable()
            torch.get_rng_state()  # allocates the state tensor while holding the generator's mutex
        gc.collect()
        print(random.getstate() == (random.seed(0) or random.getstate()))
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]


def test_wrapper_finalised_before_wrapped_generator() -> None:
    """In a dead cycle the wrapper closes the wrapped generator, so its cleanup draws from its own stream."""

    @seeded(11, sources=("random",))
    def stream(box: list[Any]) -> Any:
        try:
            yield random.random()
        finally:
            cleanup.append(random.random())

    cleanup: list[float] = []
    before = full_state()
    for _ in range(20):
        box: list[Any] = []
        g = stream(box)
        box.append(g)  # the cycle runs through the wrapped generator's own frame
        next(g)
        del g, box
        gc.collect()
    assert full_state() == before
    expected = random.Random(11)
    expected.random()
    assert cleanup == [expected.random()] * 20


def test_collection_callbacks_run_no_python_code() -> None:
    """The collection callbacks are C callables, so a pending Ctrl-C is never handled (and lost) in one."""
    _collection.watch_collections()
    package = str(Path(_collection.__file__).parent)
    entered: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(package):
            entered.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        gc.collect()
    finally:
        sys.setprofile(None)
    assert entered == []
    assert all(callback in gc.callbacks for callback in _collection._CALLBACKS)


def test_collecting_is_true_only_in_the_collecting_thread() -> None:
    """Inside a finaliser run by a collection, only the collecting thread is told it is collecting."""
    _collection.watch_collections()
    seen: list[tuple[str, bool]] = []

    def ask(who: str) -> None:
        seen.append((who, _collection.collecting()))

    class Finalised:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            ask("collector")
            other = threading.Thread(target=ask, args=("other thread",))
            other.start()
            other.join()

    Finalised()
    ask("before")
    gc.collect()
    ask("after")
    assert seen == [("before", False), ("collector", True), ("other thread", False), ("after", False)]
