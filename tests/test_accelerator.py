"""Accelerator RNGs: every device saved and seeded, never initialised as a side effect.

Without a GPU these tests use the device-module double in ``cuda_double``; each has a
twin marked ``cuda`` that runs the same check against the real ``torch.cuda`` in a
fresh process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import full_state, outside_state_restored

torch = pytest.importorskip("torch")

from cuda_double import FakeCudaModule

from deterministic import deterministic


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCudaModule:
    """Replace torch.cuda by a two-device double for one test."""
    fake = FakeCudaModule(count=2)
    monkeypatch.setattr(torch, "cuda", fake)
    return fake


def test_uninitialised_device_is_never_initialised(fake_cuda: FakeCudaModule) -> None:
    """Entering and leaving a scope does not initialise CUDA or read device states."""
    with deterministic(1):
        pass
    assert not fake_cuda.is_initialized()
    assert fake_cuda.state_reads == 0


def test_block_that_initialises_gets_seeded_draws(fake_cuda: FakeCudaModule) -> None:
    """A block that initialises CUDA draws as after torch.cuda.manual_seed_all(seed)."""
    with deterministic(7):
        scoped = fake_cuda.draw_all()
    reference = FakeCudaModule(count=2)
    reference.manual_seed_all(7)
    assert scoped == reference.draw_all()


def test_after_exit_late_init_is_untouched(fake_cuda: FakeCudaModule) -> None:
    """A program that initialises CUDA after the scope gets what it would have got without it."""
    fake_cuda.manual_seed_all(5)  # a seed the program queued before the scope
    with deterministic(7):
        pass
    later = fake_cuda.draw_all()
    reference = FakeCudaModule(count=2)
    reference.manual_seed_all(5)
    assert later == reference.draw_all()


def test_initialised_inside_restored_to_what_init_would_give(fake_cuda: FakeCudaModule) -> None:
    """When the block initialised CUDA, exit leaves the devices as a scope-less init would."""
    fake_cuda.manual_seed_all(5)
    with deterministic(7):
        fake_cuda.draw(0)
    after = fake_cuda.draw_all()
    reference = FakeCudaModule(count=2)
    reference.manual_seed_all(5)
    assert after == reference.draw_all()


def test_nested_lazy_scopes(fake_cuda: FakeCudaModule) -> None:
    """An inner scope that initialises CUDA hands the outer scope its own fresh stream back."""
    with deterministic(1):
        with deterministic(2):
            inner = fake_cuda.draw_all()
        outer = fake_cuda.draw_all()
    reference = FakeCudaModule(count=2)
    reference.manual_seed_all(2)
    assert inner == reference.draw_all()
    reference = FakeCudaModule(count=2)
    reference.manual_seed_all(1)
    assert outer == reference.draw_all()


def test_initialised_devices_saved_seeded_restored(fake_cuda: FakeCudaModule) -> None:
    """With CUDA initialised, every device is seeded in the scope and restored exactly after."""
    fake_cuda.init()
    before = [g.get_state().tolist() for g in fake_cuda.default_generators]
    with deterministic(3):
        scoped = fake_cuda.draw_all()
    assert [g.get_state().tolist() for g in fake_cuda.default_generators] == before
    reference = FakeCudaModule(count=2)
    reference.init()
    reference.manual_seed_all(3)
    assert scoped == reference.draw_all()


def test_classic_recipe_matches_on_devices(fake_cuda: FakeCudaModule) -> None:
    """Device draws in a scope equal those after torch.manual_seed + cuda.manual_seed_all."""
    fake_cuda.init()
    with deterministic(11):
        scoped = fake_cuda.draw_all()
    with outside_state_restored():
        saved = [g.get_state() for g in fake_cuda.default_generators]
        torch.manual_seed(11)
        torch.cuda.manual_seed_all(11)
        classic = fake_cuda.draw_all()
        for generator, state in zip(fake_cuda.default_generators, saved, strict=True):
            generator.set_state(state)
    assert scoped == classic


def test_other_accelerators_use_the_same_device_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """An XPU-like device module is saved, seeded lazily and restored like CUDA."""
    fake_xpu = FakeCudaModule(count=3)
    monkeypatch.setattr(torch, "xpu", fake_xpu, raising=False)
    with deterministic(7):
        scoped = fake_xpu.draw_all()
    reference = FakeCudaModule(count=3)
    reference.manual_seed_all(7)
    assert scoped == reference.draw_all()
    before = [g.get_state().tolist() for g in fake_xpu.default_generators]
    with deterministic(8, sources=("xpu",)):
        fake_xpu.draw_all()
    assert [g.get_state().tolist() for g in fake_xpu.default_generators] == before


def test_bad_fork_skipped(fake_cuda: FakeCudaModule) -> None:
    """In a forked child that cannot use CUDA the devices are left alone."""
    fake_cuda.bad_fork = True
    with deterministic(3):
        pass
    assert fake_cuda._lazy_seed_tracker.get_calls() == []


def test_cuda_excluded_by_sources(fake_cuda: FakeCudaModule) -> None:
    """sources without 'cuda' leave the devices' queue alone."""
    with deterministic(3, sources=("torch",)):
        assert fake_cuda._lazy_seed_tracker.get_calls() == []


