"""check --trace on faithful copies of real training programs: clean programs are reproducible."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

PROGRAMS = Path(__file__).with_name("trace_programs.py")


def check_trace(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deterministic", "check", "--trace", "--trace-dir", str(tmp_path)]
    command += ["--seed", "0", str(PROGRAMS), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize(
    "families",
    [
        pytest.param("lstm,dcgan,ema", id="lstm-gan_with_2_workers-ema_by_deepcopy"),
        pytest.param("gpt2,resnet,vit", id="transformer_lm-resnet-vit"),
    ],
)
def test_clean_programs_are_reproducible_under_check_trace(tmp_path: Path, families: str) -> None:
    """An LSTM, a GAN with 2 workers, EMA by deepcopy, GPT-2, ResNet and ViT raise no alarm."""
    if "gpt2" in families:
        pytest.importorskip("transformers")
    result = check_trace(tmp_path, "--family", families)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reproducible: 2 runs" in result.stdout
    assert "traces identical" in result.stdout or "traces match at every value read" in result.stdout


def test_worker_entropy_in_a_gan_is_reported_at_the_loop(tmp_path: Path) -> None:
    """Unseeded NumPy noise in the GAN's workers: the batch, its worker and how to find the line."""
    result = check_trace(tmp_path, "--family", "dcgan", "--inject", "worker-numpy")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DataLoader.__next__ (external-input)" in result.stdout
    assert "DataLoader worker" in result.stdout
    assert "num_workers=0" in result.stdout
    assert "queues.py" not in result.stdout and "Storage" not in result.stdout


def test_a_thread_count_difference_is_named_as_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LSTM run on 1 thread, then on 2: the report says so first and blames the thread count."""
    monkeypatch.setenv("TRACE_PROGRAMS_COUNTER", str(tmp_path / "runs"))
    result = check_trace(tmp_path, "--family", "lstm", "--inject", "threads")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[2] == "the runs ran in different environments:"
    assert "threads: 1 (run 1), 2 (run 2)" in result.stdout
    assert "(nondeterministic-op)" in result.stdout
    assert "likely the thread count" in result.stdout
