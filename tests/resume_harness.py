"""Running ``resume_runs.py`` for the resume tests: a run, its records, the kill-and-resume check."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def needs(*modules: str) -> None:
    """Skip unless the modules are installed; not imported here (importing Lightning draws from random)."""
    for module in modules:
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"{module} is not installed")


RUNS = Path(__file__).parent / "resume_runs.py"


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


def killed_and_resumed(framework: str, tmp_path: Path, *, last_workers: str = "0") -> None:
    """The uninterrupted run against one killed in the middle of epoch 1 and, resumed, at its end.

    The uninterrupted run has no workers; the three processes of the interrupted one have 2
    persistent workers, 2 workers, and ``last_workers``: the data must not depend on them.
    """
    run(framework, tmp_path / "whole")
    reference = steps(tmp_path / "whole")
    assert len(reference) == 18
    workdir = tmp_path / "killed"
    run(framework, workdir, "--kill-after", "8", "--workers", "2", "--persistent", killed=True)
    assert steps(workdir) == reference[:8]
    run(framework, workdir, "--resume", "--kill-after", "12", "--workers", "2", killed=True)
    assert steps(workdir) == reference[:12], (framework, "resumed in the middle of epoch 1")
    run(framework, workdir, "--resume", "--workers", last_workers)
    assert steps(workdir) == reference, (framework, "resumed at the end of epoch 1")
