"""Stress: Ctrl-C (SIGINT) landing at random instants while the main thread enters and leaves scopes.

The main thread loops over scope operations — plain and nested ``with`` blocks, a block
that sets flags, ``@seeded`` calls and ``@seeded`` generator steps — and never draws
outside a scope, so the global state between operations is always the starting one. A
second process sends SIGINT after a random delay, waits until the main thread has caught
the ``KeyboardInterrupt`` and checked everything, and shoots again.

After every interrupt the main thread checks: every RNG state and flag equals the
starting one, the scope stack is empty, the lock is free (unowned *and* its underlying
lock released), automatic GC is on, and the SIGINT handler is the original one. Prints
a JSON summary; exits 0 when no check failed.

Usage: python tests/stress_interrupts.py --interrupts 2000 --seconds 60
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np

try:
    import torch
except ImportError:
    torch = None  # type: ignore[assignment]

from deterministic import _scope, deterministic, seeded

# Waits for a byte ("ready"), sleeps a random moment, sends SIGINT; shoots again if no
# byte comes within ten seconds (a hung target is then interrupted in its wait).
SHOOTER = """
import os, random, select, signal, sys, time
target, delays = int(sys.argv[1]), random.Random(int(sys.argv[2]))
while True:
    ready, _, _ = select.select([sys.stdin], [], [], 10.0)
    if ready and not os.read(sys.stdin.fileno(), 1):
        break
    time.sleep(delays.uniform(0, 0.001))
    try:
        os.kill(target, signal.SIGINT)
    except ProcessLookupError:
        break
"""


def global_state() -> tuple[Any, ...]:
    """Every RNG state and flag a scope touches, as comparable values."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    state: tuple[Any, ...] = (random.getstate(), (name, keys.tolist(), position, has_gauss, cached))
    if torch is not None:
        state += (
            torch.get_rng_state().tolist(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
    return state


def draw() -> float:
    value = random.random() + float(np.random.rand())
    if torch is not None:
        value += float(torch.rand(1))
    return value


@seeded(3)
def seeded_call() -> float:
    return draw()


@seeded(4)
def seeded_stream() -> Any:
    while True:
        yield draw()


PLAIN = deterministic(1)
LIGHT = deterministic(5, sources=("random",))
STRICT = deterministic(2, deterministic_algorithms=True, sources=("random", "torch") if torch else None)


def operations() -> None:
    """One round of every kind of scope operation; a KeyboardInterrupt may land anywhere in it."""
    for _ in range(20):  # the lightest scopes: most of their time is the machinery's
        with LIGHT:
            pass
    with PLAIN:
        draw()
    with PLAIN, STRICT:
        draw()
    with STRICT:
        pass
    seeded_call()
    stream = seeded_stream()
    try:
        next(stream)
        next(stream)
    finally:
        stream.close()


def problems(baseline: tuple[Any, ...], handler: Any) -> list[str]:
    """What is wrong after an interrupt, as short descriptions."""
    found = []
    if _scope._STACK:
        found.append(f"{len(_scope._STACK)} scope(s) left on the stack")
    lock = _scope._LOCK
    if lock.owner is not None or lock.count:
        found.append(f"lock owned by {lock.owner!r} with count {lock.count}")
    if lock._lock.locked():
        found.append("underlying lock held")
    if not gc.isenabled():
        found.append("automatic GC left off")
    if signal.getsignal(signal.SIGINT) is not handler:
        found.append(f"SIGINT handler left as {signal.getsignal(signal.SIGINT)!r}")
    if global_state() != baseline:
        found.append("RNG state or flags differ from the state before the operation")
    return found


def repair(baseline: tuple[Any, ...], handler: Any) -> None:
    """Make the process as it was at the start after a failed check, so the run can count more failures."""
    _scope._STACK.clear()
    _scope._LOCK.reset()
    gc.enable()
    signal.signal(signal.SIGINT, handler)
    random.setstate(baseline[0])
    np.random.set_state((baseline[1][0], np.array(baseline[1][1], dtype=np.uint32), *baseline[1][2:]))
    if torch is not None:
        torch.set_rng_state(torch.tensor(baseline[2], dtype=torch.uint8))
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = baseline[3], baseline[4]
        torch.use_deterministic_algorithms(baseline[5], warn_only=baseline[6])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interrupts", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()

    operations()  # first use: layouts probed, modules imported
    if torch is not None:  # imports what the repair below needs, now rather than mid-run
        torch.use_deterministic_algorithms(
            torch.are_deterministic_algorithms_enabled(),
            warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        )
    baseline = global_state()
    handler = signal.getsignal(signal.SIGINT)
    # The shooter is another process: a thread of this one would need the GIL to send,
    # and so would only ever shoot while this thread is inside a call that released it.
    # A Ctrl-C from a terminal arrives at any instant; so do these.
    shooter = subprocess.Popen(
        [sys.executable, "-c", SHOOTER, str(os.getpid()), str(options.seed)],
        stdin=subprocess.PIPE,
    )
    assert shooter.stdin is not None
    interrupts = 0
    failures: list[str] = []
    deadline = time.monotonic() + options.seconds
    ready = True
    while interrupts < options.interrupts and time.monotonic() < deadline:
        try:
            if ready:  # inside the `try`: the shot may land as soon as the byte is written
                ready = False
                shooter.stdin.write(b"x")
                shooter.stdin.flush()
            while True:
                operations()
        except KeyboardInterrupt:
            interrupts += 1
            found = problems(baseline, handler)
            if found:
                failures.append(f"interrupt {interrupts}: " + "; ".join(found))
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # no shot may land in the repair
                repair(baseline, handler)
                if len(failures) >= 20:
                    break
            ready = True
    # A last shot may still be on its way: from here on it is ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    shooter.stdin.close()
    shooter.wait()
    print(json.dumps({"interrupts": interrupts, "failures": failures}))
    return 1 if failures or interrupts == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
