"""Cost of per-sample streams: SeededDataset against the same dataset unwrapped.

Run: ``python benchmarks/samples.py`` (full) or ``--quick`` (CI smoke run); ``--json``
prints one JSON object.

Rows, all timed in this one process in interleaved rounds (medians reported):

- the per-sample cost of an empty item, wrapped and unwrapped: the wrapper's own cost;
- the per-sample cost of a kornia pipeline (RandomResizedCrop 224, horizontal flip,
  ColorJitter on a 3x256x256 float tensor), wrapped and unwrapped, and the wrapper's cost
  as a share of the item (target: at most 3 %);
- the cost per batch of running ``collate_fn`` in a scope keyed by the batch's keys (8
  small tensors, default collate), as a share of 8 kornia items;
- DataLoader throughput with 2 workers over the kornia dataset, wrapped
  (``SeededDataLoader``, whose ``collate_fn`` also runs in a scope keyed by the batch) and
  unwrapped (target: at least 0.97x);
- the cost per checkpoint of exact resume: Lightning's ``SeededTraining`` (saving: a
  snapshot of the RNG states into the checkpoint dict; loading: reading it back and
  installing it before the first batch) and ``seed_training``'s file for the transformers
  ``Trainer`` (``torch.save`` and ``torch.load`` of the loader's position and the snapshot),
  in milliseconds; rows are left out where the framework is not installed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Any

import torch
from kornia import augmentation
from torch.utils.data import DataLoader

from deterministic import SampleKey, SeededDataLoader, SeededDataset


class Empty:
    """Items that cost nothing: what remains is the wrapper."""

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, index: int) -> int:
        return index


class Pipeline:
    """A typical image augmentation on a 3x256x256 float tensor."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.image = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(0))
        self.augment = augmentation.AugmentationSequential(
            augmentation.RandomResizedCrop((224, 224)),
            augmentation.RandomHorizontalFlip(),
            augmentation.ColorJitter(0.2, 0.2, 0.2, 0.1, p=1.0),
        )

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Any:
        return self.augment(self.image.unsqueeze(0)).squeeze(0)


def per_item_us(dataset: Any, keys: list[Any]) -> float:
    start = time.perf_counter()
    for key in keys:
        dataset[key]
    return (time.perf_counter() - start) / len(keys) * 1e6


def throughput(loader: Any, epochs: int) -> float:
    start = time.perf_counter()
    count = 0
    for _ in range(epochs):
        for batch in loader:
            count += len(batch)
    return count / (time.perf_counter() - start)


def collate_us(rounds: int, count: int) -> tuple[float, float]:
    """Median microseconds of default_collate on 8 items, plain and inside the loader's batch scope."""
    from torch.utils.data import default_collate

    from deterministic._samples import _Items
    from deterministic._seeded_loader import _SeededCollate

    items = _Items(torch.zeros(3, 8, 8) for _ in range(8))
    items.keys = [(0, index) for index in range(8)]
    scoped = _SeededCollate(default_collate, 0)
    plain_times, scoped_times = [], []
    for _ in range(rounds):
        for collate, times in ((default_collate, plain_times), (scoped, scoped_times)):
            start = time.perf_counter()
            for _ in range(count):
                collate(items)
            times.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(plain_times), statistics.median(scoped_times)


