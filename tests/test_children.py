"""Seeding the Python children of a program under `run`, through real interpreters.

Every test starts real child interpreters: with the environment `run` gives its program's
children (`child_environment`), or under `python -m deterministic run` itself.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import textwrap
import venv
from pathlib import Path

import pytest

from deterministic import derive_seed
from deterministic._children import child_environment


def python(
    command: list[str], env: dict[str, str], cwd: Path | None = None, executable: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    """Run `executable COMMAND` and return its completed process (text output)."""
    return subprocess.run(
        [executable, *command], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m deterministic ARGS` in cwd."""
    return python(["-m", "deterministic", *args], env=env if env is not None else dict(os.environ), cwd=cwd)


def hooked(seed: int = 7, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `run` gives its program's children (built from this process's by default)."""
    return child_environment(dict(os.environ) if base is None else base, seed)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The interpreter of a new virtual environment in which `deterministic` is not installed."""
    where = tmp_path_factory.mktemp("bare") / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(where)
    return str(where / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def test_child_without_the_library_starts_silently(tmp_path: Path, bare_python: str) -> None:
    """A child that cannot import deterministic starts silently and still runs its own sitecustomize."""
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text("import os\nos.environ['OWN_SITECUSTOMIZE'] = 'ran'\n")
    # No PYTHONPATH of this process's: it could make the library importable after all.
    env = hooked(base={key: value for key, value in os.environ.items() if key != "PYTHONPATH"})
    env["PYTHONPATH"] += os.pathsep + str(own)
    code = "import os, sys; print(os.environ.get('OWN_SITECUSTOMIZE'), 'deterministic' in sys.modules)"
    # -s: a user site-packages directory must not make the library importable after all
    result = python(["-s", "-c", code], env, executable=bare_python)
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout == "ran False\n"
    told = python(["-s", "-c", "pass"], {**env, "DETERMINISTIC_CHILD_VERBOSE": "1"}, executable=bare_python)
    assert told.returncode == 0
    assert told.stderr.startswith("deterministic: not seeded (this interpreter cannot import deterministic)")


def test_startup_module_leaves_no_trace_in_sys_modules(tmp_path: Path) -> None:
    """Without an environment sitecustomize, a project's own sitecustomize.py imports later, unshadowed."""
    (tmp_path / "sitecustomize.py").write_text("VALUE = 'project'\n")
    code = (
        "import sys; print('sitecustomize' in sys.modules); import random; print(random.random()); "
        "import sitecustomize; print(sitecustomize.VALUE)"
    )
    first, second = (python(["-c", code], hooked(), cwd=tmp_path) for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    absent, _, value = first.stdout.split()
    assert (absent, value) == ("False", "project")
    assert first.stdout == second.stdout  # the hook did run: the child is seeded


def test_environment_sitecustomize_is_the_one_left(tmp_path: Path) -> None:
    """With an environment sitecustomize, sys.modules['sitecustomize'] is that module after startup."""
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text("VALUE = 'environment'\n")
    env = hooked()
    env["PYTHONPATH"] += os.pathsep + str(own)
    result = python(["-c", "import sys; print(sys.modules['sitecustomize'].VALUE)"], env)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("environment\n", "")


LEAF = textwrap.dedent(
    """
    import random, sys
    print(sys.argv[1:], random.random())
    """
)

TEMPORARY = textwrap.dedent(
    """
    import os, subprocess, sys, tempfile
    leaf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "leaf.py")
    for _ in range(2):  # the same command twice, each with a new temporary directory
        directory = tempfile.mkdtemp()
        child = subprocess.run([sys.executable, leaf, directory], capture_output=True, text=True, check=True)
        os.rmdir(directory)
        print(child.stdout.split()[-1])
    """
)


def test_child_with_temporary_path_is_reproducible(tmp_path: Path) -> None:
    """Children whose arguments hold new temporary paths draw the same in every run, each its own stream."""
    (tmp_path / "leaf.py").write_text(LEAF)
    (tmp_path / "program.py").write_text(TEMPORARY)
    runs = [cli("run", "--seed", "3", "program.py", cwd=tmp_path) for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    first, second = runs[0].stdout.split()
    assert first != second  # two children, two streams


def test_child_seed_follows_the_documented_derivation(tmp_path: Path) -> None:
    """A child draws from derive_seed(N, "child", "", ordinal, *argv), temporary directories as <tmp>."""
    directory = tempfile.mkdtemp()
    try:
        code = "import random; print(random.random())"
        env = hooked(seed=11)
        draws = [float(python(["-c", code, os.path.join(directory, "x.json")], env).stdout) for _ in range(2)]
    finally:
        os.rmdir(directory)
    expected = [
        random.Random(derive_seed(11, "child", "", ordinal, "-c", code, "<tmp>" + os.sep + "x.json")).random()
        for ordinal in (0, 1)
    ]
    assert draws == expected


FAMILY = textwrap.dedent(
    """
    import multiprocessing as mp, os, random, subprocess, sys

    def work(queue):
        queue.put(random.random())

    def process_draw():
        context = mp.get_context("spawn")
        queue = context.Queue()
        process = context.Process(target=work, args=(queue,))  # named Process-1 in each program
        process.start()
        draw = queue.get()
        process.join()
        return draw

    if __name__ == "__main__":
        here = os.path.dirname(os.path.abspath(__file__))
        leaf = os.path.join(here, "leaf.py")
        if sys.argv[1:] == ["middle"]:
            nested = subprocess.run([sys.executable, leaf], capture_output=True, text=True, check=True)
            print(nested.stdout.split()[-1], process_draw())
        else:
            direct = subprocess.run([sys.executable, leaf], capture_output=True, text=True, check=True)
            middle = subprocess.run(
                [sys.executable, __file__, "middle"], capture_output=True, text=True, check=True
            )
            print(direct.stdout.split()[-1], process_draw(), middle.stdout.strip())
    """
)


def test_same_command_in_other_families_draws_differently(tmp_path: Path) -> None:
    """The same child command, or the same process name, under different parents gets different streams."""
    (tmp_path / "leaf.py").write_text(LEAF)
    (tmp_path / "family.py").write_text(FAMILY)
    runs = [cli("run", "--seed", "5", "family.py", cwd=tmp_path) for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    leaf_direct, process_direct, leaf_nested, process_nested = runs[0].stdout.split()
    assert leaf_direct != leaf_nested  # leaf.py started by the program, and by its child
    assert process_direct != process_nested  # Process-1 of the program, and of its child


NAMED = textwrap.dedent(
    """
    import multiprocessing as mp, random

    def work(queue):
        queue.put((mp.current_process().name, random.random()))

    if __name__ == "__main__":
        for method in ("spawn", "forkserver", "fork"):
            context = mp.get_context(method)
            queue = context.Queue()
            process = context.Process(target=work, args=(queue,), name=f"worker-{method}")
            process.start()
            print(*queue.get())
            process.join()
    """
)


def test_multiprocessing_workers_draw_from_their_names(tmp_path: Path) -> None:
    """A spawn, forkserver or fork worker of the program draws from derive_seed(N, "process", name)."""
    (tmp_path / "named.py").write_text(NAMED)
    result = cli("run", "--seed", "9", "named.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    drawn = dict(line.split() for line in result.stdout.splitlines())
    expected = {
        name: str(random.Random(derive_seed(9, "process", name)).random())
        for name in ("worker-spawn", "worker-forkserver", "worker-fork")
    }
    assert drawn == expected


#: What the hook and `import deterministic` must not import: wrapt (it imports asyncio), and
#: the package's modules that seeding does not need.
HEAVY = (
    "wrapt",
    "asyncio",
    "typing_extensions",
    *(f"deterministic.{name}" for name in ("_wrappers", "_snapshot", "_samples", "_distributed", "_loading")),
)


def test_hook_imports_only_what_seeding_needs() -> None:
    """The startup hook seeds the child without importing wrapt, asyncio or the package's other modules."""
    code = (
        f"import sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules), 'deterministic' in sys.modules)"
    )
    result = python(["-c", code], hooked())
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[] True\n"


def test_package_exports_resolve_lazily() -> None:
    """`import deterministic` loads only the seeding core; every name of __all__ resolves and star-imports."""
    code = textwrap.dedent(
        f"""
        import sys
        import deterministic
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        assert all(name in dir(deterministic) for name in deterministic.__all__)
        namespace = {{}}
        import importlib.util
        if importlib.util.find_spec("torch") is not None:  # SeededDataLoader needs torch
            exec("from deterministic import *", namespace)
        else:
            namespace = {{name: None for name in deterministic.__all__}}
        missing = [name for name in deterministic.__all__ if name not in namespace]
        from deterministic import seeded, snapshot, SeededDataset
        print(missing, seeded.__module__, snapshot.__module__, SeededDataset.__module__)
        """
    )
    result = python(["-c", code], dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[]",
        "[] deterministic._wrappers deterministic._snapshot deterministic._samples",
    ]


UNSEEDED = textwrap.dedent(
    """
    import os, subprocess, sys
    for flags in ([], ["-I"], ["-S"], ["-E"]):
        subprocess.run([sys.executable, *flags, "-c", "pass"], check=True)
    replaced = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", "pass"], env=replaced, check=True)
    """
)


def test_run_verbose_names_each_seeded_child(tmp_path: Path) -> None:
    """run --verbose prints a stderr line per seeded child; -I, -S, -E or a replaced PYTHONPATH print none."""
    (tmp_path / "program.py").write_text(UNSEEDED)
    result = cli("run", "--seed", "2", "--verbose", "program.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("deterministic: seeded child ")
    assert lines[0].endswith(" -c pass")
    quiet = cli("run", "--seed", "2", "program.py", cwd=tmp_path)
    assert (quiet.returncode, quiet.stderr) == (0, "")
