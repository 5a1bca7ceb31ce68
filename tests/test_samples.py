"""Per-sample streams: items depend only on (seed, epoch, index), with real DataLoaders and processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import full_state, outside_state_restored, run_gloo_pair

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from sample_data import Augmented, GlobalNoise

from deterministic import SampleKey, SeededDataLoader, SeededDataset, SeededSampler, derive_seed

TESTS = Path(__file__).parent


def per_sample(loader: Any, epochs: tuple[int, ...] = (0,)) -> dict[tuple[int, int], list[Any]]:
    """Every item a loader yields, keyed by (epoch, index), as plain lists."""
    items: dict[tuple[int, int], list[Any]] = {}
    for epoch in epochs:
        loader.set_epoch(epoch)
        for batch in loader:
            for index, image in zip(batch["index"].tolist(), batch["image"], strict=True):
                items[(epoch, index)] = image.tolist()
    return items


@pytest.mark.torch
def test_items_identical_across_loader_settings() -> None:
    """A key's item is the same for 0, 1 and 3 workers, persistent or not, batch 1 or 8, fork or spawn."""
    dataset = Augmented()
    reference = per_sample(SeededDataLoader(dataset, 7, batch_size=1), epochs=(0, 1))
    settings: list[dict[str, Any]] = [
        {"batch_size": 8, "num_workers": 1},
        {"batch_size": 8, "num_workers": 3, "persistent_workers": True},
        {"batch_size": 1, "num_workers": 3, "prefetch_factor": 4},
        {"batch_size": 8, "num_workers": 2, "multiprocessing_context": "spawn"},
    ]
    for setting in settings:
        with warnings.catch_warnings():
            # torch warns when workers outnumber the CPUs, which depends on the machine
            warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
            got = per_sample(SeededDataLoader(dataset, 7, **setting), epochs=(0, 1))
        assert got == reference, setting
    # A key's item does not depend on where in the epoch it is fetched, or on being fetched alone.
    wrapped = SeededDataset(dataset, 7)
    for key in ((0, 0), (1, 23), (1, 5)):
        assert wrapped[SampleKey(*key)]["image"].tolist() == reference[key]


@pytest.mark.torch
def test_epochs_samples_and_seeds_differ() -> None:
    """Different epochs, indices and seeds give different items; the same key gives the same item."""
    wrapped = SeededDataset(Augmented(kornia=False), 1)
    other = SeededDataset(Augmented(kornia=False), 2)
    same = wrapped[SampleKey(0, 3)]["image"]
    assert torch.equal(same, wrapped[SampleKey(0, 3)]["image"])
    assert not torch.equal(same, wrapped[SampleKey(1, 3)]["image"])
    assert not torch.equal(same, other[SampleKey(0, 3)]["image"])


@pytest.mark.torch
def test_two_processes_agree() -> None:
    """Two fresh processes with the same seed produce identical items."""
    code = textwrap.dedent(
        f"""
        import sys, hashlib
        sys.path.insert(0, {str(TESTS)!r})
        from sample_data import Augmented
        from deterministic import SeededDataLoader
        loader = SeededDataLoader(Augmented(), 11, batch_size=8, num_workers=2)
        digest = hashlib.sha256()
        for batch in loader:
            digest.update(batch["image"].numpy().tobytes())
        print(digest.hexdigest())
        """
    )
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert len(outputs) == 1


@pytest.mark.torch
def test_item_is_the_documented_scope() -> None:
    """ds[SampleKey(e, i)] is dataset[i] computed in deterministic(derive_seed(seed, "sample", e, i))."""
    from deterministic import deterministic

    dataset = Augmented(kornia=False)
    wrapped = SeededDataset(dataset, 5)
    wrapped.set_epoch(2)
    before = full_state()
    got = wrapped[4]["image"]
    assert full_state() == before
    with deterministic(derive_seed(5, "sample", 2, 4)):
        expected = dataset[4]["image"]
    assert torch.equal(got, expected)
    assert len(wrapped) == len(dataset) and wrapped.size == dataset.size  # attributes pass through


@pytest.mark.torch
def test_worker_init_fn_does_not_change_items() -> None:
    """A user's worker_init_fn that reseeds everything leaves SeededDataset items unchanged."""
    import random

    def reseed_everything(worker_id: int) -> None:
        random.seed(123)
        torch.manual_seed(123)

    dataset = Augmented(kornia=False)
    plain = per_sample(SeededDataLoader(dataset, 3, batch_size=4))
    reseeded = per_sample(
        SeededDataLoader(dataset, 3, batch_size=4, num_workers=2, worker_init_fn=reseed_everything)
    )
    assert reseeded == plain