def checkpoint_ms(rounds: int) -> dict[str, float]:
    """Median milliseconds per checkpoint saved and loaded by the framework one-liners."""
    costs: dict[str, list[float]] = {}
    try:
        from deterministic import lightning
    except ImportError:
        lightning = None
    if lightning is not None:
        callback = lightning.SeededTraining(0)
        for _ in range(rounds):
            checkpoint: dict[str, Any] = {}
            start = time.perf_counter()
            callback.on_save_checkpoint(None, None, checkpoint)
            saved = time.perf_counter()
            callback.on_load_checkpoint(None, None, checkpoint)
            callback.on_train_batch_start(None, None, None, 0)
            loaded = time.perf_counter()
            costs.setdefault("lightning save", []).append((saved - start) * 1e3)
            costs.setdefault("lightning load", []).append((loaded - saved) * 1e3)
    try:
        import transformers  # noqa: F401 - only whether the integration's users have it
    except ImportError:
        return {name: statistics.median(values) for name, values in costs.items()}
    from deterministic.transformers import _TrainingState

    arguments = SimpleNamespace(process_index=0)
    trainer = SimpleNamespace(get_train_dataloader=None, _load_rng_state=lambda path: None, args=arguments)
    state = _TrainingState(trainer, 0)
    state.loader = SeededDataLoader(Empty(), 0, batch_size=8)
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            start = time.perf_counter()
            state.save(folder)
            saved = time.perf_counter()
            state.load(folder)
            loaded = time.perf_counter()
            costs.setdefault("transformers save", []).append((saved - start) * 1e3)
            costs.setdefault("transformers load", []).append((loaded - saved) * 1e3)
    return {name: statistics.median(values) for name, values in costs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (CI smoke run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    rounds = 3 if args.quick else 9
    empty_count = 2_000 if args.quick else 20_000
    pipeline_count = 20 if args.quick else 100
    torch.set_num_threads(1)  # one item at a time, as in a DataLoader worker

    empty, pipeline = Empty(), Pipeline()
    wrapped_empty, wrapped_pipeline = SeededDataset(empty, 0), SeededDataset(pipeline, 0)
    empty_ints = list(range(empty_count))
    empty_keys = [SampleKey(0, index) for index in empty_ints]
    pipeline_ints = [index % len(pipeline) for index in range(pipeline_count)]
    pipeline_keys = [SampleKey(0, index) for index in pipeline_ints]
    samples: dict[str, list[float]] = {
        name: [] for name in ("empty", "empty wrapped", "kornia", "kornia wrapped")
    }
    per_item_us(wrapped_pipeline, pipeline_keys[:5])  # warm-up
    for _ in range(rounds):
        samples["empty"].append(per_item_us(empty, empty_ints))
        samples["empty wrapped"].append(per_item_us(wrapped_empty, empty_keys))
        samples["kornia"].append(per_item_us(pipeline, pipeline_ints))
        samples["kornia wrapped"].append(per_item_us(wrapped_pipeline, pipeline_keys))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    wrapper_us = medians["empty wrapped"] - medians["empty"]

    loaders = {
        "unwrapped": DataLoader(
            pipeline,
            batch_size=8,
            num_workers=2,
            persistent_workers=True,
            generator=torch.Generator().manual_seed(0),
        ),
        "SeededDataLoader": SeededDataLoader(
            pipeline, 0, batch_size=8, num_workers=2, persistent_workers=True
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    epochs = 1 if args.quick else 3
    for loader in loaders.values():
        throughput(loader, 1)  # start the persistent workers
    for _ in range(rounds):
        for name, loader in loaders.items():
            rates[name].append(throughput(loader, epochs))
    rate = {name: statistics.median(values) for name, values in rates.items()}
    checkpoints = checkpoint_ms(rounds * 5)
    collate_plain, collate_scoped = collate_us(rounds, 200 if args.quick else 2_000)
    result = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        "rounds": rounds,
        "per_item_us": medians,
        "wrapper_us": wrapper_us,
        "wrapper_share_of_kornia_item": wrapper_us / medians["kornia"],
        "wrapped_vs_unwrapped_kornia_item": medians["kornia wrapped"] / medians["kornia"],
        "loader_samples_per_s": rate,
        "loader_ratio": rate["SeededDataLoader"] / rate["unwrapped"],
        "checkpoint_ms": checkpoints,
        "collate_us": {"plain": collate_plain, "scoped": collate_scoped},
        "collate_scope_share_of_8_kornia_items": (collate_scoped - collate_plain) / (8 * medians["kornia"]),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"Python {platform.python_version()}, torch {torch.__version__}; "
        f"median of {rounds} interleaved rounds"
    )
    for name, value in medians.items():
        print(f"  {name:16} {value:10.2f} us per item")
    print(
        f"wrapper: {wrapper_us:.2f} us per item = {result['wrapper_share_of_kornia_item'] * 100:.2f} % "
        f"of a kornia item (target <= 3 %); wrapped/unwrapped kornia item "
        f"x{result['wrapped_vs_unwrapped_kornia_item']:.3f}"
    )
    print(
        f"loader, 2 workers: unwrapped {rate['unwrapped']:.1f} samples/s, SeededDataLoader "
        f"{rate['SeededDataLoader']:.1f} samples/s: x{result['loader_ratio']:.3f} (target >= 0.97)"
    )
    print(
        f"collate of 8 items: {collate_plain:.1f} us plain, {collate_scoped:.1f} us in the batch's scope: "
        f"+{collate_scoped - collate_plain:.1f} us per batch = "
        f"{result['collate_scope_share_of_8_kornia_items'] * 100:.3f} % of 8 kornia items"
    )
    for name, value in checkpoints.items():
        print(f"  per checkpoint, {name:18} {value:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
