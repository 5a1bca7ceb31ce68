"""DataLoader workers, explicit scope generators and registered sources, with real torch."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import full_state, outside_state_restored

torch = pytest.importorskip("torch")

from deterministic import (
    dataloader_kwargs,
    derive_seed,
    deterministic,
    register_source,
    seed_worker,
    unregister_source,
)
from deterministic._loading import worker_seed
from deterministic._sources import SOURCES

DATASET = textwrap.dedent(
    """
    import random
    import numpy as np
    import torch
    from torch.utils.data import Dataset, get_worker_info
    from deterministic import register_source

    # A library's own module-level generator, registered so workers seed it too.
    LIBRARY_RNG = random.Random(12345)
    register_source(
        "library",
        capture=lambda: [list(LIBRARY_RNG.getstate()[1]), LIBRARY_RNG.getstate()[2]],
        seed=LIBRARY_RNG.seed,
        restore=lambda state: LIBRARY_RNG.setstate((3, tuple(state[0]), state[1])),
    )

    class Noisy(Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, index):
            info = get_worker_info()
            return {
                "index": index,
                "worker": -1 if info is None else info.id,
                "random": random.random(),
                "numpy": float(np.random.rand()),
                "torch": torch.rand(1).item(),
                "library": LIBRARY_RNG.random(),
            }
    """
)

RUN = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch.utils.data import DataLoader
    from deterministic import dataloader_kwargs
    from noisy_dataset import Noisy

    def collate(items):
        return items

    if __name__ == "__main__":
        context, persistent = sys.argv[1], sys.argv[2] == "persistent"
        loader = DataLoader(
            Noisy(), batch_size=4, shuffle=True, num_workers=2, collate_fn=collate,
            multiprocessing_context=context, persistent_workers=persistent, **dataloader_kwargs(0),
        )
        epochs = [[item for batch in loader for item in batch] for _ in range(2)]
        print(json.dumps(epochs))
    """
)


