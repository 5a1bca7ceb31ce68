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


def test_thread_ending_inside_a_scope_is_reported_and_restored() -> None:
    """A thread ending inside a scope is named in a warning; its saved states come back and the lock frees."""
    import warnings

    from deterministic import _scope

    before = full_state()

    def leave_open() -> None:
        deterministic(3).__enter__()
        draws()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread = threading.Thread(target=leave_open, name="leaky-worker")
        thread.start()
        thread.join()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any("'leaky-worker' ended with 1 deterministic scope(s) still open" in m for m in messages)
    assert full_state() == before
    assert _scope._LOCK.owner is None
    assert _scope._STACK == []
    entered = threading.Event()

    def enter_quickly() -> None:
        with deterministic(4):
            entered.set()

    other = threading.Thread(target=enter_quickly)
    other.start()
    other.join(timeout=5)
    assert entered.is_set()


def test_new_thread_with_a_reused_ident_cannot_exit_a_dead_threads_scope() -> None:
    """A later thread (often given the dead thread's ident) neither owns nor can exit the scope it left."""
    import warnings

    config = deterministic(6)
    before = full_state()
    outcome: list[str] = []

    def leave_open() -> None:
        config.__enter__()

    def try_exit() -> None:
        try:
            config.__exit__(None, None, None)
            outcome.append("exited")
        except RuntimeError:
            outcome.append("refused")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for target in (leave_open, try_exit):
            thread = threading.Thread(target=target)
            thread.start()
            thread.join()
    assert outcome == ["refused"]
    assert full_state() == before


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_fork_from_thread_without_the_scope_continues_from_saved_state() -> None:
    """A child forked while another thread is inside a scope continues from the state that scope saved."""
    import os
    import pickle

    before = full_state()
    inside = threading.Event()
    release = threading.Event()

    def hold_scope() -> None:
        with deterministic(9):
            inside.set()
            release.wait(30)

    holder = threading.Thread(target=hold_scope)
    holder.start()
    inside.wait(30)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its state and whether a scope can be entered at once
        try:
            with deterministic(1):
                pass
            payload = pickle.dumps(full_state())
        except BaseException as error:
            payload = pickle.dumps(repr(error))
        os.write(write, payload)
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    release.set()
    holder.join()
    child_state = pickle.loads(b"".join(chunks))
    assert child_state == before
    assert full_state() == before


def test_thread_end_restores_every_scope_even_when_one_restore_fails() -> None:
    """A failing restore in an inner scope of an ended thread does not stop the outer scopes' restores."""
    import warnings

    from deterministic import register_source, unregister_source

    captured = iter(["outer", "inner"])
    restored: list[str] = []

    def restore(state: str) -> None:
        restored.append(state)
        if state == "inner":
            raise OSError("cannot restore the inner state")

    register_source("fragile", lambda: next(captured), lambda seed: None, restore)
    before = full_state()

    def leave_two_open() -> None:
        deterministic(1).__enter__()
        draws()
        deterministic(2).__enter__()
        draws()

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            thread = threading.Thread(target=leave_two_open, name="fragile-worker")
            thread.start()
            thread.join()
    finally:
        unregister_source("fragile")
    assert restored == ["inner", "outer"]
    assert full_state() == before
    assert any("except where restoring failed" in str(w.message) for w in caught)
