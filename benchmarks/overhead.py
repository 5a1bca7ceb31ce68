"""Overhead of entering and leaving a scope, against the floor and the peers.

Run: ``python benchmarks/overhead.py`` (full), ``--quick`` (a few thousand iterations, as
in CI), ``--json`` (one JSON object instead of the table).

Every row is timed in this one process, in interleaved rounds (each round times every row
once, in turn), and the median over rounds is reported, as microseconds per block and as
ratios to the floor and to Lightning's ``isolate_rng`` + ``seed_everything``.

The floor is the public-API way of doing what a scope does for the CPU sources, written
out as nine plain calls: save, seed and restore ``random``, NumPy's global generator and
torch's CPU generator.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

import deterministic as package
from deterministic import _interrupts, deterministic, seeded

Row = Callable[[int], None]


def floor(iterations: int) -> None:
    generator = torch.default_generator
    for _ in range(iterations):
        python_state = random.getstate()
        random.seed(0)
        random.setstate(python_state)
        numpy_state = np.random.get_state()
        np.random.seed(0)
        np.random.set_state(numpy_state)
        torch_state = generator.get_state()
        generator.manual_seed(0)
        generator.set_state(torch_state)


def scope_row(config: deterministic) -> Row:
    def run(iterations: int) -> None:
        for _ in range(iterations):
            with config:
                pass

    return run


def guard_cost(iterations: int, rounds: int) -> dict[str, float]:
    """What holding Ctrl-C off costs: scopes with the guard and with it switched off, alternating.

    Each round times every variant once, in turn, so that the machine's drift hits all
    of them alike; the medians over the rounds are compared.
    """

    def never_armed() -> bool:
        return False

    armed = _interrupts.arm
    variants = {"all sources": deterministic(0), "random only": deterministic(0, sources=("random",))}
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for label, config in variants.items():
            for guard, arm in (("guard", armed), ("no guard", never_armed)):
                _interrupts.arm = arm
                try:
                    start = time.perf_counter()
                    for _ in range(iterations):
                        with config:
                            pass
                    elapsed = time.perf_counter() - start
                finally:
                    _interrupts.arm = armed
                samples.setdefault(f"{label}, {guard}", []).append(elapsed / iterations * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


@seeded(0)
def empty() -> None:
    pass


def seeded_call(iterations: int) -> None:
    for _ in range(iterations):
        empty()


@seeded
def endless() -> Iterator[None]:
    while True:
        yield None


_STEPPER = endless()


def generator_step(iterations: int) -> None:
    for _ in range(iterations):
        next(_STEPPER)


def fork_rng_row(devices: list[int] | None = None) -> Row:
    def run(iterations: int) -> None:
        for _ in range(iterations):
            with torch.random.fork_rng(devices=devices):
                random.seed(0)
                np.random.seed(0)
                torch.manual_seed(0)

    return run


def lightning_row() -> Row | None:
    try:
        from lightning.fabric.utilities.seed import seed_everything
        from lightning.pytorch.utilities.seed import isolate_rng
    except ImportError:
        return None

    def run(iterations: int) -> None:
        for _ in range(iterations):
            with isolate_rng():
                seed_everything(0, verbose=False)

    return run


def time_rows(rows: dict[str, Row], iterations: int, rounds: int) -> dict[str, float]:
    """Return each row's median microseconds per block over interleaved rounds."""
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for row in rows.values():
        row(max(1, iterations // 10))  # warm up caches and lazy imports
    for _ in range(rounds):
        for name, row in rows.items():
            gc.collect()
            start = time.perf_counter()
            row(iterations)
            samples[name].append((time.perf_counter() - start) / iterations * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def import_time(runs: int) -> dict[str, Any]:
    """What ``import deterministic`` adds to a fresh interpreter's start-up.

    Two measurements: the import's own duration inside each fresh interpreter (what the
    import adds, free of process-start noise), and the wall time of whole interpreters
    with and without the import (the ratio users see).
    """
    # Measure what users get: bytecode caches written and used.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    check = "import sys, deterministic; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True, env=env)  # also writes bytecode
    timed = (
        "import time; start = time.perf_counter(); import deterministic; "
        "print((time.perf_counter() - start) * 1e3)"
    )
    inside = [
        float(subprocess.run([sys.executable, "-c", timed], check=True, env=env, capture_output=True).stdout)
        for _ in range(runs)
    ]

    def wall_ms(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        return (time.perf_counter() - start) * 1e3

    bare, loaded = [], []
    for _ in range(runs):  # interleaved, to share any drift
        bare.append(wall_ms("pass"))
        loaded.append(wall_ms("import deterministic"))
    bare_ms, loaded_ms = statistics.median(bare), statistics.median(loaded)
    return {
        "import_ms_in_process": statistics.median(inside),
        "python_c_pass_ms": bare_ms,
        "python_c_import_ms": loaded_ms,
        "wall_ratio": loaded_ms / bare_ms,
        "imports_torch_or_numpy": False,
    }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_growth(entries: int) -> dict[str, Any]:
    """RSS and traced-memory growth over ``entries`` scope entries, after a warm-up."""
    config = deterministic(0)
    for _ in range(1000):
        with config:
            pass
    gc.collect()
    rss_before = _rss_bytes()
    for _ in range(entries):
        with config:
            pass
    gc.collect()
    rss_growth = _rss_bytes() - rss_before
    traced_entries = entries
    tracemalloc.start()
    for _ in range(1000):
        with config:
            pass
    gc.collect()
    traced_before = tracemalloc.get_traced_memory()[0]
    for _ in range(traced_entries):
        with config:
            pass
    gc.collect()
    traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
    tracemalloc.stop()
    return {
        "entries": entries,
        "rss_growth_bytes": rss_growth,
        "traced_entries": traced_entries,
        "traced_growth_bytes": traced_growth,
    }


def cuda_rows(rows: dict[str, Row]) -> dict[str, Any]:
    """Add rows with CUDA initialised, and check that scopes never synchronise a device."""
    if not torch.cuda.is_available():
        return {"available": False}
    torch.cuda.init()
    count = torch.cuda.device_count()
    # A scope always covers every device; fork_rng is shown for one device and for all.
    rows[f"with deterministic(0), CUDA up, all {count} devices"] = scope_row(deterministic(0))
    rows["fork_rng(devices=[0]) + 3 seeds"] = fork_rng_row([0])
    rows[f"fork_rng(all {count} devices) + 3 seeds"] = fork_rng_row(list(range(count)))
    torch.cuda.set_sync_debug_mode("error")
    try:
        with deterministic(0):
            pass
        synchronised = False
    except RuntimeError:
        synchronised = True
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return {"available": True, "devices": count, "scope_synchronises": synchronised}


def cnn_step_cost(steps: int, rounds: int) -> dict[str, float]:
    """The cost of one scope around each training step of a small CNN on CUDA, as a share of the step."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(32, 10),
    ).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(64, 3, 32, 32, device="cuda")
    labels = torch.randint(0, 10, (64,), device="cuda")
    config = deterministic(0)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def run(scoped: bool) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            if scoped:
                with config:
                    step()
            else:
                step()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps * 1e6

    run(False)
    run(True)  # warm-up: cuDNN plans, allocator
    plain = statistics.median(run(False) for _ in range(rounds))
    scoped = statistics.median(run(True) for _ in range(rounds))
    return {"step_us": plain, "scoped_step_us": scoped, "overhead_percent": (scoped - plain) / plain * 100}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (CI smoke run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    iterations, rounds = (600, 5) if args.quick else (3000, 15)
    entries = 20_000 if args.quick else 1_000_000

    rows: dict[str, Row] = {
        "floor: 9 public calls": floor,
        "with deterministic(0)": scope_row(deterministic(0)),
        'with deterministic(0, sources=("random",))': scope_row(deterministic(0, sources=("random",))),
        "@seeded(0) empty call": seeded_call,
        "@seeded generator step": generator_step,
        "fork_rng() + 3 seeds": fork_rng_row(),
    }
    lightning = lightning_row()
    if lightning is not None:
        rows["Lightning isolate_rng + seed_everything"] = lightning
    cuda = cuda_rows(rows)
    if cuda["available"]:
        cuda["cnn_step"] = cnn_step_cost(50 if args.quick else 200, 3 if args.quick else 7)

    medians = time_rows(rows, iterations, rounds)
    floor_us = medians["floor: 9 public calls"]
    lightning_us = medians.get("Lightning isolate_rng + seed_everything")
    table = [
        {
            "row": name,
            "us_per_block": us,
            "vs_floor": us / floor_us,
            "vs_lightning": None if lightning_us is None else us / lightning_us,
        }
        for name, us in medians.items()
    ]
    result = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "deterministic": package.__version__,
        },
        "iterations": iterations,
        "rounds": rounds,
        "rows": table,
        "guard": guard_cost(iterations, 6 if args.quick else 30),
        "import": import_time(5 if args.quick else 20),
        "memory": memory_growth(entries),
        "cuda": cuda,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    machine = result["machine"]
    print(
        f"Python {machine['python']}, NumPy {machine['numpy']}, torch {machine['torch']}, "
        f"{machine['cpus']} CPUs, {machine['platform']}"
    )
    print(f"median of {rounds} interleaved rounds of {iterations} blocks\n")
    print(f"| {'block':44} | {'µs/block':>9} | {'x floor':>7} | {'x Lightning':>11} |")
    print(f"|{'-' * 46}|{'-' * 11}:|{'-' * 9}:|{'-' * 13}:|")
    for entry in table:
        vs_lightning = "—" if entry["vs_lightning"] is None else f"{entry['vs_lightning']:.3f}"
        cells = f"{entry['us_per_block']:9.2f} | {entry['vs_floor']:7.3f} | {vs_lightning:>11}"
        print(f"| {entry['row']:44} | {cells} |")
    guard = result["guard"]
    print("\nCtrl-C guard, alternating rounds (median µs per block):")
    for label in ("all sources", "random only"):
        on, off = guard[f"{label}, guard"], guard[f"{label}, no guard"]
        print(
            f"  with deterministic(0), {label}: {on:.2f} with the guard, {off:.2f} without (x{on / off:.3f})"
        )
    imported = result["import"]
    print(
        f"\nimport deterministic: {imported['import_ms_in_process']:.1f} ms inside a fresh interpreter; "
        f"python -c 'import deterministic' {imported['python_c_import_ms']:.1f} ms vs python -c pass "
        f"{imported['python_c_pass_ms']:.1f} ms (x{imported['wall_ratio']:.2f}); "
        f"imports neither torch nor NumPy"
    )
    memory = result["memory"]
    print(
        f"memory: RSS growth over {memory['entries']:,} entries: {memory['rss_growth_bytes']:,} B; "
        f"traced growth over {memory['traced_entries']:,} entries: {memory['traced_growth_bytes']:,} B"
    )
    if cuda["available"]:
        print(
            f"CUDA: {cuda['devices']} device(s); a scope synchronises a device: {cuda['scope_synchronises']}"
        )
        cnn = cuda["cnn_step"]
        print(
            f"CUDA: small CNN training step {cnn['step_us']:.0f} us, with a scope around it "
            f"{cnn['scoped_step_us']:.0f} us: {cnn['overhead_percent']:+.2f} % per step"
        )
    else:
        print("CUDA: not available, no CUDA rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
