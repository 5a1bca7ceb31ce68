"""Datasets for the per-sample stream tests: importable by spawned DataLoader workers."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


class Augmented:
    """Small images with an augmentation that draws from random, NumPy and torch (and kornia if present)."""

    def __init__(self, size: int = 24, kornia: bool = True) -> None:
        self.size = size
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(size, 3, 16, 16, generator=generator)
        self.pipeline: Any = None
        if kornia:
            from kornia import augmentation

            self.pipeline = augmentation.AugmentationSequential(
                augmentation.RandomResizedCrop((12, 12)),
                augmentation.RandomHorizontalFlip(),
                augmentation.ColorJitter(0.2, 0.2, 0.2, 0.1, p=1.0),
            )

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.images[index]
        if random.random() < 0.5:  # Python's random
            image = image.flip(-2)
        image = image + torch.from_numpy(np.random.normal(0, 0.01, image.shape).astype(np.float32))  # NumPy
        image = image * (1 + 0.1 * torch.rand(1))  # torch
        if self.pipeline is not None:
            image = self.pipeline(image.unsqueeze(0)).squeeze(0)
        else:
            image = image[:, :12, :12]
        return {"index": index, "image": image}


class GlobalNoise:
    """A plain dataset whose augmentation draws from the global torch RNG of whatever process loads it."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        generator = torch.Generator().manual_seed(index)
        x = torch.randn(4, generator=generator)
        return x + 0.1 * torch.randn(4), torch.randn(1, generator=generator)
