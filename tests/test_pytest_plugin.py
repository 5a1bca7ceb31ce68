"""The pytest plugin, through pytester in subprocesses: per-test seeds, order independence, no leaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deterministic import derive_seed

TESTS = """
import json, os, random
import numpy as np
import pytest

RECORD = os.environ["RECORD"]
AT_START = random.getstate()


def record(name, values):
    with open(RECORD, "a") as out:
        out.write(json.dumps([name, values]) + "\\n")


@pytest.fixture
def drawn_in_setup():
    return random.random()


def test_one(drawn_in_setup):
    record("one", [drawn_in_setup, random.random(), float(np.random.rand())])
    random.seed(999)  # a test that reseeds globally must not leak


def test_two():
    record("two", [random.random(), float(np.random.rand())])


def test_three():
    record("three", [random.random(), float(np.random.rand())])
"""


def _records(path: Path) -> dict[str, list[float]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return {name: values for name, values in (json.loads(line) for line in lines)}


def _run(
    pytester: pytest.Pytester, tmp_path: Path, *args: str, name: str
) -> tuple[dict[str, list[float]], str]:
    record = tmp_path / f"{name}.jsonl"
    pytester._monkeypatch.setenv("RECORD", str(record))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", *args)
    assert result.ret == 0, result.stdout.str()
    return _records(record), result.stdout.str()


def test_option_fixes_each_test(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """With --deterministic-seed two runs give identical values, independent of order and selection."""
    pytester.makepyfile(test_values=TESTS)
    first, header = _run(pytester, tmp_path, "--deterministic-seed", "7", name="first")
    second, _ = _run(pytester, tmp_path, "--deterministic-seed", "7", name="second")
    assert first == second
    assert set(first) == {"one", "two", "three"}
    assert "deterministic: --deterministic-seed=7" in header
    alone, _ = _run(pytester, tmp_path, "--deterministic-seed", "7", "-k", "three", name="alone")
    assert alone == {"three": first["three"]}
    reordered, _ = _run(
        pytester,
        tmp_path,
        "--deterministic-seed",
        "7",
        "test_values.py::test_three",
        "test_values.py::test_one",
        name="reordered",
    )
    assert reordered == {"three": first["three"], "one": first["one"]}
    other, _ = _run(pytester, tmp_path, "--deterministic-seed", "8", name="other")
    assert other["two"] != first["two"]


def test_seed_is_derived_from_node_id(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """A test's seed is derive_seed(N, <node id>): its first draw matches random.Random(that)."""
    import random

    pytester.makepyfile(test_values=TESTS)
    values, _ = _run(pytester, tmp_path, "--deterministic-seed", "7", name="values")
    seed = derive_seed(7, "test_values.py::test_two")
    assert values["two"][0] == random.Random(seed).random()


def test_nothing_leaks_between_tests(pytester: pytest.Pytester) -> None:
    """Tests that reseed globally leave the session's state as it was, with the option only."""
    pytester.makeconftest(
        """
        import random

        def pytest_sessionstart(session):
            session.config.stash_start = random.getstate()

        def pytest_sessionfinish(session, exitstatus):
            leaked = random.getstate() != session.config.stash_start
            print("\\nRANDOM-LEAKED" if leaked else "\\nRANDOM-INTACT")
        """
    )
    pytester.makepyfile(
        test_leaks="""
        import random

        def test_a():
            random.seed(1)
            random.random()

        def test_b():
            random.random()
        """
    )
    with_option = pytester.runpytest_subprocess("-p", "no:randomly", "-s", "--deterministic-seed", "3")
    with_option.assert_outcomes(passed=2)
    assert "RANDOM-INTACT" in with_option.stdout.str()
    without = pytester.runpytest_subprocess("-p", "no:randomly", "-s")
    without.assert_outcomes(passed=2)
    assert "RANDOM-LEAKED" in without.stdout.str()


