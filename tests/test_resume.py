"""Exact resume of per-sample streams: epochs, positions, world sizes, collate, workers, real loaders."""

from __future__ import annotations

import contextlib
import copy
import json
import pickle
import random
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import full_state, outside_state_restored, run_gloo_pair

torch = pytest.importorskip("torch")

from sample_data import Augmented, GlobalNoise
from torch.utils.data import BatchSampler, DataLoader, IterableDataset

from deterministic import (
    RNGState,
    SampleKey,
    SeededDataLoader,
    SeededDataset,
    SeededSampler,
    restore,
    snapshot,
)

TESTS = Path(__file__).parent


def indices(loader: Any, batches: int | None = None) -> list[list[int]]:
    """The sample indices of each batch a loader yields (the first ``batches`` only, if given)."""
    got = []
    for batch in loader:
        got.append(batch["index"].tolist())
        if batches is not None and len(got) == batches:
            break
    return got


def flat(batches: list[list[int]]) -> list[int]:
    """The batches' indices in one list."""
    return [index for batch in batches for index in batch]


@contextlib.contextmanager
def quiet_workers() -> Iterator[None]:
    """Silence torch's warning about more workers than CPUs, which depends on the machine."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        yield


@pytest.mark.torch
def test_epoch_moves_on_when_handed_out_without_exhausting() -> None:
    """A loop that stops after len(loader) batches and sets the epoch on the sampler trains every epoch."""
    loader = SeededDataLoader(Augmented(kornia=False), 3, batch_size=4)
    steps, epochs_seen = 0, []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)  # what Lightning does: the sampler, not the loader
        iterator = iter(loader)
        for _ in range(len(loader)):  # and it never asks the iterator for the end
            batch = next(iterator)
            steps += 1
        epochs_seen.append(loader.epoch)
        del iterator, batch
    assert steps == 18
    assert epochs_seen == [1, 2, 3]  # each epoch's last batch moves the loader to the next


@pytest.mark.torch
def test_state_after_an_epoch_is_the_next_epoch() -> None:
    """A state saved right after an epoch reads the next epoch's start, and a resume goes on from there."""
    with outside_state_restored():
        loader = SeededDataLoader(Augmented(kornia=False), 3, batch_size=4)
        first = indices(loader)
        assert loader.state_dict() == {"epoch": 1, "samples": 0, "size": 24}
        second = indices(loader)  # iterated again without set_epoch: the next epoch
        resumed = SeededDataLoader(Augmented(kornia=False), 3, batch_size=4)
        resumed.load_state_dict({"epoch": 1, "samples": 0, "size": 24})
        assert indices(resumed) == second
    assert sorted(flat(first)) == sorted(flat(second)) == list(range(24))
    assert first != second  # a new order, not epoch 0 again


@pytest.mark.torch
def test_forgotten_set_epoch_advances_and_explicit_epochs_still_win() -> None:
    """Without set_epoch each full pass is the next epoch; set_epoch(0) replays epoch 0 from its start."""
    with outside_state_restored():
        loader = SeededDataLoader(Augmented(kornia=False), 3, batch_size=6, shuffle=False)
        passes = [
            [key for batch in loader for key in batch["image"].sum(dim=(1, 2, 3)).tolist()] for _ in range(2)
        ]
        assert passes[0] != passes[1]  # epoch 1's augmentations
        loader.set_epoch(0)
        assert [key for batch in loader for key in batch["image"].sum(dim=(1, 2, 3)).tolist()] == passes[0]


@pytest.mark.torch
def test_another_batch_size_resumes_with_exactly_the_remaining_samples() -> None:
    """A state from batch size 4 loaded with batch sizes 6 and 1 yields exactly the samples not consumed."""
    with outside_state_restored():
        loader = SeededDataLoader(Augmented(kornia=False), 8, batch_size=4)
        loader.set_epoch(2)
        head = flat(indices(loader, batches=3))
        state = loader.state_dict()
        assert state == {"epoch": 2, "samples": 12, "size": 24}
        for batch_size in (6, 1):
            resumed = SeededDataLoader(Augmented(kornia=False), 8, batch_size=batch_size)
            resumed.load_state_dict(state)
            resumed.set_epoch(2)
            tail = flat(indices(resumed))
            assert head + tail == SeededSampler(range(24), 8).order(2)


