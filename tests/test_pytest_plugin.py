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
    import re

    pytester.makepyfile(test_composed=COMPOSED)
    outputs = []
    for value in ("random", "last"):
        record = tmp_path / f"{value}.jsonl"
        pytester._monkeypatch.setenv("RECORD", str(record))
        result = pytester.runpytest_subprocess(
            "-p", "no:randomly", f"--deterministic-seed={value}", "-k", "plain"
        )
        assert result.ret == 0, result.stdout.str()
        header = re.search(r"--deterministic-seed=(\d+)", result.stdout.str())
        assert header is not None
        outputs.append((int(header.group(1)), record.read_text()))
    assert outputs[0] == outputs[1]


def test_seed_last_without_history_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """--deterministic-seed=last with an empty cache is a usage error, not a silent seed."""
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--deterministic-seed=last")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no earlier session's seed" in result.stderr.str()
