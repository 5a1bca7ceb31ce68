"""The pytest plugin: each test in its own scope, seeded from its node id.

Registered through the ``pytest11`` entry point. Without ``--deterministic-seed`` and
without ``@pytest.mark.deterministic`` it changes nothing. A governed test runs in one
scope over its whole protocol and, inside it, each phase (setup, call, teardown) in a
scope of its own, so that fixtures that draw do not shift what the body draws.
"""

from __future__ import annotations

import pytest

from ._scope import deterministic
from ._seeds import derive_seed, draw_fresh_seed, resolve_seed, seed_from_text
from ._sources import SOURCES

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

__all__ = ["reseed"]

_SEED_KEY = pytest.StashKey[int]()
_CONFIG_KEY = pytest.StashKey["deterministic"]()
_SESSION_SEED_KEY = pytest.StashKey["int | None"]()
_CACHE_KEY = "deterministic/seed"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--deterministic-seed``."""
    group = parser.getgroup("deterministic")
    group.addoption(
        "--deterministic-seed",
        default=None,
        metavar="N",
        help="seed each test's setup, call and teardown from derive_seed(N, <node id>); N is "
        "decimal digits, a word, 'last' (the previous session's seed) or 'random'",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``deterministic`` marker and resolve the session seed."""
    config.addinivalue_line(
        "markers",
        "deterministic(seed=None, **keywords): run this test in its own deterministic scope "
        "(keywords as for deterministic(); the seed defaults to one derived from the node id)",
    )
    config.stash[_SESSION_SEED_KEY] = _session_seed(config)


def _session_seed(config: pytest.Config) -> int | None:
    """Resolve ``--deterministic-seed``: ``last`` from pytest's cache, ``random`` drawn, else a seed."""
    text = config.getoption("deterministic_seed")
    if text is None:
        return None
    cache = getattr(config, "cache", None)
    if text == "last":
        previous = cache.get(_CACHE_KEY, None) if cache is not None else None
        if not isinstance(previous, int):
            raise pytest.UsageError(
                "--deterministic-seed=last: no earlier session's seed is in pytest's cache "
                "(run once with a seed, and keep the cache provider enabled)"
            )
        seed = previous
    elif text == "random":
        seed = draw_fresh_seed()
    else:
        try:
            seed = seed_from_text(text)
        except ValueError as error:
            raise pytest.UsageError(f"--deterministic-seed: {error}") from None
    if cache is not None:
        cache.set(_CACHE_KEY, seed)
    return seed


def pytest_report_header(config: pytest.Config) -> str | None:
    """Show the effective seed in the session header, in a form that repeats the session."""
    seed = config.stash.get(_SESSION_SEED_KEY, None)
    if seed is None:
        return None
    return (
        f"deterministic: --deterministic-seed={seed} (each test's call: derive_seed({seed}, <node id>); "
        f"setup and teardown: derive_seed(<that>, <phase>))"
    )


def _configuration(item: pytest.Item) -> deterministic | None:
    """The call-phase scope configuration for ``item``, or ``None`` when the plugin leaves it alone."""
    option = item.config.stash.get(_SESSION_SEED_KEY, None)
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


def _for_phase(config: deterministic, seed: int, phase: str) -> deterministic:
    """The same configuration with the seed of ``phase`` (the call phase keeps ``seed``)."""
    phase_seed = seed if phase == "call" else derive_seed(seed, phase)
    return deterministic(
        phase_seed,
        cudnn_deterministic=config.cudnn_deterministic,
        cudnn_benchmark=config.cudnn_benchmark,
        cudnn_enabled=config.cudnn_enabled,
        deterministic_algorithms=config.deterministic_algorithms,
        fill_uninitialized_memory=config.fill_uninitialized_memory,
        sources=config.sources,
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    """Run setup, call and teardown of a test inside one scope, and keep other seeders out of it.

    pytest-randomly reseeds ``random``, NumPy and (through the seeder entry point) torch
    at every phase; for a test this plugin governs, that reseeding is switched off for
    the test's duration, so its draws are what they are without pytest-randomly.
    """
    config = _configuration(item)
    if config is None:
        return (yield)
    options = item.config.option
    randomly = getattr(options, "randomly_reset_seed", None)
    if randomly:
        options.randomly_reset_seed = False
    try:
        with config as scope:
            item.stash[_SEED_KEY] = scope.seed
            item.stash[_CONFIG_KEY] = config
            return (yield)
    finally:
        if randomly:
            options.randomly_reset_seed = randomly


def _phase(item: pytest.Item, phase: str) -> Generator[None, Any, Any]:
    config = item.stash.get(_CONFIG_KEY, None)
    if config is None:
        return (yield)
    with _for_phase(config, item.stash[_SEED_KEY], phase):
        return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    """Run the setup phase (fixtures) in its own scope, seeded ``derive_seed(call seed, "setup")``."""
    return (yield from _phase(item, "setup"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Run the test body in its own scope, seeded with the call seed."""
    return (yield from _phase(item, "call"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    """Run the teardown phase in its own scope, seeded ``derive_seed(call seed, "teardown")``."""
    return (yield from _phase(item, "teardown"))


@pytest.fixture
def deterministic_seed(request: pytest.FixtureRequest) -> int:
    """The effective seed of the test's call phase (needs the option or the marker).

    The test body's draws equal those of ``with deterministic(<this seed>)``.
    """
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