def test_marker_and_fixture(pytester: pytest.Pytester) -> None:
    """@pytest.mark.deterministic scopes one test; deterministic_seed gives the effective seed."""
    pytest.importorskip("torch")
    pytester.makepyfile(
        test_marked="""
        import random
        import pytest
        import torch
        from deterministic import derive_seed

        @pytest.mark.deterministic(seed=42, cudnn_benchmark=True)
        def test_marked(deterministic_seed):
            assert deterministic_seed == 42
            assert random.random() == random.Random(42).random()
            assert torch.backends.cudnn.benchmark is True

        @pytest.mark.deterministic
        def test_marked_default(deterministic_seed, request):
            assert deterministic_seed == derive_seed(request.node.nodeid)

        def test_after():
            assert torch.backends.cudnn.benchmark is False

        def test_fixture_without_scope(deterministic_seed):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=1)
    assert "needs --deterministic-seed or @pytest.mark.deterministic" in result.stdout.str()


def test_no_option_no_header(pytester: pytest.Pytester) -> None:
    """Without the option the plugin adds no header line and changes nothing."""
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert "deterministic:" not in result.stdout.str()


def test_randomly_seeder_entry_point() -> None:
    """The pytest-randomly seeder entry point reseeds torch and registered sources, not random."""
    from importlib.metadata import entry_points

    seeders = {ep.name: ep for ep in entry_points(group="pytest_randomly.random_seeder")}
    reseed = seeders["deterministic"].load()
    torch = pytest.importorskip("torch")
    import random

    from conftest import outside_state_restored

    with outside_state_restored():
        before_random = random.getstate()
        reseed(123)
        assert random.getstate() == before_random
        assert torch.rand(2).tolist() == torch.rand(2, generator=torch.Generator().manual_seed(123)).tolist()


COMPOSED = """
import json, os, random
import numpy as np
import pytest

try:
    import torch
except ImportError:
    torch = None

RECORD = os.environ["RECORD"]


def record(name, values):
    with open(RECORD, "a") as out:
        out.write(json.dumps([name, values]) + "\\n")


def sample():
    values = [random.random(), float(np.random.rand())]
    if torch is not None:
        values.append(torch.rand(1).item())
    return values


@pytest.fixture(params=[0, 5])
def hungry(request):
    return [random.random() for _ in range(request.param)]


def test_body(hungry, deterministic_seed):
    from deterministic import deterministic

    drawn = sample()
    with deterministic(deterministic_seed):
        expected = sample()
    record("body", [drawn, expected])


def test_plain():
    record("plain", sample())
"""


def _run_composed(pytester: pytest.Pytester, tmp_path: Path, *args: str, name: str) -> dict[str, Any]:
    record = tmp_path / f"{name}.jsonl"
    pytester._monkeypatch.setenv("RECORD", str(record))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == 0, result.stdout.str()
    lines = record.read_text().splitlines()
    return {"lines": [json.loads(line) for line in lines], "out": result.stdout.str()}


def test_option_wins_over_pytest_randomly(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Under --deterministic-seed a test draws what it draws without pytest-randomly, whatever its seed."""
    pytest.importorskip("pytest_randomly")
    pytester.makepyfile(test_composed=COMPOSED)
    alone = _run_composed(pytester, tmp_path, "-p", "no:randomly", "--deterministic-seed", "0", name="alone")
    runs = [
        _run_composed(
            pytester,
            tmp_path,
            "-p",
            "randomly",
            f"--randomly-seed={randomly_seed}",
            "--deterministic-seed",
            "0",
            name=f"randomly{randomly_seed}",
        )
        for randomly_seed in (1, 5)
    ]
    expected = sorted(map(json.dumps, alone["lines"]))
    for run in runs:
        assert sorted(map(json.dumps, run["lines"])) == expected  # shuffled order, same values
    assert "Using --randomly-seed=1" in runs[0]["out"]


def test_fixture_draws_do_not_shift_the_body(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Setup is seeded apart from the call: the body draws what its seed gives, whatever fixtures drew."""
    pytester.makepyfile(test_composed=COMPOSED)
    result = _run_composed(
        pytester, tmp_path, "-p", "no:randomly", "--deterministic-seed", "3", name="phases"
    )
    bodies = [values for name, values in result["lines"] if name == "body"]
    assert len(bodies) == 2  # the fixture drew 0 and 5 numbers in setup
    assert all(drawn == expected for drawn, expected in bodies)
    plain = next(values for name, values in result["lines"] if name == "plain")
    import random

    assert plain[0] == random.Random(derive_seed(3, "test_composed.py::test_plain")).random()


def test_pytest_randomly_still_drives_torch_without_the_option(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """Without our option, pytest-randomly's seed reseeds torch through our seeder entry point."""
    pytest.importorskip("pytest_randomly")
    pytest.importorskip("torch")
    pytester.makepyfile(test_composed=COMPOSED)
    runs = [
        _run_composed(
            pytester, tmp_path, "-p", "randomly", f"--randomly-seed={seed}", "-k", "plain", name=name
        )
        for name, seed in (("a", 5), ("b", 5), ("c", 6))
    ]
    assert runs[0]["lines"] == runs[1]["lines"]
    assert runs[0]["lines"][0][1][2] != runs[2]["lines"][0][1][2]  # the torch draw follows randomly's seed


def test_seed_last_and_random(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """--deterministic-seed=random draws a seed shown in the header; =last repeats it from the cache."""
    pytester.makepyfile(test_composed=COMPOSED)
    outputs = []
    for value in ("random", "last"):
        record = tmp_path / f"{value}.jsonl"
        pytester._monkeypatch.setenv("RECORD", str(record))
        result = pytester.runpytest_subprocess(
            "-p", "no:randomly", f"--deterministic-seed={value}", "-k", "plain"
        )
        assert result.ret == 0, result.stdout.str()
        outputs.append((_header_seed(result.stdout.str()), record.read_text()))
    assert outputs[0] == outputs[1]


def test_seed_last_without_history_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """--deterministic-seed=last with an empty cache is a usage error, not a silent seed."""
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--deterministic-seed=last")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no earlier session's seed" in result.stderr.str()


def _header_seed(output: str) -> int:
    import re

    header = re.search(r"deterministic: --deterministic-seed=(\d+)", output)
    assert header is not None, output
    return int(header.group(1))


def test_xdist_matches_a_serial_run(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """With a fixed seed, every test draws under pytest-xdist (-n 2) what it draws in a serial run."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_values=TESTS)
    serial, _ = _run(pytester, tmp_path, "--deterministic-seed", "7", name="serial")
    parallel, header = _run(pytester, tmp_path, "-n", "2", "--deterministic-seed", "7", name="parallel")
    assert set(serial) == {"one", "two", "three"}
    assert parallel == serial
    assert _header_seed(header) == 7


def test_xdist_random_and_last_use_the_header_seed(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Under -n 2, =random draws one seed for all workers, the header's, and =last reuses exactly it."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_values=TESTS)
    runs = []
    for value in ("random", "last"):
        record = tmp_path / f"{value}.jsonl"
        pytester._monkeypatch.setenv("RECORD", str(record))
        result = pytester.runpytest_subprocess(
            "-p", "no:randomly", "-n", "2", f"--deterministic-seed={value}"
        )
        assert result.ret == 0, result.stdout.str()
        runs.append((_header_seed(result.stdout.str()), _records(record)))
    (seed, drawn), (last_seed, last_drawn) = runs
    assert last_seed == seed
    assert last_drawn == drawn
    serial, _ = _run(pytester, tmp_path, "--deterministic-seed", str(seed), name="serial")
    assert drawn == serial
    import random

    assert drawn["two"][0] == random.Random(derive_seed(seed, "test_values.py::test_two")).random()


def test_plugin_works_without_xdist(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """With xdist absent (-p no:xdist) the plugin's xdist hook is not an unknown-hook error."""
    pytester.makepyfile(test_values=TESTS)
    values, _ = _run(pytester, tmp_path, "-p", "no:xdist", "--deterministic-seed", "7", name="alone")
    import random

    assert values["two"][0] == random.Random(derive_seed(7, "test_values.py::test_two")).random()


BAD_MARKERS = """
import random
import pytest


@pytest.mark.deterministic(1, 2)
def test_two_seeds():
    pass


@pytest.mark.deterministic(3, seed=4)
def test_seed_twice():
    pass


@pytest.mark.deterministic(seed=1.5)
def test_float_seed():
    pass


@pytest.mark.deterministic(colour="blue")
def test_unknown_keyword():
    pass


@pytest.mark.deterministic(deterministic_algorithms="sometimes")
def test_bad_algorithms():
    pass


@pytest.mark.deterministic(seed=5)
def test_good_marker():
    assert random.random() == random.Random(5).random()


def test_unmarked():
    pass
"""


@pytest.mark.parametrize("option", [(), ("--deterministic-seed", "3")], ids=["marker", "option"])
def test_bad_marker_fails_only_its_test(pytester: pytest.Pytester, option: tuple[str, ...]) -> None:
    """A bad @pytest.mark.deterministic argument errors that test, naming it and the argument; others run."""
    pytester.makepyfile(test_marks=BAD_MARKERS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-rE", *option)
    output = result.stdout.str()
    assert "INTERNALERROR" not in output + result.stderr.str()
    result.assert_outcomes(passed=2, errors=5)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    for nodeid, argument in [
        ("test_two_seeds", "(1, 2)"),
        ("test_seed_twice", "(3, seed=4)"),
        ("test_float_seed", "seed=1.5"),
        ("test_unknown_keyword", "colour='blue'"),
        ("test_bad_algorithms", "deterministic_algorithms='sometimes'"),
    ]:
        expected = f"test_marks.py::{nodeid}: bad @pytest.mark.deterministic argument {argument}"
        assert expected in output, output


FIXTURES = """
import json, os, random
import pytest

RECORD = os.environ["RECORD"]


def record(name, values):
    with open(RECORD, "a") as out:
        out.write(json.dumps([name, values]) + "\\n")


@pytest.fixture(scope="session")
def session_value():
    value = random.random()
    yield value
    record("session-teardown", [random.random()])


@pytest.fixture(scope="module", params=[10, 20])
def module_value(request):
    value = random.random()
    yield value
    record(f"module-teardown-{request.param}", [random.random()])


@pytest.fixture
def greedy():
    return [random.random() for _ in range(5)]


@pytest.fixture
def function_value():
    return random.random()


def test_a(request, session_value, module_value, greedy, function_value):
    record(request.node.nodeid, [session_value, module_value, function_value])


def test_b(request, function_value, module_value, session_value):
    record(request.node.nodeid, [session_value, module_value, function_value])
"""


def _fixture_runs(pytester: pytest.Pytester, tmp_path: Path, *args: str) -> list[dict[str, list[float]]]:
    """Records of the FIXTURES module run whole, one test alone, and in reverse order."""
    pytester.makepyfile(test_fixtures=FIXTURES)
    selections = {
        "whole": (),
        "alone": ("-k", "test_b and 20"),
        "reversed": ("test_fixtures.py::test_b", "test_fixtures.py::test_a"),
    }
    return [_run(pytester, tmp_path, *args, *chosen, name=name)[0] for name, chosen in selections.items()]


def _draw(seed: int) -> float:
    import random

    return random.Random(seed).random()


def test_shared_fixture_seeds_depend_on_the_fixture_only(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Session and module fixtures are seeded from their identity, whichever test sets them up."""
    whole, alone, reversed_ = _fixture_runs(pytester, tmp_path, "--deterministic-seed", "7")
    module = "test_fixtures.py"
    assert set(alone) == {f"{module}::test_b[20]", "module-teardown-20", "session-teardown"}
    assert alone == {name: whole[name] for name in alone}
    assert reversed_ == whole
    session_seed = derive_seed(7, "fixture", "session", "", module, "session_value")
    module_seeds = [
        derive_seed(7, "fixture", "module", module, module, "module_value", index) for index in (0, 1)
    ]
    for param, module_seed in zip((10, 20), module_seeds, strict=True):
        for test in ("test_a", "test_b"):
            values = whole[f"{module}::{test}[{param}]"]
            assert values[:2] == [_draw(session_seed), _draw(module_seed)]
        assert whole[f"module-teardown-{param}"] == [_draw(derive_seed(module_seed, "teardown"))]
    assert whole["session-teardown"] == [_draw(derive_seed(session_seed, "teardown"))]


def test_function_fixture_seeds_depend_on_the_test_and_fixture(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """A function-scoped fixture draws from its own seed, whatever other fixtures drew before it."""
    pytester.makepyfile(test_fixtures=FIXTURES)
    whole, _ = _run(pytester, tmp_path, "--deterministic-seed", "7", name="whole")
    for test in ("test_a[10]", "test_b[10]", "test_a[20]", "test_b[20]"):
        nodeid = f"test_fixtures.py::{test}"
        expected = _draw(derive_seed(derive_seed(7, nodeid), "fixture", "test_fixtures.py", "function_value"))
        assert whole[nodeid][2] == expected


def test_shared_fixture_seeds_under_the_marker_alone(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Under the marker without the option, a shared fixture's seed is derived from its identity alone."""
    pytester.makepyfile(test_fixtures="import pytest\npytestmark = pytest.mark.deterministic\n" + FIXTURES)
    module = "test_fixtures.py"
    whole, _ = _run(pytester, tmp_path, name="whole")
    alone, _ = _run(pytester, tmp_path, "-k", "test_b and 20", name="alone")
    session_seed = derive_seed("fixture", "session", "", module, "session_value")
    module_seed = derive_seed("fixture", "module", module, module, "module_value", 1)
    assert alone[f"{module}::test_b[20]"] == whole[f"{module}::test_b[20]"]
    assert alone[f"{module}::test_b[20]"][:2] == [_draw(session_seed), _draw(module_seed)]
    assert (
        whole["session-teardown"]
        == alone["session-teardown"]
        == [_draw(derive_seed(session_seed, "teardown"))]
    )


def test_fixture_seeds_under_xdist(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Shared fixtures set up in each worker draw what they draw in a serial run."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_fixtures=FIXTURES)
    whole, _ = _run(pytester, tmp_path, "--deterministic-seed", "7", name="whole")
    parallel, _ = _run(pytester, tmp_path, "-n", "2", "--deterministic-seed", "7", name="parallel")
    tests = {name: values for name, values in whole.items() if "::" in name}
    assert {name: values for name, values in parallel.items() if "::" in name} == tests


def test_fixtures_untouched_without_option_or_marker(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Without the option and the marker, fixtures draw from the global state as if the plugin were absent."""
    pytester.makeconftest(
        """
        import random

        def pytest_sessionstart(session):
            random.seed(5)
        """
    )
    pytester.makepyfile(test_fixtures=FIXTURES)
    values, _ = _run(pytester, tmp_path, "-k", "test_a and 10", name="plain")
    import random

    expected = random.Random(5)
    session_value, module_value = expected.random(), expected.random()
    [expected.random() for _ in range(5)]  # the greedy fixture
    function_value = expected.random()
    assert values["test_fixtures.py::test_a[10]"] == [session_value, module_value, function_value]
