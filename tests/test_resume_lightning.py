"""Exact resume in Lightning, 1 process and 2-process DDP: SIGKILL after a checkpoint, every step bit for bit.

The runs and their records are described in ``test_resume_frameworks.py``; this is a file
of its own so that the slowest runs (DDP) go to another test process than the rest.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from resume_harness import killed_and_resumed, needs, run, steps


@pytest.mark.torch
def test_lightning_seeded_training_resumes_bit_for_bit(tmp_path: Path) -> None:
    """SeededTraining with the user's DataLoader(shuffle=True) and ckpt_path resumes exactly after SIGKILL."""
    needs("lightning")
    killed_and_resumed("lightning", tmp_path)


@pytest.mark.torch
def test_lightning_ddp_resumes_bit_for_bit_and_on_one_process(tmp_path: Path) -> None:
    """2-process DDP (gloo, use_distributed_sampler): disjoint shards, exact resumes, the rest on 1."""
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
    elastic = tmp_path / "elastic"
    shutil.copytree(workdir, elastic)
    assert [steps(workdir, rank) for rank in (0, 1)] == [records[:4] for records in reference]
    # Resumed, and killed again after epoch 1's last step (3 steps an epoch on each rank).
    run("lightning", workdir, "--resume", "--kill-after", "6", "--workers", "2", *ddp, killed=True)
    assert [steps(workdir, rank) for rank in (0, 1)] == [records[:6] for records in reference]
    run("lightning", workdir, "--resume", *ddp)
    assert [steps(workdir, rank) for rank in (0, 1)] == reference
    # Killed on 2 processes in the middle of epoch 1, resumed on 1: exactly epoch 1's remaining samples.
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