ELASTIC = textwrap.dedent(
    f"""
    import json, os, sys
    sys.path.insert(0, {str(TESTS)!r})
    import torch.distributed as dist
    from sample_data import Augmented
    from deterministic import SeededDataLoader

    loader = SeededDataLoader(Augmented(kornia=False), 9, batch_size=3)   # built before the group exists
    dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=2)
    loader.set_epoch(1)
    consumed = {{}}
    for number, batch in enumerate(loader):
        for index, image in zip(batch["index"].tolist(), batch["image"]):
            consumed[index] = image.tolist()
        if number == 1:   # 2 batches of 3 on each of 2 ranks: 12 samples
            break
    state = loader.state_dict()
    dist.destroy_process_group()
    print(json.dumps({{"state": state, "consumed": consumed}}))
    """
)


@pytest.mark.torch
def test_two_ranks_resumed_on_one_continue_with_the_remaining_samples(tmp_path: Path) -> None:
    """2 gloo ranks stopped mid-epoch, resumed on 1 (same global batch, and another): the rest, same items."""
    script = tmp_path / "elastic.py"
    script.write_text(ELASTIC)
    (first, _), (second, _) = run_gloo_pair(script)
    assert first["state"] == second["state"] == {"epoch": 1, "samples": 12, "size": 24}
    consumed = {int(index): image for rank in (first, second) for index, image in rank["consumed"].items()}
    assert len(consumed) == 12  # the ranks took disjoint samples
    reference = SeededDataset(Augmented(kornia=False), 9)
    with outside_state_restored():
        for batch_size in (6, 5):  # the same global batch, and another
            resumed = SeededDataLoader(Augmented(kornia=False), 9, batch_size=batch_size)
            resumed.load_state_dict(first["state"])
            resumed.set_epoch(1)
            rest: dict[int, Any] = {}
            for batch in resumed:
                for index, image in zip(batch["index"].tolist(), batch["image"], strict=True):
                    rest[index] = image.tolist()
            assert sorted(rest) == sorted(set(range(24)) - set(consumed))
            for index, image in {**consumed, **rest}.items():
                assert image == reference[SampleKey(1, index)]["image"].tolist()


