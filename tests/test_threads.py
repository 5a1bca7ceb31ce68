"""Threads: scopes of different threads never interleave, and long waits are reported."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import draws, full_state

from deterministic import _lock, deterministic


def test_threads_get_single_threaded_draws() -> None:
    """Each thread's scoped draws equal its solo draws, and the global state ends as it began."""
    before = full_state()
    seeds = list(range(6))
    solo = {}
    for seed in seeds:
        with deterministic(seed):
            solo[seed] = [draws() for _ in range(20)]
    results: dict[int, list[object]] = {}
    start = threading.Barrier(len(seeds))

    def worker(seed: int) -> None:
        start.wait()
        with deterministic(seed):
            out = []
            for _ in range(20):
                out.append(draws())
                time.sleep(0)  # invite a thread switch inside the scope
            results[seed] = out

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == solo
    assert full_state() == before


def test_one_configuration_shared_by_threads() -> None:
    """One configuration object entered from many threads at once gives each the solo draws."""
    before = full_state()
    config = deterministic(17)
    with config:
        solo = [draws() for _ in range(10)]
    results: list[list[object]] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        with config:
            out = []
            for _ in range(10):
                out.append(draws())
                time.sleep(0)
            results.append(out)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [solo] * 4
    assert full_state() == before


def test_long_wait_warns_naming_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread kept waiting by another thread's scope warns once, naming the holder."""
    monkeypatch.setattr(_lock, "WAIT_WARNING_SECONDS", 0.05)
    before = full_state()
    entered, release = threading.Event(), threading.Event()
    caught: list[str] = []

    def holder() -> None:
        with deterministic(1):
            entered.set()
            release.wait(5)

    def waiter() -> None:
        import warnings

        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with deterministic(2):
                pass
        caught.extend(str(w.message) for w in seen)

    first = threading.Thread(target=holder, name="holder-thread")
    first.start()
    entered.wait(5)
    second = threading.Thread(target=waiter, name="waiter-thread")
    second.start()
    time.sleep(0.3)
    release.set()
    first.join()
    second.join()
    assert len(caught) == 1
    assert "'holder-thread'" in caught[0] and "'waiter-thread'" in caught[0]
    assert full_state() == before
