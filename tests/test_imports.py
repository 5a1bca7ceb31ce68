"""Optional modules: nothing heavy imported, late imports seeded, everything works without torch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def run(code: str) -> str:
    """Run code in a fresh interpreter and return its stripped stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_loads_neither_torch_nor_numpy() -> None:
    """`import deterministic` imports no torch, NumPy, Lightning, transformers or slow stdlib module."""
    out = run(
        """
        import sys, deterministic
        heavy = ("torch", "numpy", "numpy.random", "wrapt", "asyncio", "typing", "inspect",
                 "logging", "hashlib", "threading", "ctypes", "json", "random",
                 "lightning", "pytorch_lightning", "transformers")
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    assert out == "[]"


@needs_torch
def test_torch_imported_inside_scope_is_seeded_and_restored() -> None:
    """Torch first imported inside a scope draws seeded; after exit it is in its just-imported state."""
    out = run(
        """
        import wrapt
        from deterministic import deterministic
        at_import = {}
        def remember(torch):
            at_import["state"] = torch.get_rng_state()
            at_import["flag"] = torch.backends.cudnn.deterministic
        wrapt.register_post_import_hook(remember, "torch")
        with deterministic(21):
            import torch
            inside = torch.rand(3).tolist()
            flag_inside = torch.backends.cudnn.deterministic
        restored = torch.equal(torch.get_rng_state(), at_import["state"])
        torch.manual_seed(21)
        seeded = torch.rand(3).tolist()
        print(inside == seeded, restored, flag_inside, torch.backends.cudnn.deterministic)
        """
    )
    assert out == "True True True False"


def test_numpy_random_imported_lazily_inside_scope() -> None:
    """numpy.random first loaded inside a scope is seeded, then returned to its just-imported state."""
    out = run(
        """
        import sys
        import numpy, wrapt
        from deterministic import deterministic
        assert "numpy.random" not in sys.modules
        at_import = []
        wrapt.register_post_import_hook(lambda m: at_import.append(m.get_state()), "numpy.random")
        with deterministic(21):
            inside = numpy.random.rand(3).tolist()
        after = numpy.random.get_state()
        restored = after[1].tolist() == at_import[0][1].tolist() and after[2:] == at_import[0][2:]
        numpy.random.seed(21)
        print(inside == numpy.random.rand(3).tolist(), restored)
        """
    )
    assert out == "True True"


def test_no_torch_installed() -> None:
    """With torch unavailable (sys.modules['torch'] = None) every other source still works."""
    out = run(
        """
        import sys
        sys.modules["torch"] = None
        import random
        import numpy as np
        from deterministic import deterministic, seeded
        before = random.getstate(), np.random.get_state()[1].tolist()
        with deterministic(4):
            a = random.random(), np.random.rand()
        random.seed(4); np.random.seed(4)
        b = random.random(), np.random.rand()
        @seeded
        def f():
            return random.random()
        print(a == b, f() == f())
        """
    )
    assert out == "True True"


def test_abandoned_generator_at_shutdown() -> None:
    """A suspended decorated generator finalised at interpreter exit exits cleanly."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import random
                from deterministic import seeded
                @seeded(1)
                def gen():
                    while True:
                        yield random.random()
                kept = gen()
                next(kept)
                print("ok")
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "ok"
    assert result.stderr == ""
