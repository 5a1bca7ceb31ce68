"""`python -m deterministic selftest`: CPU probes here, accelerator probe logic on the double, GPU twins."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from conftest import full_state, outside_state_restored

torch = pytest.importorskip("torch")

from cuda_double import FakeCudaModule

from deterministic import _selftest

CUDA_PROBES = [probe.name for probe in _selftest.PROBES if "cuda" in probe.devices]


class DoubleDevice(_selftest.Device):
    """The probes' device adapter over the CUDA test double (its generators are real CPU generators)."""

    def __init__(self, fake: FakeCudaModule) -> None:
        self.kind = "cuda"
        self.torch = torch
        self.module = fake

    def draw(self, device: int = 0) -> list[float]:
        return self.module.draw(device)

    def states(self) -> list[list[int]]:
        self.module.init()
        return [generator.get_state().tolist() for generator in self.module.default_generators]

    def fresh_states(self, seed: int | None = None) -> list[list[int]]:
        generators = [torch.Generator() for _ in range(self.count())]
        if seed is not None:
            for generator in generators:
                generator.manual_seed(seed)
        return [generator.get_state().tolist() for generator in generators]


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> DoubleDevice:
    """torch.cuda replaced by a two-device double, wrapped in the probes' adapter."""
    fake = FakeCudaModule(2)
    monkeypatch.setattr(torch, "cuda", fake)
    return DoubleDevice(fake)


def selftest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deterministic", "selftest", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.torch
def test_selftest_on_this_machine() -> None:
    """CPU probes pass; accelerator probes that cannot run here are skipped with the reason; exit 0."""
    result = selftest("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is True
    by_device: dict[str, list[dict[str, Any]]] = {}
    for probe in report["probes"]:
        by_device.setdefault(probe["device"], []).append(probe)
    cpu_probes = {probe["probe"] for probe in by_device["cpu"]}
    assert cpu_probes == {"scope", "snapshot", "compile", "batch-invariant"}
    assert all(probe["result"] == "pass" for probe in by_device["cpu"])
    if not torch.cuda.is_available():
        assert all(
            probe["result"] == "skip" and "no CUDA device" in probe["detail"] for probe in by_device["cuda"]
        )
        assert {probe["probe"] for probe in by_device["cuda"]} == set(CUDA_PROBES)


@pytest.mark.torch
def test_selftest_table_and_device_choice() -> None:
    """The table lists probe, device, result and time, and --device limits the accelerators probed."""
    result = selftest("--device", "mps")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["probe", "device", "result", "seconds"]
    assert all(" cuda " not in line and " xpu " not in line for line in lines)
    assert lines[-1].startswith("probes: ")
    bad = selftest("--device", "tpu")
    assert bad.returncode == 2
    assert "invalid choice: 'tpu'" in bad.stderr


@pytest.mark.torch
def test_failed_probe_is_reported_not_raised() -> None:
    """A probe that fails gives result "fail" with the reason instead of raising."""
    if torch.cuda.is_available():
        pytest.skip("the graphs probe can run here")
    report = _selftest.run_probe("graphs", "cuda")
    assert report["result"] == "fail"
    assert report["detail"]


@pytest.mark.torch
def test_lazy_seed_probe_on_the_double(double: DoubleDevice) -> None:
    """The lazy-seeding probe's logic passes against the double (no GPU needed)."""
    with outside_state_restored():  # the probe runs the classic recipe globally, as in its own process
        assert "classic draws" in _selftest.probe_lazy_seed("cuda", double)


@pytest.mark.torch
def test_restore_probe_on_the_double(double: DoubleDevice) -> None:
    """The restore probe's logic passes against the double: states and flags after exit, error, suspension."""
    before = full_state()
    assert "restored after exit" in _selftest.probe_restore_exact("cuda", double)
    assert full_state() == before


@pytest.mark.torch
def test_no_init_probe_on_the_double(double: DoubleDevice) -> None:
    """The no-initialisation probe's logic passes against the double, and fails when a draw initialises."""
    assert "uninitialised" in _selftest.probe_no_init("cuda", double)
    double.draw()
    with pytest.raises(AssertionError, match="initialised before the probe"):
        _selftest.probe_no_init("cuda", double)


@pytest.mark.cuda
@pytest.mark.parametrize("name", CUDA_PROBES)
def test_cuda_probe(name: str) -> None:
    """Each CUDA probe passes on a real GPU, in a fresh process, as selftest runs it."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    report = _selftest._in_fresh_process(name, "cuda")
    assert report["result"] == "pass", report["detail"]
