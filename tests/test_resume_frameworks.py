"""Exact resume where users train: SIGKILL after a checkpoint, a fresh process, every step bit for bit.

Each run is ``tests/resume_runs.py`` in its own process (Lightning's DDP re-runs it for
rank 1): 24 samples whose ``__getitem__`` draws from ``random``, NumPy and torch, a model
with dropout, batches of 4, 3 epochs. A step's record is its loss as ``float.hex``, its
sample indices and a digest of its inputs, so equal records mean equal losses, samples
and augmentations.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")


def needs(*modules: str) -> None:
    """Skip unless the modules are installed; not imported here (importing Lightning draws from random)."""
    for module in modules:
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"{module} is not installed")


RUNS = Path(__file__).parent / "resume_runs.py"
# (kill after step, worker settings): in the middle of epoch 1, and at the end of epoch 1.
KILLS = ((8, ("--workers", "2", "--persistent")), (12, ("--workers", "2")))


def run(framework: str, workdir: Path, *flags: str, killed: bool = False) -> None:
    """Run one training process to its end (or to its SIGKILL)."""
    workdir.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, str(RUNS), framework, str(workdir), *flags],
        capture_output=True,
        text=True,
        timeout=600,
    )
    expected = -signal.SIGKILL if killed else 0
    assert result.returncode == expected, result.stderr[-4000:]


def steps(workdir: Path, rank: int = 0) -> list[str]:
    """The step records a run (and its resumption) wrote for a rank."""
    return (workdir / f"steps-{rank}.txt").read_text().splitlines()


def killed_and_resumed(framework: str, tmp_path: Path, *extra: str) -> None:
    """The uninterrupted run (no workers) against runs killed mid-epoch and at an epoch's end (2 workers)."""
    run(framework, tmp_path / "whole", *extra)
    reference = steps(tmp_path / "whole")
    assert len(reference) == 18
    for kill_after, workers in KILLS:
        workdir = tmp_path / f"killed-{kill_after}"
        run(framework, workdir, "--kill-after", str(kill_after), *workers, *extra, killed=True)
        assert steps(workdir) == reference[:kill_after]
        run(framework, workdir, "--resume", *workers, *extra)
        assert steps(workdir) == reference, (framework, kill_after)


@pytest.mark.torch
def test_plain_loop_resumes_bit_for_bit(tmp_path: Path) -> None:
    """A hand-written loop with SeededDataLoader and snapshot() resumes exactly after SIGKILL."""
    killed_and_resumed("plain", tmp_path)


@pytest.mark.torch
def test_accelerate_save_state_resumes_bit_for_bit(tmp_path: Path) -> None:
    """A SeededDataLoader prepared by accelerate, save_state/load_state: exact after SIGKILL."""
    needs("accelerate", "torchdata")
    killed_and_resumed("accelerate", tmp_path)


@pytest.mark.torch
def test_lightning_seeded_training_resumes_bit_for_bit(tmp_path: Path) -> None:
    """SeededTraining with the user's DataLoader(shuffle=True) and ckpt_path resumes exactly after SIGKILL."""
    needs("lightning")
    killed_and_resumed("lightning", tmp_path)


@pytest.mark.torch
def test_transformers_seed_training_resumes_bit_for_bit(tmp_path: Path) -> None:
    """seed_training with a tiny BERT and resume_from_checkpoint resumes exactly after SIGKILL."""
    needs("transformers")
    killed_and_resumed("transformers", tmp_path)


@pytest.mark.torch
@pytest.mark.parametrize("framework", ["lightning", "transformers"])
def test_without_the_one_line_resume_is_not_exact(tmp_path: Path, framework: str) -> None:
    """Measured: the same runs without deterministic's line resume on other data or another RNG stream."""
    needs("lightning" if framework == "lightning" else "transformers")
    run(framework, tmp_path / "whole", "--without")
    reference = steps(tmp_path / "whole")
    workdir = tmp_path / "killed"
    run(framework, workdir, "--kill-after", "8", "--without", killed=True)
    run(framework, workdir, "--resume", "--without")
    resumed = steps(workdir)
    assert resumed[:8] == reference[:8]
    assert resumed[8:] != reference[8:]


@pytest.mark.torch
def test_lightning_ddp_resumes_bit_for_bit_and_on_one_process(tmp_path: Path) -> None:
    """2-process DDP (gloo, use_distributed_sampler): disjoint shards, exact resume, the rest on 1 process."""
    needs("lightning")
    ddp = ("--devices", "2")
    run("lightning", tmp_path / "whole", *ddp)
    reference = [steps(tmp_path / "whole", rank) for rank in (0, 1)]
    assert [len(records) for records in reference] == [9, 9]
    for step in range(9):  # the ranks share each global batch: 8 different samples
        indices = [record.split()[1].split(",") for record in (reference[0][step], reference[1][step])]
        assert len(set(indices[0]) | set(indices[1])) == 8
    workdir = tmp_path / "killed"
    run("lightning", workdir, "--kill-after", "4", "--workers", "2", *ddp, killed=True)
    run("lightning", workdir, "--resume", "--workers", "2", *ddp)
    assert [steps(workdir, rank) for rank in (0, 1)] == reference
    # Killed on 2 processes in the middle of epoch 1, resumed on 1: exactly epoch 1's remaining samples.
    elastic = tmp_path / "elastic"
    run("lightning", elastic, "--kill-after", "4", *ddp, killed=True)
    run("lightning", elastic, "--resume")
    consumed = {int(index) for rank in (0, 1) for index in steps(elastic, rank)[3].split()[1].split(",")}
    resumed = [record.split()[1].split(",") for record in steps(elastic, 0)[4:]]
    epoch_rest = [int(index) for batch in resumed[:4] for index in batch]
    assert len(consumed) == 8
    assert sorted(consumed | set(epoch_rest)) == list(range(24)) and len(epoch_rest) == 16
    assert len(resumed) == 4 + 6  # the rest of epoch 1, then epoch 2 whole


@pytest.mark.torch
def test_lightning_ddp_with_a_seeded_loader_and_no_callback_shards_by_rank(tmp_path: Path) -> None:
    """A SeededDataLoader built before the process group, DDP, use_distributed_sampler: disjoint shards."""
    needs("lightning")
    run("lightning", tmp_path, "--devices", "2", "--seeded-loader", "--without")
    ranks = [steps(tmp_path, rank) for rank in (0, 1)]
    assert [len(records) for records in ranks] == [9, 9]  # every epoch trained, on both ranks
    for epoch in range(3):
        shards = [
            {int(i) for record in records[3 * epoch : 3 * epoch + 3] for i in record.split()[1].split(",")}
            for records in ranks
        ]
        assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == 24