def test_cublas_variable_set_for_scope_when_uninitialised(
    fake_cuda: FakeCudaModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic algorithms set CUBLAS_WORKSPACE_CONFIG for the scope before CUDA starts."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    import os

    with deterministic(1, deterministic_algorithms=True):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with deterministic(1, deterministic_algorithms="warn"):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_cublas_warns_once_when_too_late(fake_cuda: FakeCudaModule, monkeypatch: pytest.MonkeyPatch) -> None:
    """With CUDA already initialised and no valid variable, one warning gives the exact fix."""
    from deterministic import _flags

    monkeypatch.setattr(_flags, "_cublas_warned", False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    fake_cuda.init()
    with pytest.warns(RuntimeWarning, match="CUBLAS_WORKSPACE_CONFIG=:4096:8 python"):
        with deterministic(1, deterministic_algorithms=True):
            pass
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with deterministic(1, deterministic_algorithms=True):
            pass


def _run_on_gpu(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@needs_gpu
def test_real_gpu_never_initialised_by_scope() -> None:
    """Real CUDA: a scope does not initialise CUDA (twin of the double's test)."""
    out = _run_on_gpu(
        """
        import torch
        from deterministic import deterministic
        with deterministic(1):
            pass
        print(torch.cuda.is_initialized())
        """
    )
    assert out == "False"


@pytest.mark.cuda
@needs_gpu
def test_real_gpu_lazy_seed_and_late_init() -> None:
    """Real CUDA: a block that initialises gets seeded draws; later inits are untouched."""
    out = _run_on_gpu(
        """
        import torch
        from deterministic import deterministic
        n = torch.cuda.device_count()
        def draw():
            return [torch.rand(4, device=f"cuda:{i}").tolist() for i in range(n)]
        with deterministic(7):
            scoped = draw()
        after = draw()
        torch.cuda.manual_seed_all(7)
        classic = draw()
        for i in range(n):
            torch.cuda.default_generators[i].manual_seed(torch.Generator().initial_seed())
        fresh = draw()
        print(scoped == classic, after == fresh)
        """
    )
    assert out == "True True"


@pytest.mark.cuda
@needs_gpu
def test_real_gpu_untouched_when_scope_never_initialises() -> None:
    """Real CUDA: a program initialising after a scope draws exactly as without the scope."""
    code = """
        import torch
        from deterministic import deterministic
        torch.cuda.manual_seed_all(5)
        if {use_scope}:
            with deterministic(7):
                pass
        print(torch.rand(4, device="cuda").tolist())
        """
    assert _run_on_gpu(code.format(use_scope=True)) == _run_on_gpu(code.format(use_scope=False))


@pytest.mark.cuda
@needs_gpu
def test_real_gpu_initialised_devices_restored() -> None:
    """Real CUDA: with CUDA initialised, every device is seeded and restored exactly."""
    out = _run_on_gpu(
        """
        import torch
        from deterministic import deterministic
        torch.cuda.init()
        n = torch.cuda.device_count()
        before = [torch.cuda.get_rng_state(i).tolist() for i in range(n)]
        with deterministic(3):
            scoped = [torch.rand(4, device=f"cuda:{i}").tolist() for i in range(n)]
        after = [torch.cuda.get_rng_state(i).tolist() for i in range(n)]
        torch.manual_seed(3)
        classic = [torch.rand(4, device=f"cuda:{i}").tolist() for i in range(n)]
        print(before == after, scoped == classic)
        """
    )
    assert out == "True True"


@pytest.mark.cuda
@needs_gpu
def test_real_gpu_cublas_variable_for_scope() -> None:
    """Real CUDA: deterministic algorithms set CUBLAS_WORKSPACE_CONFIG before CUDA starts."""
    out = _run_on_gpu(
        """
        import os, torch
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        from deterministic import deterministic
        with deterministic(0, deterministic_algorithms=True):
            inside = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
            a = torch.randn(64, 64, device="cuda")
            (a @ a).sum().item()
        print(inside, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        """
    )
    assert out == ":4096:8 None"


@pytest.mark.cuda
@needs_gpu
def test_real_gpu_nested_lazy_scopes() -> None:
    """Real CUDA: an inner scope initialising CUDA hands the outer scope its stream back."""
    out = _run_on_gpu(
        """
        import torch
        from deterministic import deterministic
        n = torch.cuda.device_count()
        def draw():
            return [torch.rand(4, device=f"cuda:{i}").tolist() for i in range(n)]
        with deterministic(1):
            with deterministic(2):
                inner = draw()
            outer = draw()
        torch.cuda.manual_seed_all(2)
        two = draw()
        torch.cuda.manual_seed_all(1)
        one = draw()
        print(inner == two, outer == one)
        """
    )
    assert out == "True True"


@pytest.mark.cuda
@needs_gpu
def test_real_gpu_bad_fork_skipped() -> None:
    """Real CUDA: a forked child of an initialised parent can still enter scopes."""
    out = _run_on_gpu(
        """
        import multiprocessing as mp, random, torch
        from deterministic import deterministic
        torch.cuda.init()
        def child(queue):
            with deterministic(3):
                queue.put((random.random(), torch.cuda.is_initialized()))
        queue = mp.get_context("fork").Queue()
        proc = mp.get_context("fork").Process(target=child, args=(queue,))
        proc.start(); value = queue.get(timeout=60); proc.join()
        print(value == (random.Random(3).random(), False), proc.exitcode)
        """
    )
    assert out == "True 0"


@pytest.mark.cuda
@needs_gpu
def test_real_gpu_cublas_warns_when_too_late() -> None:
    """Real CUDA: with CUDA up and no valid CUBLAS_WORKSPACE_CONFIG, one warning gives the fix."""
    out = _run_on_gpu(
        """
        import os, warnings, torch
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        from deterministic import deterministic
        torch.cuda.init()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(2):
                with deterministic(0, deterministic_algorithms=True):
                    pass
        print(sum("CUBLAS_WORKSPACE_CONFIG=:4096:8" in str(w.message) for w in seen))
        """
    )
    assert out == "1"


@pytest.mark.cuda
@needs_gpu
def test_real_gpu_excluded_by_sources() -> None:
    """Real CUDA: sources without 'cuda' leave initialised devices' streams running on."""
    out = _run_on_gpu(
        """
        import torch
        from deterministic import deterministic
        torch.cuda.init()
        state = torch.cuda.get_rng_state()
        with deterministic(3, sources=("torch",)):
            inside = torch.rand(4, device="cuda").tolist()
        torch.cuda.set_rng_state(state)
        print(inside == torch.rand(4, device="cuda").tolist())
        """
    )
    assert out == "True"


def test_fake_module_fixture_leaves_no_state() -> None:
    """The double itself touches no global state (guards the tests above)."""
    before = full_state()
    FakeCudaModule().draw_all()
    assert full_state() == before