def _load(tmp_path: Path, context: str, persistent: bool) -> list[list[dict[str, Any]]]:
    (tmp_path / "noisy_dataset.py").write_text(DATASET)
    (tmp_path / "run.py").write_text(RUN)
    result = subprocess.run(
        [sys.executable, "run.py", context, "persistent" if persistent else "fresh"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    epochs: list[list[dict[str, Any]]] = json.loads(result.stdout)
    return epochs


@pytest.mark.parametrize(
    ("context", "persistent"),
    [("fork", False), ("spawn", False), ("fork", True)],
    ids=["fork", "spawn", "persistent"],
)
def test_workers_reproducible_and_distinct(tmp_path: Path, context: str, persistent: bool) -> None:
    """Two runs give identical batches; workers, epochs and sources differ from each other."""
    first = _load(tmp_path, context, persistent)
    second = _load(tmp_path, context, persistent)
    assert first == second
    epoch_one, epoch_two = first
    assert sorted(item["index"] for item in epoch_one) == list(range(16))
    assert [item["index"] for item in epoch_one] != [item["index"] for item in epoch_two]
    for key in ("random", "numpy", "torch", "library"):
        by_worker = {w: [i[key] for i in epoch_one if i["worker"] == w] for w in (0, 1)}
        assert by_worker[0] and by_worker[1]
        assert set(by_worker[0]).isdisjoint(by_worker[1]), key
        assert {i[key] for i in epoch_one}.isdisjoint({i[key] for i in epoch_two}), key


def test_worker_seed_formula_and_ranks() -> None:
    """worker_seed is derive_seed(base, "worker", id, rank): distinct across workers and ranks."""
    assert worker_seed(10, 1, 0) == derive_seed(10, "worker", 1, 0)
    seeds = {worker_seed(base, worker, rank) for base in (7, 8) for worker in range(4) for rank in range(4)}
    assert len(seeds) == 32
    assert worker_seed(7, 1, 0) != worker_seed(8, 0, 0)  # base + id arithmetic would collide


def test_seed_worker_outside_worker_is_an_error() -> None:
    """seed_worker() refuses to run outside a DataLoader worker, changing nothing."""
    before = full_state()
    with pytest.raises(RuntimeError, match="worker_init_fn"):
        seed_worker(0)
    assert full_state() == before


def test_thread_worker_leaves_globals_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a thread-based worker (worker_method="thread") seed_worker changes no global state."""
    from torch.utils.data._utils import worker

    info = worker.WorkerInfo(id=0, num_workers=2, seed=123, dataset=None, worker_method="thread")
    monkeypatch.setattr(worker, "_worker_info", info)
    before = full_state()
    seed_worker(0)
    assert full_state() == before


def test_dataloader_kwargs_generator() -> None:
    """The generator is seeded with the seed, or with derive_seed(seed, "epoch", epoch)."""
    kwargs = dataloader_kwargs(5)
    assert kwargs["worker_init_fn"] is seed_worker
    assert kwargs["generator"].initial_seed() == 5
    assert dataloader_kwargs(5, epoch=2)["generator"].initial_seed() == derive_seed(5, "epoch", 2)
    assert (
        dataloader_kwargs(5, epoch=1)["generator"].initial_seed()
        != dataloader_kwargs(5, epoch=2)["generator"].initial_seed()
    )
    with pytest.raises(ValueError, match="non-negative"):
        dataloader_kwargs(5, epoch=-1)
    with pytest.raises(TypeError, match="epoch"):
        dataloader_kwargs(5, epoch=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be"):
        dataloader_kwargs(1.5)  # type: ignore[arg-type]


def test_scope_generators() -> None:
    """A scope's explicit generators are seeded from derive_seed(scope.seed, name[, device])."""
    before = full_state()
    with deterministic(9) as scope:
        torch_values = torch.rand(3, generator=scope.torch_generator()).tolist()
        numpy_values = scope.numpy_generator().random(3).tolist()
        random_values = [scope.random().random() for _ in range(2)]
    assert full_state() == before
    assert (
        torch_values
        == torch.rand(3, generator=torch.Generator().manual_seed(derive_seed(9, "torch", "cpu"))).tolist()
    )
    assert numpy_values == np.random.default_rng(derive_seed(9, "numpy")).random(3).tolist()
    assert random_values == [random.Random(derive_seed(9, "random")).random()] * 2


@pytest.fixture
def library_rng() -> Any:
    """A registered module-level generator, unregistered after the test."""
    rng = random.Random(1)
    register_source("test-library", capture=rng.getstate, seed=rng.seed, restore=rng.setstate)
    yield rng
    unregister_source("test-library")


def test_registered_source_in_scopes(library_rng: random.Random) -> None:
    """A registered source is seeded in scopes, restored after, and valid in sources=."""
    state = library_rng.getstate()
    with deterministic(4):
        inside = library_rng.random()
    assert library_rng.getstate() == state
    assert inside == random.Random(4).random()
    with deterministic(4, sources=("test-library",)):
        assert library_rng.random() == inside


def test_register_source_validation(library_rng: random.Random) -> None:
    """Duplicates and malformed registrations are rejected with clear errors."""
    with pytest.raises(ValueError, match="already registered"):
        register_source("test-library", library_rng.getstate, library_rng.seed, library_rng.setstate)
    with pytest.raises(ValueError, match="already registered"):
        register_source("numpy", library_rng.getstate, library_rng.seed, library_rng.setstate)
    with pytest.raises(TypeError, match="seed must be callable"):
        register_source("other", library_rng.getstate, 5, library_rng.setstate)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a str"):
        register_source(3, library_rng.getstate, library_rng.seed, library_rng.setstate)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no source named 'random'"):
        unregister_source("random")
    assert "other" not in SOURCES


def test_registered_plain_source_in_snapshots() -> None:
    """A registered source whose states are plain data is part of snapshots."""
    from deterministic import RNGState, restore, snapshot

    counter = {"value": 0}
    register_source(
        "counter",
        capture=lambda: counter["value"],
        seed=lambda seed: counter.update(value=seed),
        restore=lambda state: counter.update(value=state),
    )
    try:
        counter["value"] = 17
        state = RNGState.from_state_dict(json.loads(json.dumps(snapshot().state_dict())))
        assert state.state_dict()["sources"]["counter"] == {"state": 17}
        counter["value"] = 3
        with outside_state_restored():
            restore(state)
        assert counter["value"] == 17
    finally:
        unregister_source("counter")
