"""What tracing costs: training steps of real model families on CPU, traced against untraced.

For each workload it prints the ratio of median step times (traced / untraced, measured
in alternating rounds in one process, one thread), the same for ``rehash=True`` and for
a dispatch mode that records nothing (the floor of any recorder written in Python: torch
routes every op through Python and runs some fused kernels decomposed under a mode), the
ops per step and the trace's bytes per op. Then: the cost of a DataLoader with two
workers (the main process traced), the speed of comparing two long traces, and the
resident memory of a long traced run (flat means the recorder keeps nothing per op in
memory).

    python benchmarks/trace.py            # all rows, 10,000-step memory run
    python benchmarks/trace.py --quick    # CI smoke run: fewer steps and ops
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
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from deterministic import deterministic, first_divergence, trace


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


class NoOpMode(TorchDispatchMode):
    """A dispatch mode that only calls each op: the floor any Python-level recorder pays."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def timings(step, path, rounds, per_round):
    """Median step times untraced, under a no-op mode, traced and traced with rehash=True, alternating."""
    untraced, floor, traced, rehashed = [], [], [], []
    ops, per_op = 0, 0.0

    def timed(times):
        for _ in range(per_round):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)

    for _ in range(rounds):
        timed(untraced)
        with NoOpMode():
            timed(floor)
        with trace(path) as recording:
            timed(traced)
        ops = recording.ops
        per_op = os.path.getsize(path) / ops
        with trace(path, rehash=True):
            timed(rehashed)
    medians = [statistics.median(times) for times in (untraced, floor, traced, rehashed)]
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


def transformers_models():
    """The GPT-2 tiny, resnet18 and vit_tiny workloads (random init from configs, no downloads)."""
    import transformers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        ResNetConfig,
        ResNetForImageClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    transformers.logging.set_verbosity_error()

    def gpt2():
        config = GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=64)
        model = GPT2LMHeadModel(config)
        tokens = torch.randint(0, 1000, (8, 64))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        return lambda: train(model, optimizer, input_ids=tokens, labels=tokens)

    def resnet18():
        config = ResNetConfig(
            layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], embedding_size=64
        )
        model = ResNetForImageClassification(config)
        images, labels = torch.randn(16, 3, 64, 64), torch.randint(0, 2, (16,))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        return lambda: train(model, optimizer, pixel_values=images, labels=labels)

    def vit_tiny():
        config = ViTConfig(
            image_size=64,
            patch_size=16,
            hidden_size=192,
            num_hidden_layers=12,
            num_attention_heads=3,
            intermediate_size=768,
            num_labels=10,
        )
        model = ViTForImageClassification(config)
        images, labels = torch.randn(16, 3, 64, 64), torch.randint(0, 10, (16,))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        return lambda: train(model, optimizer, pixel_values=images, labels=labels)

    return [
        ("GPT-2 tiny (2 layers, d=128, 8x64 tokens)", gpt2),
        ("resnet18 at 64 px, batch 16", resnet18),
        ("vit_tiny at 64 px, batch 16", vit_tiny),
    ]


def train(model, optimizer, **batch):
    loss = model(**batch).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


class Augmented(torch.utils.data.Dataset):
    """Images made and augmented with torch ops in the workers."""

    def __len__(self):
        return 256

    def __getitem__(self, index):
        image = torch.rand(3, 32, 32)
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image + 0.01 * torch.randn(3, 32, 32), index % 10


def loader_epochs(path, rounds):
    """Median time of an epoch of a 2-worker loader (8 batches), untraced and traced.

    The loop consumes each batch with one op, so the row measures what the loader's
    batches cost the recorder, not the model's ops.
    """
    loader = torch.utils.data.DataLoader(Augmented(), batch_size=32, num_workers=2, persistent_workers=True)

    def epoch():
        for images, _ in loader:
            images.mean()

    epoch()
    untraced, traced = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        epoch()
        untraced.append(time.perf_counter() - start)
        with trace(path):
            start = time.perf_counter()
            epoch()
            traced.append(time.perf_counter() - start)
    return statistics.median(untraced), statistics.median(traced)


def comparing(directory, ops, every):
    """Trace ``ops`` cheap ops twice and compare; return (seconds, ops per second, RSS growth).

    With ``every`` = k > 0, one op in k makes a value that differs between the two traces
    and that no later op reads (as scratch memory does): chunks are not byte-equal, so
    they are compared op by op, yet there is no divergence.
    """
    paths = [os.path.join(directory, name) for name in ("a.dtrace", "b.dtrace")]
    for run, path in enumerate(paths):
        with deterministic(0), trace(path):
            x = torch.zeros(4)
            for number in range(ops):
                if every and number % every == 0:
                    torch.tensor([run])
                else:
                    x = x + 1
    before = resident_bytes()
    start = time.perf_counter()
    assert first_divergence(*paths) is None
    elapsed = time.perf_counter() - start
    growth = resident_bytes() - before
    for path in paths:
        os.remove(path)
    return elapsed, ops / elapsed, growth


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a short run for CI: figures are rough")
    parser.add_argument("--steps", type=int, default=None, help="steps of the memory run (default 10,000)")
    parser.add_argument("--compare-ops", type=int, default=None, help="ops per trace compared (default 10^6)")
    options = parser.parse_args()
    rounds, per_round = (2, 1) if options.quick else (7, 5)
    long_steps = options.steps or (300 if options.quick else 10_000)
    compare_ops = options.compare_ops or (20_000 if options.quick else 1_000_000)
    torch.set_num_threads(1)  # stable timings on a shared machine; the ratio is what matters
    directory = tempfile.mkdtemp(prefix="trace-bench-")
    path = os.path.join(directory, "bench.dtrace")

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

        workloads = [("small CNN, batch 32x3x32x32", lambda: step)]
        try:
            workloads += transformers_models()
        except ImportError:
            print("transformers is not installed: the GPT-2, resnet18 and vit rows are skipped")
        print(f"training steps on CPU, 1 thread, {rounds} rounds of {per_round} steps each, medians")
        columns = ("untraced", "traced", "ratio", "rehash", "no-op mode", "ops", "B/op")
        print(f"{'workload':44s} " + " ".join(f"{column:>10s}" for column in columns))
        for name, make in workloads:
            run = make()
            for _ in range(2):
                run()
            (base, floor, traced, rehashed), ops, per_op = timings(run, path, rounds, per_round)
            print(
                f"{name:44s} {base * 1e3:8.1f}ms {traced * 1e3:8.1f}ms {traced / base:6.2f}x "
                f"{rehashed / base:6.2f}x {floor / base:6.2f}x {ops:6d} {per_op:6.1f}"
            )
        base, traced = loader_epochs(path, rounds=2 if options.quick else 9)
        print(
            f"{'DataLoader, 2 workers, 8 batches of 32':44s} {base * 1e3:8.1f}ms {traced * 1e3:8.1f}ms "
            f"{traced / base:6.2f}x   (an epoch; the main process traced)"
        )
        for every, what in (
            (0, "equal"),
            (32, "1 op in 32 differs, unread"),
            (2, "every other op differs, unread"),
        ):
            elapsed, rate, growth = comparing(directory, compare_ops, every)
            print(
                f"comparing two traces of {compare_ops} ops ({what}): {elapsed:.2f} s, "
                f"{rate / 1e3:.0f}k ops/s, resident growth {growth / 2**20:.1f} MiB"
            )
        memory(step, path, long_steps)
        os.remove(path)
        os.rmdir(directory)


if __name__ == "__main__":
    main()
