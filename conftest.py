"""Every Python code block in README.md and docs/*.md runs as a test (Sybil).

Blocks of one page run in order in one namespace, in a temporary working directory.
A block that needs a GPU, a multi-process job or a placeholder is preceded by a
``<!-- skip: next -->`` comment saying so. The pages assume the full install (torch,
Lightning, transformers), so they are collected only when torch is installed.
"""

from __future__ import annotations

import importlib.util
import os
import random
import tempfile
from collections.abc import Generator
from typing import Any

import pytest

try:
    from sybil import Sybil
    from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
except ImportError:  # the docs extra is not installed: the pages are not collected
    Sybil = None


def _start_page(namespace: dict[str, Any]) -> None:
    """Run the page in a scratch directory, and remember the global state to put back."""
    import numpy as np
    import torch

    namespace["_saved"] = (os.getcwd(), random.getstate(), np.random.get_state(), torch.get_rng_state())
    namespace["_directory"] = tempfile.TemporaryDirectory()
    os.chdir(namespace["_directory"].name)


def _end_page(namespace: dict[str, Any]) -> None:
    """Put the working directory and the RNG states back; no scope may stay open."""
    import numpy as np
    import torch

    from deterministic import _scope

    directory, random_state, numpy_state, torch_state = namespace["_saved"]
    os.chdir(directory)
    namespace["_directory"].cleanup()
    random.setstate(random_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    assert not _scope._STACK, f"a documentation page left scopes open: {_scope._STACK}"


class _UnrunPage(pytest.File):
    """A page collected where its blocks cannot run: one skipped item says why."""

    def collect(self) -> list[pytest.Item]:
        return [_UnrunBlocks.from_parent(self, name="blocks")]


class _UnrunBlocks(pytest.Item):
    def runtest(self) -> None:
        pytest.skip("the documentation pages run where torch and the test extras are installed")


def _unrun_page(file_path: Any, parent: pytest.Collector) -> pytest.Collector | None:
    relative = os.path.relpath(file_path, parent.config.rootpath)
    if relative == "README.md" or (os.path.dirname(relative) == "docs" and relative.endswith(".md")):
        return _UnrunPage.from_parent(parent, path=file_path)
    return None


if Sybil is not None and importlib.util.find_spec("torch") is not None:
    pytest_collect_file = Sybil(
        parsers=[PythonCodeBlockParser(), SkipParser()],
        patterns=["README.md", "docs/*.md"],
        setup=_start_page,
        teardown=_end_page,
    ).pytest()
else:
    pytest_collect_file = _unrun_page


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, Any, Any]:
    """Keep each page's blocks in page order, after whatever shuffling (pytest-randomly) did.

    A page's blocks share one namespace and its skip directives apply to the block after
    them, so they must run in order; tests stay shuffled.
    """
    position = {id(item): index for index, item in enumerate(items)}
    result = yield
    pages = [item for item in items if str(item.path).endswith(".md")]
    if pages:
        tests = [item for item in items if not str(item.path).endswith(".md")]
        items[:] = tests + sorted(pages, key=lambda item: position[id(item)])
    return result
