"""The pytest plugin: each test in its own scope, seeded from its node id.

Registered through the ``pytest11`` entry point. Without ``--deterministic-seed`` and
without ``@pytest.mark.deterministic`` it changes nothing. A governed test runs in one
scope over its whole protocol and, inside it, each phase (setup, call, teardown) in a
scope of its own, so that fixtures that draw do not shift what the body draws. Each
fixture it sets up runs in a scope of its own too (setup, and teardown apart), seeded
from the fixture's identity: a session- or module-scoped fixture draws the same values
whichever test happens to set it up. Under pytest-xdist the controller resolves the
session seed and hands it to the workers.
"""

from __future__ import annotations

import contextlib

import pytest

from ._scope import deterministic
from ._seeds import derive_seed, draw_fresh_seed, resolve_seed, seed_from_text
from ._sources import SOURCES

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any, Final

__all__ = ["reseed"]

_SEED_KEY = pytest.StashKey[int]()
_CONFIG_KEY = pytest.StashKey["deterministic"]()
_SESSION_SEED_KEY = pytest.StashKey["int | None"]()
_MARKER_ERROR_KEY = pytest.StashKey[str]()
# The governed test whose protocol is running: the fixtures set up meanwhile are governed too.
_RUNNING_KEY = pytest.StashKey["pytest.Item | None"]()
_CACHE_KEY = "deterministic/seed"
# The key of the session seed in pytest-xdist's workerinput (the controller's seed, or None).
_WORKER_INPUT_KEY: Final = "deterministic_seed"
_MARKER_ERRORS_PLUGIN: Final = "deterministic-marker-errors"


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
    if not config.pluginmanager.has_plugin(_MARKER_ERRORS_PLUGIN):
        config.pluginmanager.register(_MarkerErrors(), _MARKER_ERRORS_PLUGIN)


def _session_seed(config: pytest.Config) -> int | None:
    """Resolve ``--deterministic-seed``: ``last`` from pytest's cache, ``random`` drawn, else a seed.

    A pytest-xdist worker takes the seed its controller resolved (see
    :func:`pytest_configure_node`): a worker resolving ``random`` itself would draw a
    seed of its own, and one writing the cache would make ``last`` repeat that seed
    instead of the one in the header.
    """
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _WORKER_INPUT_KEY in workerinput:
        seed: int | None = workerinput[_WORKER_INPUT_KEY]
        return seed
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
    if cache is not None and workerinput is None:
        cache.set(_CACHE_KEY, seed)
    return seed


