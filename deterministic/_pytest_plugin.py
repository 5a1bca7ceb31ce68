"""The pytest plugin: each test in its own scope, seeded from its node id.

Registered through the ``pytest11`` entry point. Without ``--deterministic-seed`` and
without ``@pytest.mark.deterministic`` it changes nothing.
"""

from __future__ import annotations

import pytest

from ._scope import deterministic
from ._seeds import derive_seed, resolve_seed, seed_from_text
from ._sources import SOURCES

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

__all__ = ["reseed"]

_SEED_KEY = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--deterministic-seed``."""
    group = parser.getgroup("deterministic")
    group.addoption(
        "--deterministic-seed",
        type=seed_from_text,
        default=None,
        metavar="N",
        help="run every test's setup, call and teardown in deterministic(derive_seed(N, <node id>))",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``deterministic`` marker."""
    config.addinivalue_line(
        "markers",
        "deterministic(seed=None, **keywords): run this test in its own deterministic scope "
        "(keywords as for deterministic(); the seed defaults to one derived from the node id)",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    """Show the seed in the session header when the option is used."""
    seed = config.getoption("deterministic_seed")
    if seed is None:
        return None
    return f"deterministic: --deterministic-seed={seed} (each test: derive_seed({seed}, <node id>))"


def _configuration(item: pytest.Item) -> deterministic | None:
    """The scope configuration for ``item``, or ``None`` when the plugin leaves it alone."""
    option = item.config.getoption("deterministic_seed")
    marker = item.get_closest_marker("deterministic")
    if marker is None and option is None:
        return None
    keywords = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        if len(marker.args) > 1 or "seed" in keywords:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.deterministic takes one seed")
        keywords["seed"] = marker.args[0]
    seed = keywords.pop("seed", None)
    if seed is None:
        seed = derive_seed(option, item.nodeid) if option is not None else derive_seed(item.nodeid)
    return deterministic(seed, **keywords)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    """Run setup, call and teardown of a test inside one scope."""
    config = _configuration(item)
    if config is None:
        return (yield)
    with config as scope:
        item.stash[_SEED_KEY] = scope.seed
        return (yield)


@pytest.fixture
def deterministic_seed(request: pytest.FixtureRequest) -> int:
    """The effective seed of the test's scope (needs the option or the marker)."""
    seed: int | None = request.node.stash.get(_SEED_KEY, None)
    if seed is None:
        raise pytest.UsageError(
            "the deterministic_seed fixture needs --deterministic-seed or @pytest.mark.deterministic"
        )
    return seed


def reseed(seed: int) -> None:
    """Reseed torch and registered sources; pytest-randomly calls it with its seed.

    Registered under the ``pytest_randomly.random_seeder`` entry point. pytest-randomly
    reseeds ``random`` and NumPy itself; this adds torch's CPU generator, the
    accelerators (lazily when not initialised, never initialising one) and every
    registered source.

    Args:
        seed: pytest-randomly's seed for the test phase.
    """
    effective = resolve_seed(seed)
    assert effective is not None
    for name, source in tuple(SOURCES.items()):
        if name not in ("random", "numpy") and source.available():
            source.seed(effective)
