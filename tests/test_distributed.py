"""Rank-aware seeds, with a real two-process gloo group for the collectives."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import run_gloo_pair

from deterministic import derive_seed, rank_seed, shared_seed

RANKS = textwrap.dedent(
    """
    import json, logging, os, sys
    import torch.distributed as dist
    from deterministic import derive_seed, rank_seed, shared_seed

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2)
    report = {
        "rank_seed": rank_seed(42),
        "formula": rank_seed(42) == derive_seed(42, "rank", rank),
        "shared": shared_seed(7 + rank),  # ranks disagree; rank 0's value wins
        "fresh": shared_seed(),
    }
    dist.destroy_process_group()
    print(json.dumps(report))
    """
)


def test_rank_and_shared_seeds_under_gloo(tmp_path: Path) -> None:
    """rank_seed differs across ranks; shared_seed agrees, fresh or not, and is logged."""
    pytest.importorskip("torch")
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    results = run_gloo_pair(script)
    reports = [report for report, _ in results]
    logs = [log for _, log in results]
    assert reports[0]["rank_seed"] != reports[1]["rank_seed"]
    assert all(report["formula"] for report in reports)
    assert reports[0]["shared"] == reports[1]["shared"] == 7
    assert reports[0]["fresh"] == reports[1]["fresh"]
    assert all(f"shared seed {reports[0]['fresh']}" in log for log in logs)


def test_rank_seed_formula_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """rank_seed(s, r) is derive_seed(s, "rank", r); the rank defaults to $RANK, then 0."""
    assert rank_seed(42, 3) == derive_seed(42, "rank", 3)
    assert rank_seed("run-a", 0) == derive_seed(derive_seed("run-a"), "rank", 0)
    monkeypatch.delenv("RANK", raising=False)
    assert rank_seed(42) == rank_seed(42, 0)
    monkeypatch.setenv("RANK", "5")
    assert rank_seed(42) == rank_seed(42, 5)
    monkeypatch.setenv("RANK", "five")
    with pytest.raises(ValueError, match="RANK"):
        rank_seed(42)


def test_rank_seed_bad_input() -> None:
    """None seeds, bool or negative ranks are rejected with clear errors."""
    with pytest.raises(TypeError, match="needs a seed"):
        rank_seed(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rank must be an int"):
        rank_seed(1, True)
    with pytest.raises(ValueError, match="non-negative"):
        rank_seed(1, -1)


def test_shared_seed_without_process_group() -> None:
    """Without a process group shared_seed returns the local effective seed (fresh for None)."""
    assert shared_seed(5) == 5
    assert shared_seed("x") == derive_seed("x")
    assert 0 <= shared_seed() < 2**32


SYNCHRONIZE = textwrap.dedent(
    """
    import json, os, random, warnings
    import numpy as np
    import torch
    import torch.distributed as dist
    from deterministic import register_source, synchronize

    warnings.simplefilter("error")
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2)
    counter = {"value": 100 * rank}
    register_source(
        "counter", lambda: counter["value"], lambda seed: None, lambda state: counter.update(value=state)
    )
    random.seed(rank)
    np.random.seed(rank)
    torch.manual_seed(rank)
    np.random.randn()  # a cached Gaussian on rank 1 travels too
    before = [random.getstate()[1][:3], np.random.get_state()[1][:3].tolist(), torch.rand(1).item()]
    synchronize(src=1)
    after = [random.random(), np.random.randn(2).tolist(), torch.rand(2).tolist(), counter["value"]]
    dist.destroy_process_group()
    print(json.dumps({"after": after}))
    """
)


def test_synchronize_gives_every_rank_the_source_ranks_states(tmp_path: Path) -> None:
    """synchronize(src=1) silently installs rank 1's random, NumPy, torch and registered states everywhere."""
    pytest.importorskip("torch")
    script = tmp_path / "sync.py"
    script.write_text(SYNCHRONIZE)
    (first, first_log), (second, second_log) = run_gloo_pair(script)
    assert first["after"] == second["after"]
    assert first["after"][-1] == 100  # rank 1's registered source state
    assert "Warning" not in first_log + second_log


def test_synchronize_without_process_group_changes_nothing() -> None:
    """Without a process group synchronize() is a no-op."""
    from conftest import full_state

    from deterministic import synchronize

    before = full_state()
    synchronize()
    assert full_state() == before