def noisy_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A collate_fn that draws: a mixup-like weight from torch and a flip from random."""
    batch = torch.utils.data.default_collate(items)
    batch["image"] = batch["image"] * torch.rand(1) + (1.0 if random.random() < 0.5 else 0.0)
    return batch


@pytest.mark.torch
@pytest.mark.parametrize("workers", [0, 2])
def test_random_collate_is_exact_on_resume(workers: int) -> None:
    """A collate_fn that draws gives the same batches in a loader resumed mid-epoch in a later epoch."""

    def build() -> Any:
        return SeededDataLoader(
            Augmented(kornia=False), 4, batch_size=4, num_workers=workers, collate_fn=noisy_collate
        )

    def images(loader: Any, stop: int | None = None) -> list[list[float]]:
        got = []
        for batch in loader:
            got.append(batch["image"].sum(dim=(1, 2, 3)).tolist())
            if len(got) == stop:
                break
        return got

    with quiet_workers(), outside_state_restored():
        uninterrupted = build()
        indices(uninterrupted)  # epoch 0
        whole = images(uninterrupted)  # epoch 1
        first = build()
        indices(first)
        head = images(first, stop=2)
        resumed = build()
        resumed.load_state_dict(first.state_dict())
        tail = images(resumed)
    assert head + tail == whole


@pytest.mark.torch
def test_dataset_epoch_reaches_persistent_workers() -> None:
    """SeededDataset.set_epoch with a plain DataLoader and persistent workers changes every later epoch."""
    dataset = SeededDataset(Augmented(kornia=False), 6)
    with quiet_workers(), outside_state_restored():
        loader = DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
        for epoch in range(3):
            dataset.set_epoch(epoch)
            for batch in loader:
                for index, image in zip(batch["index"].tolist(), batch["image"], strict=True):
                    assert torch.equal(image, dataset[SampleKey(epoch, index)]["image"]), (epoch, index)


@pytest.mark.torch
def test_dataset_copies_carry_their_epoch_and_share_nothing() -> None:
    """A pickled or deep-copied SeededDataset keeps its epoch but not the shared memory."""
    dataset = SeededDataset(Augmented(kornia=False), 6)
    dataset.set_epoch(3)
    for copied in (copy.deepcopy(dataset), pickle.loads(pickle.dumps(dataset))):
        assert copied.epoch == 3
        copied.set_epoch(5)
        assert dataset.epoch == 3


@pytest.mark.torch
def test_torchdata_documented_line_leaves_the_global_stream_alone() -> None:
    """The documented StatefulDataLoader line (a generator) resumes without drawing from the global RNG."""
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def build(generator: bool) -> Any:
        extra = {"generator": torch.Generator()} if generator else {}
        return stateful.StatefulDataLoader(
            SeededDataset(GlobalNoise(), 5), sampler=SeededSampler(range(32), 5), batch_size=4, **extra
        )

    with outside_state_restored():
        torch.manual_seed(0)
        first = build(generator=True)
        iterator = iter(first)
        next(iterator)
        state, rng = first.state_dict(), snapshot()
        draws = {}
        for generator in (False, True):
            resumed = build(generator)
            resumed.load_state_dict(state)
            restore(rng)
            next(iter(resumed))
            draws[generator] = torch.rand(1).item()
        restore(rng)
        expected = torch.rand(1).item()
    assert draws[True] == expected
    assert draws[False] != expected  # measured: without a generator the iterator draws from the global RNG


@pytest.mark.torch
@pytest.mark.parametrize("workers", [0, 2])
def test_torchdata_with_a_batch_sampler_resumes_exactly(workers: int) -> None:
    """StatefulDataLoader with a BatchSampler(SeededSampler) resumes exactly, prefetching workers too."""
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def build() -> Any:
        sampler = BatchSampler(SeededSampler(range(24), 5), batch_size=4, drop_last=False)
        return stateful.StatefulDataLoader(
            SeededDataset(Augmented(kornia=False), 5),
            batch_sampler=sampler,
            num_workers=workers,
            generator=torch.Generator(),
        )

    with quiet_workers(), outside_state_restored():
        uninterrupted = indices(build())
        first = build()
        head = indices(first, batches=3)
        resumed = build()
        resumed.load_state_dict(first.state_dict())
        tail = indices(resumed)
    assert head + tail == uninterrupted


@pytest.mark.torch
def test_plain_loader_sampler_state_runs_ahead_under_workers() -> None:
    """Documented limit: a plain DataLoader's workers prefetch, so the sampler's state runs ahead."""
    sampler = SeededSampler(range(24), 5)
    with quiet_workers(), outside_state_restored():
        loader = DataLoader(
            SeededDataset(Augmented(kornia=False), 5), sampler=sampler, batch_size=2, num_workers=2
        )
        iterator = iter(loader)
        next(iterator)
        assert sampler.state_dict()["samples"] > 2
        del iterator


class Stream(IterableDataset):  # type: ignore[type-arg]
    """An iterable dataset: no index to key a sample by."""

    def __iter__(self) -> Any:
        return iter(range(4))


@pytest.mark.torch
def test_iterable_dataset_is_refused_at_construction() -> None:
    """An IterableDataset is a TypeError naming what to do instead, for the dataset and for the loader."""
    for build in (lambda: SeededDataset(Stream(), 1), lambda: SeededDataLoader(Stream(), 1)):
        with pytest.raises(TypeError, match="IterableDataset.*explicit key"):
            build()


@pytest.mark.torch
def test_states_of_the_previous_format_and_bad_states() -> None:
    """Earlier states are read with the current batch and world size; a wrong size or bad value is refused."""
    loader = SeededDataLoader(Augmented(kornia=False), 3, batch_size=4)
    before = loader.state_dict()
    loader.load_state_dict({"epoch": 2, "batches": 3})
    assert loader.state_dict() == {"epoch": 2, "samples": 12, "size": 24}
    sampler = SeededSampler(range(24), 3, num_replicas=2, rank=0)
    sampler.load_state_dict({"epoch": 1, "position": 5})
    assert sampler.state_dict() == {"epoch": 1, "samples": 10, "size": 24}
    loader.load_state_dict(before)
    for bad, error, match in (
        ({"epoch": 0, "samples": 4, "size": 30}, ValueError, "dataset of 30 samples"),
        ({"epoch": 0, "samples": 25, "size": 24}, ValueError, "beyond"),
        ({"epoch": -1, "samples": 0, "size": 24}, ValueError, "at least 0"),
        ({"epoch": 0, "samples": "1", "size": 24}, TypeError, "samples must be an int"),
        ([0, 1], TypeError, "is a dict"),
    ):
        with pytest.raises(error, match=match):
            loader.load_state_dict(bad)  # type: ignore[arg-type]
        assert loader.state_dict() == before
    loader.load_state_dict({"epoch": 0, "samples": 24, "size": 24})  # all consumed: the next epoch
    assert loader.state_dict() == {"epoch": 1, "samples": 0, "size": 24}


@pytest.mark.torch
def test_ranks_resolve_when_the_epoch_starts() -> None:
    """num_replicas/rank left at None are read when an epoch's iterator starts, not at construction."""
    sampler = SeededSampler(range(10), 2)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    explicit = SeededSampler(range(10), 2, num_replicas=2, rank=1)
    assert [key.index for key in explicit] == explicit.order(0)[1::2]
    with pytest.raises(ValueError, match="rank must lie"):
        SeededSampler(range(10), 2, rank=1).num_replicas


