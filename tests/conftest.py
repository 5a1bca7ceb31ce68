"""Shared fixtures: the leak guard every test runs under, and state helpers."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the suite also runs without torch
    torch = None  # type: ignore[assignment]

from deterministic import _scope

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    """Keep pytest-randomly's shuffling, but not its reseeding of every phase of every test.

    The leak guard below asserts that a test leaves every global RNG as it found it; a
    plugin that reseeds between setup and teardown changes them on purpose.
    """
    if getattr(config.option, "randomly_reset_seed", None):
        config.option.randomly_reset_seed = False


CUBLAS = "CUBLAS_WORKSPACE_CONFIG"


def numpy_state() -> tuple[Any, ...]:
    """NumPy's legacy global state as comparable plain values (keys as a list)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return (name, keys.tolist(), pos, has_gauss, cached)


def flag_state() -> tuple[Any, ...]:
    """Every determinism flag a scope may touch, plus the cuBLAS variable."""
    if torch is None:
        return (os.environ.get(CUBLAS),)
    return (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.enabled,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
        dispatch_modes(),
        os.environ.get(CUBLAS),
    )


def dispatch_modes() -> tuple[Any, ...]:
    """The calling thread's torch dispatch modes (``batch_invariant=True`` pushes one)."""
    if torch is None:
        return ()
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return tuple(_get_current_dispatch_mode_stack())


def full_state() -> tuple[Any, ...]:
    """Everything a scope must restore: every RNG state (caches included) and every flag."""
    torch_state = None if torch is None else torch.get_rng_state().tolist()
    return (random.getstate(), numpy_state(), torch_state, flag_state())


def draws() -> tuple[Any, ...]:
    """Draw from every source, including the cached-Gaussian paths."""
    values: list[Any] = [random.random(), random.gauss(0, 1), random.gauss(0, 1)]
    values += [np.random.rand(3).tolist(), np.random.randn(3).tolist()]
    if torch is not None:
        values.append(torch.rand(3).tolist())
        values.append(torch.randn(3).tolist())
    return tuple(values)


def classic_recipe(seed: int) -> None:
    """The global, permanent seeding recipe that scopes must match bit for bit."""
    random.seed(seed)
    np.random.seed(seed)
    if torch is not None:
        torch.manual_seed(seed)
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def outside_state_restored() -> Iterator[None]:
    """Let a test draw and seed globally on purpose, then put the states and flags back."""
    saved_random = random.getstate()
    saved_numpy = np.random.get_state()
    saved_torch = None if torch is None else torch.get_rng_state()
    saved_flags = flag_state()
    try:
        yield
    finally:
        _put_back(saved_random, saved_numpy, saved_torch, saved_flags)


def _put_back(saved_random: Any, saved_numpy: Any, saved_torch: Any, saved_flags: Any) -> None:
    random.setstate(saved_random)
    np.random.set_state(saved_numpy)
    if torch is not None:
        torch.set_rng_state(saved_torch)
        torch._C._set_cudnn_deterministic(saved_flags[0])
        torch._C._set_cudnn_benchmark(saved_flags[1])
        torch._C._set_cudnn_enabled(saved_flags[2])
        torch._C._set_deterministic_algorithms(saved_flags[3], warn_only=saved_flags[4])
        torch._C._set_deterministic_fill_uninitialized_memory(saved_flags[5])
        from torch.utils._python_dispatch import _pop_mode

        while len(dispatch_modes()) > len(saved_flags[6]):
            _pop_mode()
    if saved_flags[-1] is None:
        os.environ.pop(CUBLAS, None)
    else:
        os.environ[CUBLAS] = saved_flags[-1]


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail any test that leaks RNG state, flags, a scope, the lock, paused GC or the SIGINT guard."""
    handler = signal.getsignal(signal.SIGINT)
    before = full_state()
    saved_random = random.getstate()
    saved_numpy = np.random.get_state()
    saved_torch = None if torch is None else torch.get_rng_state()
    saved_flags = flag_state()
    yield
    leaked_scopes = list(_scope._STACK)
    after = full_state()
    # Put everything back so that one leak does not cascade into later tests.
    _put_back(saved_random, saved_numpy, saved_torch, saved_flags)
    if leaked_scopes:
        _scope._STACK.clear()
        _scope._LOCK.release_all()
        pytest.fail(f"test left scopes open: {leaked_scopes}")
    lock = _scope._LOCK
    held = (lock.owner, lock.count, lock._lock.locked())
    if held != (None, 0, False):
        lock.reset()
        pytest.fail(f"test left the scope lock held: owner, count, locked = {held}")
    if not gc.isenabled():
        gc.enable()
        pytest.fail("test left automatic garbage collection off")
    if signal.getsignal(signal.SIGINT) is not handler:
        signal.signal(signal.SIGINT, handler)
        pytest.fail("test left another SIGINT handler installed")
    assert after == before, "test leaked global RNG state or determinism flags"


@pytest.fixture
def needs_torch() -> Any:
    """The torch module, or skip the test when torch is not installed."""
    if torch is None:
        pytest.skip("torch is not installed")
    return torch


def run_gloo_pair(script: Path) -> list[tuple[Any, str]]:
    """Run ``script`` as ranks 0 and 1 of a real gloo group; return each rank's JSON output and stderr."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    processes = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env={**env, "RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        results.append((json.loads(out), err))
    return results
