"""What tracing costs: a small CNN's training step on CPU, traced against untraced.

Prints the ratio of median step times (traced / untraced, measured in alternating
rounds in one process), the trace's bytes per recorded op, and the resident memory
of a long traced run sampled along the way (flat means the recorder keeps nothing
per op in memory).

    python benchmarks/trace.py            # 10,000-step memory run
    python benchmarks/trace.py --quick    # CI smoke run: fewer steps
"""

import argparse
import ctypes
import ctypes.util
import gc
import os
import statistics
import sys
import tempfile
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from deterministic import deterministic, trace


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc
        return None


TRIM = _malloc_trim()


def make_model():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(32 * 8 * 8, 10),
    )


def resident_bytes():
    """Resident memory, after handing freed heap back to the OS (else RSS shows allocator noise)."""
    gc.collect()
    if TRIM is not None:
        TRIM(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timings(step, path, rounds, per_round):
    """Median step times untraced, traced and traced with rehash=True, in alternating rounds."""
    untraced, traced, rehashed = [], [], []
    ops, per_op = 0, 0.0
    for _ in range(rounds):
        for _ in range(per_round):
            start = time.perf_counter()
            step()
            untraced.append(time.perf_counter() - start)
        with trace(path) as recording:
            for _ in range(per_round):
                start = time.perf_counter()
                step()
                traced.append(time.perf_counter() - start)
        ops = recording.ops
        per_op = os.path.getsize(path) / ops
        with trace(path, rehash=True):
            for _ in range(per_round):
                start = time.perf_counter()
                step()
                rehashed.append(time.perf_counter() - start)
    medians = [statistics.median(times) for times in (untraced, traced, rehashed)]
    return medians, ops // per_round, per_op


def memory(step, path, steps):
    """Trace ``steps`` steps; sample the resident memory ten times along the way."""
    samples = []
    with trace(path) as recording:
        for number in range(1, steps + 1):
            step()
            if number % max(steps // 10, 1) == 0:
                samples.append((number, resident_bytes()))
    size = os.path.getsize(path)
    print(f"long traced run: {steps} steps, {recording.ops} ops, trace {size / 2**20:.1f} MiB")
    for number, rss in samples:
        print(f"  after {number:6d} steps: resident {rss / 2**20:8.1f} MiB")
    # The recorder's tables are bounded (the digests it remembers as produced, the digest
    # cache, the string table): they fill during the first steps, then memory must stay flat.
    first, middle, last = samples[0], samples[len(samples) // 2 - 1], samples[-1]
    print(f"  growth from step {first[0]} to {last[0]}: {(last[1] - first[1]) / 2**20:.1f} MiB")
    print(
        f"  growth from step {middle[0]} to {last[0]} (bounded tables full): "
        f"{(last[1] - middle[1]) / 2**20:.1f} MiB"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a short run for CI: figures are rough")
    parser.add_argument("--steps", type=int, default=None, help="steps of the memory run (default 10,000)")
    options = parser.parse_args()
    rounds, per_round = (5, 5) if options.quick else (15, 20)
    long_steps = options.steps or (300 if options.quick else 10_000)
    torch.set_num_threads(1)  # stable timings on a shared machine; the ratio is what matters

    with deterministic(0):
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        images = torch.randn(32, 3, 32, 32)
        labels = torch.randint(0, 10, (32,))

        def step():
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        for _ in range(5):
            step()
        directory = tempfile.mkdtemp(prefix="trace-bench-")
        path = os.path.join(directory, "bench.dtrace")
        (base, traced, rehashed), ops, per_op = timings(step, path, rounds, per_round)
        print(f"training step, small CNN, batch 32x3x32x32, CPU, 1 thread ({rounds}x{per_round} steps each)")
        print(f"  untraced median  {base * 1e3:8.3f} ms")
        print(f"  traced median    {traced * 1e3:8.3f} ms   ratio {traced / base:.2f}x")
        print(f"  rehash=True      {rehashed * 1e3:8.3f} ms   ratio {rehashed / base:.2f}x")
        print(f"  ops per step     {ops}")
        print(f"  trace size       {per_op:.1f} bytes per op")
        memory(step, path, long_steps)
        os.remove(path)
        os.rmdir(directory)


if __name__ == "__main__":
    main()