@pytest.mark.torch
def test_sampler_order_split_padding_and_state() -> None:
    """The order is the seeded permutation, split by rank with DistributedSampler's padding; state resumes."""
    data = list(range(10))
    whole = SeededSampler(data, 4)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(derive_seed(4, "order", 0))).tolist()
    assert [key.index for key in whole] == order
    ranks = [SeededSampler(data, 4, num_replicas=3, rank=r) for r in range(3)]
    assert [len(sampler) for sampler in ranks] == [4, 4, 4]
    padded = order + order[:2]
    assert [[key.index for key in sampler] for sampler in ranks] == [padded[r::3] for r in range(3)]
    trimmed = SeededSampler(data, 4, num_replicas=3, rank=0, drop_last=True)
    assert len(trimmed) == 3
    assert [key.index for key in SeededSampler(data, 4, shuffle=False)] == data
    assert whole.state_dict() == {"epoch": 1, "samples": 0, "size": 10}  # handed out: the next epoch
    whole.set_epoch(0)
    stepping = iter(whole)
    taken = [next(stepping) for _ in range(3)]
    state = whole.state_dict()
    assert state == {"epoch": 0, "samples": 3, "size": 10}
    resumed = SeededSampler(data, 4)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    resumed.set_epoch(0)  # the same epoch keeps the position
    assert taken + list(resumed) == list(SeededSampler(data, 4))
    resumed.set_epoch(1)
    assert [key.epoch for key in resumed] == [1] * 10


@pytest.mark.torch
def test_bad_keys_and_arguments() -> None:
    """Bad keys are TypeError/IndexError; a sampler, batch_sampler or generator given is ValueError."""
    wrapped = SeededDataset(Augmented(kornia=False), 1)
    with pytest.raises(TypeError, match="SampleKey"):
        wrapped["0"]
    with pytest.raises(TypeError):
        wrapped[SampleKey(True, 0)]
    with pytest.raises(IndexError, match="out of range"):
        wrapped[SampleKey(0, 24)]
    with pytest.raises(TypeError, match="map-style"):
        SeededDataset(42, 1)
    for name, value in (("sampler", [0]), ("batch_sampler", [[0]]), ("generator", torch.Generator())):
        with pytest.raises(ValueError, match=f"{name}= cannot be given"):
            SeededDataLoader(Augmented(kornia=False), 1, **{name: value})
    with pytest.raises(ValueError, match="rank must lie"):
        SeededSampler(range(4), 1, num_replicas=2, rank=2)
    with pytest.raises(TypeError, match="'epoch', 'samples' and 'size'"):
        SeededDataLoader(Augmented(kornia=False), 1).load_state_dict({"epoch": 0})


@pytest.mark.torch
def test_iterator_creation_leaves_global_rng_alone() -> None:
    """Creating and running a SeededDataLoader's iterator never draws from the global torch RNG."""
    before = full_state()
    for _ in SeededDataLoader(Augmented(kornia=False), 1, batch_size=8, num_workers=2):
        pass
    assert full_state() == before


WORLD = textwrap.dedent(
    f"""
    import json, os, sys
    sys.path.insert(0, {str(TESTS)!r})
    import torch.distributed as dist
    from sample_data import Augmented
    from deterministic import SeededDataset, SeededSampler

    dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=2)
    sampler = SeededSampler(range(24), 9)   # replicas and rank from the process group
    wrapped = SeededDataset(Augmented(kornia=False), 9)
    items = {{f"{{key.epoch}}:{{key.index}}": wrapped[key]["image"].tolist() for key in sampler}}
    replicas = sampler.num_replicas
    dist.destroy_process_group()
    print(json.dumps({{"replicas": replicas, "items": items}}))
    """
)


@pytest.mark.torch
def test_world_size_invariance_under_gloo(tmp_path: Path) -> None:
    """Two ranks of a real gloo group together produce exactly the keys and items of one process."""
    script = tmp_path / "world.py"
    script.write_text(WORLD)
    (first, _), (second, _) = run_gloo_pair(script)
    assert first["replicas"] == second["replicas"] == 2
    combined = {**first["items"], **second["items"]}
    wrapped = SeededDataset(Augmented(kornia=False), 9)
    single = {
        f"{key.epoch}:{key.index}": wrapped[key]["image"].tolist() for key in SeededSampler(range(24), 9)
    }
    assert combined == single  # 24 items split 12 + 12: no padding needed


