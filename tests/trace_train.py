"""A small CNN trained through a DataLoader; ``--inject KIND`` adds one cause of nondeterminism.

Run by the tracer's tests under ``python -m deterministic check --trace``. Each cause
sits on a line ending with ``# cause: KIND``, which the tests look up.
"""

import argparse
import os
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

parser = argparse.ArgumentParser()
parser.add_argument("--inject", choices=("none", "rng", "data", "op", "branch"), default="none")
parser.add_argument("--print-time", action="store_true", help="print the wall time (differs every run)")
INJECT = parser.parse_args().inject


class Images(Dataset):
    """64 fixed 1x12x12 images in 4 classes."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.images = rng.standard_normal((64, 1, 12, 12), dtype=np.float32)
        self.labels = rng.integers(0, 4, 64)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image, label = self.images[index], self.labels[index]
        if INJECT == "data":
            return torch.from_numpy(image + time.time_ns() % 997 * 1e-6), label  # cause: data
        return torch.from_numpy(image), label


class EntropyDropout(nn.Module):
    """Dropout drawing from its own generator, seeded from OS entropy."""

    def __init__(self):
        super().__init__()
        self.generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))

    def forward(self, x):
        keep = torch.rand(x.shape, generator=self.generator) > 0.25  # cause: rng
        return x * keep / 0.75


if INJECT == "op":

    @torch.library.custom_op("trace_demo::jitter", mutates_args=())
    def jitter(x: torch.Tensor) -> torch.Tensor:
        """Add a tiny offset that differs run to run (an op with entropy inside)."""
        return x + (os.urandom(1)[0] % 7 + 1) * 1e-6

    jitter.register_autograd(lambda ctx, grad: grad)


class Jitter(nn.Module):
    def forward(self, x):
        return torch.ops.trace_demo.jitter(x)  # cause: op


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.drop = EntropyDropout() if INJECT == "rng" else nn.Dropout(0.25)
        self.jitter = Jitter() if INJECT == "op" else nn.Identity()
        self.left = nn.Linear(100, 16)
        self.right = nn.Linear(100, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        x = self.jitter(self.drop(self.features(x).flatten(1)))
        if INJECT == "branch" and os.urandom(1)[0] % 2:  # cause: branch
            return self.head(self.right(x).relu())  # branch: right
        return self.head(self.left(x).relu())  # branch: left


net = Net()
optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
loader = DataLoader(Images(), batch_size=16, shuffle=True)
for epoch in range(3):
    for images, labels in loader:
        loss = nn.functional.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch} loss {loss.item():.6f}")
if parser.parse_args().print_time:
    print(f"finished at {time.time_ns()}")
