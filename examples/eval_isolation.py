"""Evaluation that does not perturb training: a seeded evaluation block inside a training loop.

Trains a tiny model with dropout and a shuffling DataLoader three times:

1. without any evaluation (the reference),
2. with a seeded evaluation block ``with deterministic(0):`` after every epoch,
3. with the classic recipe (global ``set_seed(0)``) before every evaluation.

The evaluation draws random numbers (its loader draws a base seed, the augmentation
adds noise), as real evaluation code does. Run 2 must give training losses that are
bit-identical to run 1; run 3 does not, because the global reseeding changes the
training stream that follows it.

Run: ``python examples/eval_isolation.py``
"""

from __future__ import annotations

import random
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from deterministic import deterministic

EPOCHS = 4


def set_seed(seed: int) -> None:
    """The classic recipe: seed everything globally, for good."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def make_data() -> tuple[TensorDataset, TensorDataset]:
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(256, 8, generator=generator)
    y = (x.sum(dim=1, keepdim=True) > 0).float()
    return TensorDataset(x[:192], y[:192]), TensorDataset(x[192:], y[192:])


def evaluate(model: nn.Module, data: TensorDataset) -> float:
    """Evaluation with randomness of its own: loader base seed and noise augmentation."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for x, y in DataLoader(data, batch_size=32):
            noisy = x + 0.01 * torch.randn_like(x)
            total += nn.functional.binary_cross_entropy_with_logits(model(noisy), y).item()
    model.train()
    return total


def train(mode: str) -> list[float]:
    """Train from seed 0 and return every step's loss; `mode` selects how evaluation runs."""
    set_seed(0)
    train_data, eval_data = make_data()
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(EPOCHS):
        for x, y in DataLoader(train_data, batch_size=16, shuffle=True):
            loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        if mode == "scoped":
            with deterministic(0):
                evaluate(model, eval_data)
        elif mode == "classic":
            set_seed(0)
            evaluate(model, eval_data)
    return losses


def main() -> int:
    reference = train("none")
    scoped = train("scoped")
    classic = train("classic")
    same = "losses bit-identical to no evaluation"
    print(f"training steps per run: {len(reference)}")
    print(f"evaluation inside `with deterministic(0)`: {same}: {scoped == reference}")
    print(f"evaluation after classic set_seed(0):      {same}: {classic == reference}")
    return 0 if scoped == reference and classic != reference else 1


if __name__ == "__main__":
    sys.exit(main())
