"""Ctrl-C: wherever a KeyboardInterrupt lands, scopes end entered-and-left or never entered."""

from __future__ import annotations

import _thread
import gc
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import full_state

from deterministic import _collection, _scope, deterministic, register_source, seeded, unregister_source

STRESS = Path(__file__).with_name("stress_interrupts.py")
#: Interrupts per stress run; CI uses the short default, a release check 20000.
STRESS_INTERRUPTS = int(os.environ.get("DETERMINISTIC_STRESS_INTERRUPTS", "1500"))


def lock_is_free() -> bool:
    """Whether no thread owns the scope lock and its underlying lock is released."""
    lock = _scope._LOCK
    return lock.owner is None and lock.count == 0 and not lock._lock.locked()


class Probe:
    """A registered source that can raise a simulated Ctrl-C at one of its own steps."""

    def __init__(self) -> None:
        self.value = 0
        self.interrupt_at: str | None = None
        self.calls: list[str] = []

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if self.interrupt_at == name:
            self.interrupt_at = None
            # The same path as a real SIGINT: the Python-level handler runs at the next check.
            _thread.interrupt_main()

    def capture(self) -> int:
        self._step("capture")
        return self.value

    def seed(self, seed: int) -> None:
        self._step("seed")
        self.value = seed

    def restore(self, state: int) -> None:
        self._step("restore")
        self.value = state


@pytest.fixture
def probe() -> Iterator[Probe]:
    """A registered :class:`Probe` source, removed after the test."""
    source = Probe()
    register_source("probe", source.capture, source.seed, source.restore)
    try:
        yield source
    finally:
        unregister_source("probe")


@pytest.mark.parametrize("step", ["capture", "seed"])
def test_interrupt_during_entry_undoes_the_entry(probe: Probe, step: str) -> None:
    """A Ctrl-C during an entry is held until it completes; the entry is undone, then it propagates."""
    before = full_state()
    handler = signal.getsignal(signal.SIGINT)
    probe.interrupt_at = step
    body_ran = False
    with pytest.raises(KeyboardInterrupt):
        with deterministic(7):
            body_ran = True
    assert not body_ran
    assert probe.value == 0
    assert probe.calls == ["capture", "seed", "restore"]
    assert full_state() == before
    assert not _scope._STACK and lock_is_free() and gc.isenabled()
    assert signal.getsignal(signal.SIGINT) is handler


def test_interrupt_during_exit_lets_the_exit_finish(probe: Probe) -> None:
    """A Ctrl-C during an exit is held until every state is restored, then it propagates."""
    before = full_state()
    with pytest.raises(KeyboardInterrupt), deterministic(7, sources=("probe", "random")):
        probe.interrupt_at = "restore"
        random.random()
    assert probe.value == 0
    assert full_state() == before
    assert not _scope._STACK and lock_is_free() and gc.isenabled()


def test_interrupt_inside_the_body_is_not_delayed() -> None:
    """A Ctrl-C in the body of a block is raised at once, as without the library, and the exit restores."""
    before = full_state()
    reached = []
    with pytest.raises(KeyboardInterrupt), deterministic(3):
        _thread.interrupt_main()
        for index in range(1000):  # the interrupt lands at one of these bytecodes, not after the block
            reached.append(index)
    assert len(reached) < 1000
    assert full_state() == before
    assert not _scope._STACK and lock_is_free()


def test_guard_is_installed_only_while_a_scope_is_open() -> None:
    """signal.getsignal(SIGINT) shows the original handler outside scopes and after nested ones."""
    handler = signal.getsignal(signal.SIGINT)
    with deterministic(1):
        inside = signal.getsignal(signal.SIGINT)
        with deterministic(2):
            pass
        assert signal.getsignal(signal.SIGINT) is inside
    assert inside is not handler
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_handler_that_only_takes_note_keeps_the_entry(probe: Probe) -> None:
    """A SIGINT handler that does not raise is called once, after the entry, and the block runs."""
    noted: list[int] = []

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        before = full_state()
        probe.interrupt_at = "seed"
        with deterministic(5):
            assert probe.value == 5
            assert noted == [signal.SIGINT]
        assert full_state() == before
        assert probe.value == 0
        assert signal.getsignal(signal.SIGINT) is note
    finally:
        signal.signal(signal.SIGINT, previous)


