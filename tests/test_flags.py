"""Determinism flags: set for the scope, every one restored exactly, frozen flags handled."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import flag_state, full_state

torch = pytest.importorskip("torch")

from deterministic import deterministic


def test_default_flags_applied_and_restored() -> None:
    """By default cudnn.deterministic is on and cudnn.benchmark off inside, as before outside."""
    torch.backends.cudnn.benchmark = True
    try:
        before = full_state()
        with deterministic(0):
            assert torch.backends.cudnn.deterministic is True
            assert torch.backends.cudnn.benchmark is False
        assert full_state() == before
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = False


@pytest.mark.parametrize(
    ("mode", "enabled", "warn_only"), [(True, True, False), ("warn", True, True), (False, False, False)]
)
def test_deterministic_algorithms_modes(mode: object, enabled: bool, warn_only: bool) -> None:
    """deterministic_algorithms True/'warn'/False set mode and warn_only; both are restored."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        before = flag_state()
        with deterministic(0, deterministic_algorithms=mode):  # type: ignore[arg-type]
            assert torch.are_deterministic_algorithms_enabled() is enabled
            assert torch.is_deterministic_algorithms_warn_only_enabled() is warn_only
        assert flag_state() == before
    finally:
        torch.use_deterministic_algorithms(False)


def test_all_flag_keywords() -> None:
    """Every flag keyword is applied in the scope and restored after."""
    before = full_state()
    with deterministic(
        0,
        cudnn_deterministic=False,
        cudnn_benchmark=True,
        cudnn_enabled=False,
        fill_uninitialized_memory=False,
    ):
        assert torch.backends.cudnn.deterministic is False
        assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cudnn.enabled is False
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert full_state() == before


def test_none_leaves_flags_untouched_but_changes_inside_are_undone() -> None:
    """None leaves a flag as it is; a flag the block changes is still restored on exit."""
    before = full_state()
    torch.backends.cudnn.benchmark = True
    try:
        with deterministic(0, cudnn_benchmark=None):
            assert torch.backends.cudnn.benchmark is True
            torch.backends.cudnn.enabled = False
        assert torch.backends.cudnn.enabled is True
    finally:
        torch.backends.cudnn.benchmark = False
    assert full_state() == before


@pytest.mark.parametrize(
    ("keywords", "error"),
    [
        ({"cudnn_deterministic": 1}, TypeError),
        ({"cudnn_benchmark": "no"}, TypeError),
        ({"deterministic_algorithms": "strict"}, ValueError),
        ({"deterministic_algorithms": 1}, TypeError),
        ({"fill_uninitialized_memory": 0.0}, TypeError),
    ],
)
def test_bad_flag_values(keywords: dict[str, object], error: type[Exception]) -> None:
    """Wrong flag values raise naming what is accepted, and change nothing."""
    before = full_state()
    with pytest.raises(error, match="True, False"):
        deterministic(0, **keywords)  # type: ignore[arg-type]
    assert full_state() == before


def test_frozen_global_flags_still_applied() -> None:
    """After torch.backends.disable_global_flags() the scope still sets and restores cudnn flags."""
    before = full_state()
    code = textwrap.dedent(
        """
        import torch
        from deterministic import deterministic
        torch.backends.disable_global_flags()
        before = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
        with deterministic(0, cudnn_benchmark=True, cudnn_deterministic=False):
            inside = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
        after = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
        print(before, inside, after)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "(False, False) (True, False) (False, False)"
    assert full_state() == before


def test_inductor_not_imported_nor_clobbered() -> None:
    """Enabling algorithms does not import torch._inductor, and leaves its flag alone."""
    code = textwrap.dedent(
        """
        import sys, torch
        from deterministic import deterministic
        with deterministic(0, deterministic_algorithms=True):
            pass
        imported = "torch._inductor.config" in sys.modules
        import torch._inductor.config as config
        config.deterministic = "mine"
        with deterministic(0, deterministic_algorithms=True):
            inside = config.deterministic
        print(imported, inside, config.deterministic)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False mine mine"
