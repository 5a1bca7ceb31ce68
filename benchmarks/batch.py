"""What batch invariance costs: the flag on evaluation, and batch_divergence against a forward pass.

Rows:

* ``batch_invariant=True`` on a tiny GPT-2 (2 layers, d = 128, 64 tokens, built from a
  config, random weights) in evaluation, at B = 32 and B = 1, with its default SDPA
  attention and with eager attention (whose bmm calls the flag covers);
* the flag on a small CNN's evaluation at B = 32;
* ``batch_divergence`` at B = 8 (every row checked) against one forward pass at B = 8.

Each ratio is the median of the flagged (or probed) time over the median of the plain
time, measured in alternating rounds in one process, with torch's default threads.

    python benchmarks/batch.py            # 15 rounds per row
    python benchmarks/batch.py --quick    # CI smoke run: 3 rounds
"""

import argparse
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from deterministic import batch_divergence, deterministic


def gpt2(attention):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=128,
        vocab_size=1000,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attention,
    )
    with deterministic(0):
        return GPT2LMHeadModel(config).eval()


def cnn():
    with deterministic(0):
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 8 * 8, 10),
        ).eval()


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def ratio(plain, other, rounds):
    """Median of ``other`` over median of ``plain``, alternating, after one warm-up each."""
    plain()
    other()
    plain_times, other_times = [], []
    for _ in range(rounds):
        plain_times.append(timed(plain))
        other_times.append(timed(other))
    return statistics.median(other_times) / statistics.median(plain_times), statistics.median(plain_times)


def flagged(function):
    def run():
        with deterministic(0, batch_invariant=True):
            function()

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds per row (CI smoke run)")
    arguments = parser.parse_args()
    rounds = 3 if arguments.quick else 15
    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} rounds per row")
    print(f"{'workload':52} {'ratio':>7} {'plain median':>13}")
    rows = []
    for attention in ("sdpa", "eager"):
        model = gpt2(attention)
        for size in (32, 1):
            ids = torch.randint(1000, (size, 64), generator=generator)

            def forward(model=model, ids=ids):
                with torch.no_grad():
                    model(ids)

            rows.append(
                (
                    f"flag, GPT-2 tiny eval, {attention} attention, B={size}",
                    *ratio(forward, flagged(forward), rounds),
                )
            )
    images = torch.randn(32, 3, 32, 32, generator=generator)
    model = cnn()

    def cnn_forward():
        with torch.no_grad():
            model(images)

    rows.append(("flag, CNN eval, B=32", *ratio(cnn_forward, flagged(cnn_forward), rounds)))
    model = gpt2("sdpa")
    ids = torch.randint(1000, (8, 64), generator=generator)

    def logits(batch):
        with torch.no_grad():
            return model(batch).logits

    probe_rounds = max(1, rounds // 5)
    rows.append(
        (
            "batch_divergence, GPT-2 tiny, B=8, all rows",
            *ratio(lambda: logits(ids), lambda: batch_divergence(logits, ids), probe_rounds),
        )
    )
    for name, value, plain in rows:
        print(f"{name:52} {value:6.2f}x {plain * 1000:10.1f} ms")


if __name__ == "__main__":
    main()
