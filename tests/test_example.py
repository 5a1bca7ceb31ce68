"""The README's example: a seeded evaluation block leaves training bit-identical."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "eval_isolation.py"


def test_eval_isolation_example() -> None:
    """Scoped evaluation keeps training losses identical; the classic recipe does not."""
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].endswith("bit-identical to no evaluation: True")
    assert lines[2].endswith("bit-identical to no evaluation: False")