def test_interrupt_while_waiting_for_another_thread() -> None:
    """A Ctrl-C while the main thread waits for another thread's scope is raised promptly; nothing changed."""
    before = full_state()
    entered = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with deterministic(9):
            entered.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(10)
    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt), deterministic(1):
            pass
        waited = time.monotonic() - started
    finally:
        leave.set()
        holder.join()
        timer.cancel()
    assert waited < 5
    assert full_state() == before
    assert not _scope._STACK and lock_is_free()
    with deterministic(1):  # the lock is usable again
        pass


def test_seeded_generator_step_interrupted_keeps_caller_state(probe: Probe) -> None:
    """A Ctrl-C during a generator step's swap leaves the caller's state exactly as before."""

    @seeded(4)
    def stream() -> Iterator[float]:
        while True:
            yield random.random()

    generator = stream()
    next(generator)
    before = full_state()
    probe.interrupt_at = "restore"
    with pytest.raises(KeyboardInterrupt):
        next(generator)
    assert full_state() == before
    assert probe.value == 0
    assert not _scope._STACK and lock_is_free()


def test_stress_sigint_at_random_instants() -> None:
    """Thousands of real SIGINTs at random instants never leave a held lock, a scope or a changed state."""
    result = subprocess.run(
        [sys.executable, str(STRESS), "--interrupts", str(STRESS_INTERRUPTS), "--seconds", "45"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["failures"] == []
    assert summary["interrupts"] >= min(STRESS_INTERRUPTS, 200)


PACKAGE = str(Path(_scope.__file__).parent)
# The wrappers' own few bytecodes around open_scope/close_scope are left out: a signal is
# handled only at a function's start, a backward jump or a C call's return, and there is
# none of those between the entry and its `try`, nor before the `finally`'s close. The
# stress test covers them with real signals.
WRAPPERS = str(Path(_scope.__file__).with_name("_wrappers.py"))


def interrupted_at(opcode: int, operation: Any) -> bool:
    """Run ``operation`` with a Ctrl-C raised at its ``opcode``-th bytecode inside the scope machinery.

    Returns:
        Whether that many library bytecodes ran (so the interrupt was raised).
    """
    seen = 0

    def on_call(frame: Any, event: str, arg: Any) -> Any:
        filename = frame.f_code.co_filename
        if not filename.startswith(PACKAGE) or filename == WRAPPERS:
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return on_opcode

    def on_opcode(frame: Any, event: str, arg: Any) -> Any:
        nonlocal seen
        if event == "opcode":
            seen += 1
            if seen == opcode:
                _thread.interrupt_main()  # handled at the next check, in the traced frame
        return on_opcode

    sys.settrace(on_call)
    try:
        operation()
    except KeyboardInterrupt:
        pass
    finally:
        sys.settrace(None)
    return seen >= opcode


def light_block() -> None:
    with deterministic(1, sources=("random",)):
        random.random()


def flag_block() -> None:
    with deterministic(2, deterministic_algorithms="warn"):
        random.random()


@seeded(3)
def light_call() -> float:
    return random.random()


def collecting_block() -> None:
    _collection.watch_collections()  # as once any decorated generator exists
    with deterministic(4, sources=("random",)):
        gc.collect(0)  # the collector's callbacks run here, inside the scope
        random.random()


def invariant_block() -> None:
    with deterministic(5, batch_invariant=True, sources=("random",)):
        random.random()


@pytest.mark.parametrize(
    "operation",
    [light_block, flag_block, light_call, collecting_block, invariant_block],
    ids=lambda f: f.__name__,
)
def test_interrupt_at_every_bytecode_of_the_library(operation: Any) -> None:
    """A Ctrl-C at each bytecode of the scope machinery leaves states, stack, lock, GC and handler intact."""
    operation()  # layouts probed and caches filled, so every run executes the same bytecodes
    before = full_state()
    handler = signal.getsignal(signal.SIGINT)
    opcode = 1
    while interrupted_at(opcode, operation):
        state = (full_state() == before, not _scope._STACK, lock_is_free(), gc.isenabled())
        assert state == (True, True, True, True), f"interrupt at library bytecode {opcode}: {state}"
        assert signal.getsignal(signal.SIGINT) is handler, f"handler left at bytecode {opcode}"
        opcode += 1
    assert opcode > 100  # the operation really ran through the library
