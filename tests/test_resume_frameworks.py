"""Exact resume where users train: SIGKILL after a checkpoint, a fresh process, every step bit for bit.

Each run is ``tests/resume_runs.py`` in its own process (Lightning's DDP re-runs it for
rank 1): 24 samples whose ``__getitem__`` draws from ``random``, NumPy and torch, a model
with dropout, batches of 4, 3 epochs. A step's record is its loss as ``float.hex``, its
sample indices and a digest of its inputs, so equal records mean equal losses, samples
and augmentations.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from resume_harness import killed_and_resumed, needs, run, steps


@pytest.mark.torch
def test_plain_loop_resumes_bit_for_bit(tmp_path: Path) -> None:
    """A hand-written loop with SeededDataLoader and snapshot() resumes exactly after SIGKILL."""
    killed_and_resumed("plain", tmp_path)


@pytest.mark.torch
def test_accelerate_save_state_resumes_bit_for_bit(tmp_path: Path) -> None:
    """A SeededDataLoader prepared by accelerate, save_state/load_state: exact after SIGKILL."""
    needs("accelerate", "torchdata")
    killed_and_resumed("accelerate", tmp_path, last_workers="2")  # torchdata keeps the worker count


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
