"""The pytest plugin, through pytester in subprocesses: per-test seeds, order independence, no leaks."""

from __future__ import annotations

import json
from pathlib import Path

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
