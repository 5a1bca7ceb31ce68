"""A test double of ``torch.cuda`` for machines without a GPU.

It mirrors the parts of torch's device-module API the CUDA source uses, with torch's
own lazy-initialisation semantics: seeds queued through ``manual_seed_all`` before
initialisation are kept by torch's real ``_LazySeedTracker`` (latest call only) and run
at ``init()`` after any other queued call. Each "device" generator is a real CPU
``torch.Generator``, so states and draws are real. Every test using it has a twin marked
``cuda`` that runs against the real device module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch._utils import _LazySeedTracker


class FakeCudaModule:
    """``torch.cuda`` with ``count`` devices that initialise on first use."""

    def __init__(self, count: int = 2) -> None:
        self._count = count
        self._initialized = False
        self.bad_fork = False
        self.available = True
        self._lazy_seed_tracker = _LazySeedTracker()
        self._queued_calls: list[tuple[Callable[[], None], list[str]]] = []
        self.default_generators: tuple[torch.Generator, ...] = ()
        self.state_reads = 0

    def _is_compiled(self) -> bool:
        return True

    def is_available(self) -> bool:
        return self.available

    def _is_in_bad_fork(self) -> bool:
        return self.bad_fork

    def is_initialized(self) -> bool:
        return self._initialized and not self.bad_fork

    def device_count(self) -> int:
        return self._count

    def _lazy_call(self, callback: Callable[[], None], **kwargs: Any) -> None:
        if self.is_initialized():
            callback()
        elif kwargs.get("seed_all"):
            self._lazy_seed_tracker.queue_seed_all(callback, ["queued"])
        elif kwargs.get("seed"):
            self._lazy_seed_tracker.queue_seed(callback, ["queued"])
        else:
            self._queued_calls.append((callback, ["queued"]))

    def manual_seed_all(self, seed: int) -> None:
        seed = int(seed)

        def callback() -> None:
            for generator in self.default_generators:
                generator.manual_seed(seed)

        self._lazy_call(callback, seed_all=True)

    def manual_seed(self, seed: int) -> None:
        seed = int(seed)

        def callback() -> None:
            self.default_generators[0].manual_seed(seed)

        self._lazy_call(callback, seed=True)

    def init(self) -> None:
        """Initialise as ``torch.cuda._lazy_init`` does: generators, then queued calls, then seeds."""
        if self._initialized:
            return
        if self.bad_fork:
            raise RuntimeError("Cannot re-initialize CUDA in forked subprocess")
        self.default_generators = tuple(torch.Generator() for _ in range(self._count))
        calls = self._queued_calls + [call for call in self._lazy_seed_tracker.get_calls() if call]
        for callback, _ in calls:
            callback()
        self._initialized = True

    def get_rng_state(self, device: int = 0) -> torch.Tensor:
        self.init()
        self.state_reads += 1
        return self.default_generators[device].get_state()

    def draw(self, device: int) -> list[float]:
        """Draw on one device, initialising like any CUDA op."""
        self.init()
        return torch.rand(4, generator=self.default_generators[device]).tolist()

    def draw_all(self) -> list[list[float]]:
        return [self.draw(device) for device in range(self._count)]