@pytest.mark.torch
def test_resume_restores_everything_after_iteration() -> None:
    """Iterating and loading states leaves every global RNG state as it was."""
    before = full_state()
    loader = SeededDataLoader(Augmented(kornia=False), 3, batch_size=4, collate_fn=noisy_collate)
    indices(loader, batches=2)
    loader.load_state_dict(json.loads(json.dumps(loader.state_dict())))
    indices(loader)
    restore(RNGState.from_state_dict(snapshot().state_dict()))
    assert full_state() == before


@pytest.mark.torch
@pytest.mark.parametrize("workers", [0, 2])
def test_torchdata_resumes_at_an_epoch_boundary(workers: int) -> None:
    """A StatefulDataLoader state saved after a whole epoch resumes with the next epoch, from its start."""
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def build() -> Any:
        return stateful.StatefulDataLoader(
            SeededDataset(Augmented(kornia=False), 5),
            sampler=SeededSampler(range(24), 5),
            batch_size=4,
            num_workers=workers,
            generator=torch.Generator(),
        )

    with quiet_workers(), outside_state_restored():
        uninterrupted = build()
        indices(uninterrupted)
        second_epoch = indices(uninterrupted)
        first = build()
        indices(first)
        resumed = build()
        resumed.load_state_dict(first.state_dict())
        assert indices(resumed) == second_epoch
    assert flat(second_epoch) == SeededSampler(range(24), 5).order(1)


class Unpicklable:
    """A dataset that cannot travel to a spawned worker (it holds a lambda)."""

    def __init__(self) -> None:
        self.transform = lambda value: value

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        return index


@pytest.mark.torch
def test_a_loader_that_fails_to_start_leaves_its_sampler_counting() -> None:
    """When starting the workers fails, the next iteration of the sampler by anything else counts itself."""
    loader = SeededDataLoader(Unpicklable(), 3, batch_size=2, num_workers=1, multiprocessing_context="spawn")
    with quiet_workers(), outside_state_restored(), pytest.raises(Exception, match="pickle"):
        next(iter(loader))
    keys = iter(loader.sampler)
    next(keys)
    assert loader.sampler.state_dict()["samples"] == 1
    assert loader.state_dict() == loader.sampler.state_dict()