RESUME = textwrap.dedent(
    f"""
    import json, sys
    sys.path.insert(0, {str(TESTS)!r})
    import torch
    from sample_data import Augmented
    from deterministic import RNGState, SeededDataLoader, restore, snapshot

    mode, persistent, path = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Dropout(0.3),
        torch.nn.Flatten(), torch.nn.Linear(400, 2),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = SeededDataLoader(
        Augmented(kornia=False), 21, batch_size=8, num_workers=2, persistent_workers=persistent
    )
    start_epoch, losses, step = 0, [], 0
    if mode == "resume":
        checkpoint = torch.load(path, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        loader.load_state_dict(checkpoint["loader"])
        restore(RNGState.from_state_dict(checkpoint["rng"]))
        start_epoch, step = checkpoint["loader"]["epoch"], checkpoint["step"]
    for epoch in range(start_epoch, 3):
        loader.set_epoch(epoch)
        for batch in loader:
            labels = batch["index"] % 2
            loss = torch.nn.functional.cross_entropy(model(batch["image"]), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if mode == "part" and step == 4:  # the middle of the second epoch
                torch.save({{"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "loader": loader.state_dict(), "rng": snapshot().state_dict(),
                            "step": step}}, path)
                print(json.dumps(losses))
                sys.exit(0)
    print(json.dumps(losses))
    """
)


@pytest.mark.torch
@pytest.mark.parametrize("persistent", ["0", "1"])
def test_mid_epoch_resume_is_bit_identical(tmp_path: Path, persistent: str) -> None:
    """Stopping mid-epoch and resuming in a fresh process gives every following loss bit for bit."""
    script = tmp_path / "resume.py"
    script.write_text(RESUME)
    checkpoint = str(tmp_path / "checkpoint.pt")

    def run(mode: str) -> list[float]:
        result = subprocess.run(
            [sys.executable, str(script), mode, persistent, checkpoint],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        losses: list[float] = json.loads(result.stdout.strip().splitlines()[-1])
        return losses

    full = run("full")
    assert len(full) == 9
    part = run("part")
    resumed = run("resume")
    assert part == full[:4]
    assert resumed == full[4:]


def _loader_batches(loader: Any, skip: int = 0) -> list[list[float]]:
    batches = []
    for number, (x, _) in enumerate(loader):
        if number >= skip:
            batches.append(x.flatten().tolist())
    return batches


def _stop_and_resume(build: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """An epoch uninterrupted; and 3 batches, a state_dict, and the rest from a new loader loading it."""
    with outside_state_restored():
        uninterrupted = _loader_batches(build())
        first = build()
        iterator = iter(first)
        head = [next(iterator)[0].flatten().tolist() for _ in range(3)]
        state = first.state_dict()
        resumed = build()
        resumed.load_state_dict(state)
        tail = _loader_batches(resumed)
    return uninterrupted, head, tail


@pytest.mark.torch
def test_torchdata_stateful_loader_resumes_seeded_streams_exactly() -> None:
    """StatefulDataLoader over SeededDataset + SeededSampler resumes exactly through its own state_dict."""
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def build() -> Any:
        return stateful.StatefulDataLoader(
            SeededDataset(GlobalNoise(), 5), sampler=SeededSampler(range(32), 5), batch_size=4, num_workers=2
        )

    uninterrupted, head, tail = _stop_and_resume(build)
    assert head + tail == uninterrupted


@pytest.mark.torch
def test_torchdata_stateful_loader_alone_is_not_exact() -> None:
    """Measured: a plain dataset drawing from workers' global RNG does not resume exactly in it."""
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def build() -> Any:
        generator = torch.Generator().manual_seed(5)
        return stateful.StatefulDataLoader(
            GlobalNoise(), batch_size=4, shuffle=True, num_workers=2, generator=generator
        )

    uninterrupted, head, tail = _stop_and_resume(build)
    assert head == uninterrupted[:3]
    assert len(tail) == len(uninterrupted) - 3  # the order resumes at the right batch ...
    assert tail != uninterrupted[3:]  # ... but the workers' augmentation does not