# optionalhook: the hook is pytest-xdist's, and without xdist it must not be an unknown hook.
@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Hand the controller's session seed to a pytest-xdist worker through its ``workerinput``.

    Args:
        node: xdist's ``WorkerController`` for the worker about to start.
    """
    node.workerinput[_WORKER_INPUT_KEY] = node.config.stash.get(_SESSION_SEED_KEY, None)


def pytest_report_header(config: pytest.Config) -> str | None:
    """Show the effective seed in the session header, in a form that repeats the session."""
    seed = config.stash.get(_SESSION_SEED_KEY, None)
    if seed is None:
        return None
    return (
        f"deterministic: --deterministic-seed={seed} (each test's call: derive_seed({seed}, <node id>); "
        f"setup and teardown: derive_seed(<that>, <phase>))"
    )


class _BadMarkerError(Exception):
    """A ``@pytest.mark.deterministic`` argument that ``deterministic`` does not accept."""


def _configuration(item: pytest.Item) -> tuple[deterministic, str | None] | None:
    """The call-phase scope configuration for ``item`` and what is wrong with its marker.

    Args:
        item: The test about to run.

    Returns:
        ``None`` when the plugin leaves the test alone. Otherwise the configuration and
        ``None``, or, for a marker with a bad argument, the configuration without the
        marker and the message the test fails with: one bad marker must not end the
        session, and the test still runs in a scope so that the fixtures torn down in
        its teardown are governed as in any other test.
    """
    option = item.config.stash.get(_SESSION_SEED_KEY, None)
    marker = item.get_closest_marker("deterministic")
    if marker is None and option is None:
        return None
    default_seed = derive_seed(option, item.nodeid) if option is not None else derive_seed(item.nodeid)
    if marker is None:
        return deterministic(default_seed), None
    try:
        return _from_marker(marker, default_seed), None
    except _BadMarkerError as error:
        message = f"{item.nodeid}: bad @pytest.mark.deterministic argument {error}"
        return deterministic(default_seed), message


def _from_marker(marker: pytest.Mark, default_seed: int) -> deterministic:
    """Build the configuration a ``deterministic`` marker asks for.

    Args:
        marker: The closest ``deterministic`` marker of the test.
        default_seed: The seed when the marker gives none.

    Returns:
        The configuration.

    Raises:
        _BadMarkerError: If an argument is not accepted; its message starts with the
            argument as written in the marker.
    """
    keywords = dict(marker.kwargs)
    if len(marker.args) > 1 or (marker.args and "seed" in keywords):
        written = [repr(value) for value in marker.args]
        if "seed" in keywords:
            written.append(f"seed={keywords['seed']!r}")
        raise _BadMarkerError(f"({', '.join(written)}): it takes one seed, positional or as seed=")
    seed = marker.args[0] if marker.args else keywords.pop("seed", None)
    try:
        resolve_seed(seed)
    except TypeError as error:
        raise _BadMarkerError(f"seed={seed!r}: {error}") from None
    # Each keyword alone, so that the message names the one that is refused.
    for name, value in keywords.items():
        try:
            deterministic(0, **{name: value})
        except (TypeError, ValueError) as error:
            raise _BadMarkerError(f"{name}={value!r}: {error}") from None
    return deterministic(default_seed if seed is None else seed, **keywords)


def _reseeded(config: deterministic, seed: int) -> deterministic:
    """The same configuration with another seed."""
    return deterministic(
        seed,
        cudnn_deterministic=config.cudnn_deterministic,
        cudnn_benchmark=config.cudnn_benchmark,
        cudnn_enabled=config.cudnn_enabled,
        deterministic_algorithms=config.deterministic_algorithms,
        fill_uninitialized_memory=config.fill_uninitialized_memory,
        batch_invariant=config.batch_invariant,
        sources=config.sources,
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    """Run setup, call and teardown of a test inside one scope, and keep other seeders out of it.

    pytest-randomly reseeds ``random``, NumPy and (through the seeder entry point) torch
    at every phase; for a test this plugin governs, that reseeding is switched off for
    the test's duration, so its draws are what they are without pytest-randomly.
    """
    configured = _configuration(item)
    if configured is None:
        return (yield)
    config, marker_error = configured
    if marker_error is not None:
        item.stash[_MARKER_ERROR_KEY] = marker_error
    options = item.config.option
    randomly = getattr(options, "randomly_reset_seed", None)
    if randomly:
        options.randomly_reset_seed = False
    try:
        with config as scope:
            item.stash[_SEED_KEY] = scope.seed
            item.stash[_CONFIG_KEY] = config
            item.config.stash[_RUNNING_KEY] = item
            return (yield)
    finally:
        item.config.stash[_RUNNING_KEY] = None
        if randomly:
            options.randomly_reset_seed = randomly


def _phase(item: pytest.Item, phase: str) -> Generator[None, Any, Any]:
    config = item.stash.get(_CONFIG_KEY, None)
    if config is None:
        return (yield)
    seed = item.stash[_SEED_KEY]
    with _reseeded(config, seed if phase == "call" else derive_seed(seed, phase)):
        return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    """Run the setup phase in its own scope, seeded ``derive_seed(call seed, "setup")``."""
    return (yield from _phase(item, "setup"))


class _MarkerErrors:
    """Fails the setup of a test whose marker has a bad argument, before its fixtures.

    A plugin of its own because this module's ``pytest_runtest_setup`` is a wrapper, and
    a wrapper that raised before yielding would keep the other plugins' setup wrappers
    from running, whose teardowns expect them to have run.
    """

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Fail the test's setup with its marker's error, if it has one.

        Args:
            item: The test being set up.

        Raises:
            pytest.fail.Exception: The marker's error, naming the test and the argument.
        """
        marker_error = item.stash.get(_MARKER_ERROR_KEY, None)
        if marker_error is not None:
            pytest.fail(marker_error, pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Run the test body in its own scope, seeded with the call seed."""
    return (yield from _phase(item, "call"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    """Run the teardown phase in its own scope, seeded ``derive_seed(call seed, "teardown")``."""
    return (yield from _phase(item, "teardown"))


def _fixture_configuration(
    item: pytest.Item, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> deterministic:
    """The scope a fixture of the governed test ``item`` is set up in.

    A function-scoped fixture belongs to its test: ``derive_seed(<call seed>, "fixture",
    <baseid>, <name>)``, with the test's keywords. Any other fixture is shared by tests,
    so neither the seed nor the keywords of the test that happens to set it up may
    matter: ``derive_seed(<session seed>, "fixture", <scope>, <scope node id>, <baseid>,
    <name>[, <param index>])`` with the default keywords, and without the session seed
    (the marker alone) the same keys without it.

    Args:
        item: The governed test whose setup needs the fixture.
        fixturedef: The fixture's definition.
        request: The fixture's request; its ``node`` is the node of the fixture's scope.

    Returns:
        The configuration of the fixture's setup scope.
    """
    if fixturedef.scope == "function":
        seed = derive_seed(item.stash[_SEED_KEY], "fixture", fixturedef.baseid, fixturedef.argname)
        return _reseeded(item.stash[_CONFIG_KEY], seed)
    # The scope node tells apart the instances of one fixture (a module-scoped fixture of a
    # conftest has one per module); its node id does not depend on which test needed it.
    keys: list[object] = ["fixture", fixturedef.scope, request.node.nodeid, fixturedef.baseid]
    keys.append(fixturedef.argname)
    if fixturedef.params is not None:
        keys.append(getattr(request, "param_index", 0))
    session_seed = item.config.stash.get(_SESSION_SEED_KEY, None)
    return deterministic(derive_seed(*keys) if session_seed is None else derive_seed(session_seed, *keys))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    """Set up a governed test's fixture in its own scope, and tear it down in another.

    The teardown part of a yield fixture (and any finalizer the fixture adds) runs from
    the fixture's finalizers, which pytest calls last-in first-out: one added before the
    setup runs after that teardown and closes its scope, one added after the setup runs
    before it and opens the scope, seeded ``derive_seed(<fixture seed>, "teardown")``.
    """
    item = request.config.stash.get(_RUNNING_KEY, None)
    if item is None:
        return (yield)
    config = _fixture_configuration(item, fixturedef, request)
    teardown = contextlib.ExitStack()
    fixturedef.addfinalizer(teardown.close)
    with config as scope:
        value = yield
    teardown_config = _reseeded(config, derive_seed(scope.seed, "teardown"))
    fixturedef.addfinalizer(lambda: teardown.enter_context(teardown_config))
    return value


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
