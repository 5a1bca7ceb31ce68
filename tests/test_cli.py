"""The command line, through real subprocesses: doctor, run and check."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import outside_state_restored

from deterministic import deterministic
from deterministic._cli import hash_seed

SCRIPT = textwrap.dedent(
    """
    import random, sys
    import numpy as np
    values = [random.random(), float(np.random.rand())]
    try:
        import torch
        values.append(torch.rand(1).item())
    except ImportError:
        pass
    print(sys.argv[1:], __name__, __file__.endswith("script.py"))
    print(values, hash("abc"))
    if "--fail" in sys.argv:
        raise ValueError("boom")
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0)
    """
)


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m deterministic ARGS` in cwd."""
    return subprocess.run(
        [sys.executable, "-m", "deterministic", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture
def script(tmp_path: Path) -> Path:
    """A script that prints its arguments and draws from every source."""
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    return path


def test_run_matches_scope_and_passes_arguments(script: Path) -> None:
    """run gives the script's argv, __main__, __file__, exit code, and the scope's draws."""
    result = cli("run", "--seed", "5", "--", str(script), "3", "--flag", cwd=script.parent)
    assert result.returncode == 3, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "['3', '--flag'] __main__ True"
    wrapper = script.parent / "wrapper.py"
    wrapper.write_text(
        "import runpy, sys\nfrom deterministic import deterministic\n"
        f"sys.argv = [{str(script)!r}, '3', '--flag']\n"
        f"with deterministic(5):\n    runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed(5))}
    reference = subprocess.run([sys.executable, str(wrapper)], capture_output=True, text=True, env=env)
    assert reference.returncode == 3, reference.stderr
    assert second == reference.stdout.splitlines()[1]


def test_run_sets_hash_seed(script: Path) -> None:
    """run fixes PYTHONHASHSEED from the seed, so hash() of a str is the same every run."""
    outputs = {cli("run", "--seed", "5", str(script), cwd=script.parent).stdout for _ in range(2)}
    assert len(outputs) == 1
    other = cli("run", "--seed", "6", str(script), cwd=script.parent).stdout
    assert other.split()[-1] != outputs.pop().split()[-1]


def test_run_module(tmp_path: Path) -> None:
    """run -m runs a module as __main__ with its arguments."""
    (tmp_path / "tool.py").write_text(SCRIPT.replace("script.py", "tool.py"))
    result = cli("run", "--seed", "5", "-m", "tool", "0", "x", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "['0', 'x'] __main__ True"


def test_run_traceback_starts_in_script(script: Path) -> None:
    """An uncaught exception exits 1 with a traceback that starts in the script."""
    result = cli("run", "--seed", "5", str(script), "--fail", cwd=script.parent)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "script.py" in lines[1]
    assert lines[-1] == "ValueError: boom"
    assert "_runner" not in result.stderr and "runpy" not in result.stderr


def test_run_strict_sets_cublas_and_algorithms(tmp_path: Path) -> None:
    """--strict sets CUBLAS_WORKSPACE_CONFIG and deterministic algorithms for the script."""
    pytest.importorskip("torch")
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, torch\nprint(os.environ.get('CUBLAS_WORKSPACE_CONFIG'), "
        "torch.are_deterministic_algorithms_enabled())\n"
    )
    strict = cli("run", "--seed", "1", "--strict", str(probe), cwd=tmp_path)
    assert strict.stdout.strip() == ":4096:8 True", strict.stderr
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    plain = cli("run", "--seed", "1", str(probe), cwd=tmp_path, env=env)
    assert plain.stdout.strip() == "None False", plain.stderr


def test_check_reproducible(script: Path) -> None:
    """check prints "reproducible" and exits 0 when every run gives the same outputs."""
    result = cli("check", "--seed", "5", "--runs", "3", str(script), cwd=script.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("reproducible")


def test_check_reports_first_difference(tmp_path: Path) -> None:
    """check names the file and line of the first difference, with both versions, and exits 1."""
    flaky = tmp_path / "flaky.py"
    flaky.write_text(
        "import os, sys\nprint('same')\nprint(os.urandom(4).hex())\n"
        "open(sys.argv[1], 'w').write('stable\\n')\n"
    )
    result = cli("check", "--seed", "1", "--compare", "out.txt", str(flaky), "out.txt", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()[1:]
    assert lines[0] == "not reproducible: <stdout> line 2 differs"
    assert lines[1].startswith("  run 1: b'") and lines[2].startswith("  run 2: b'")

    writer = tmp_path / "writer.py"
    writer.write_text(
        "import os, sys\nprint('same')\nopen(sys.argv[1], 'w').write('a\\n' + os.urandom(4).hex())\n"
    )
    result = cli("check", "--seed", "1", "--compare", "out.txt", str(writer), "out.txt", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1] == "not reproducible: out.txt line 2 differs"


def test_check_compare_file_reproducible(tmp_path: Path) -> None:
    """A --compare file with seeded content is reproducible."""
    writer = tmp_path / "writer.py"
    writer.write_text("import random, sys\nopen(sys.argv[1], 'w').write(str(random.random()))\n")
    result = cli("check", "--seed", "2", "--compare", "out.txt", "--", str(writer), "out.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 output(s) identical" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--seed", "1", "missing.py"], "cannot open script 'missing.py'"),
        (["run", "--seed", "1"], "a script (or -m module) is required"),
        (["run", "script.py"], "required: --seed"),
        (["check", "--seed", "1", "--runs", "1", "script.py"], "--runs must be an int of at least 2"),
        (["doctor", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_invocations(script: Path, args: list[str], message: str) -> None:
    """Bad invocations print a one-line error with the usage and exit 2, without a traceback."""
    result = cli(*args, cwd=script.parent)
    assert result.returncode == 2
    assert message in result.stderr
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_report_and_strict(tmp_path: Path) -> None:
    """doctor reports versions, sources, flags and hazards with fixes; --strict exits 1 on hazards."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    result = cli("doctor", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"versions", "sources", "flags", "hazards"}
    assert report["versions"]["python"] == sys.version.split()[0]
    assert {"random", "numpy"} <= set(report["sources"])
    hazards = {hazard["id"]: hazard for hazard in report["hazards"]}
    assert "PYTHONHASHSEED=0" in hazards["hash-randomization"]["fix"]
    assert all(hazard["message"] and hazard["fix"] for hazard in report["hazards"])
    assert cli("doctor", "--strict", cwd=tmp_path, env=env).returncode == 1
    text = cli("doctor", cwd=tmp_path, env=env).stdout
    assert "hazards:" in text and "fix (environment): start Python with PYTHONHASHSEED=0" in text
    assert "[hash-randomization]" in text


def test_doctor_clean_environment_under_strict(tmp_path: Path) -> None:
    """With hashing fixed and no torch hazards, doctor --strict exits 0."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    code = (
        "import sys; sys.modules['torch'] = None; from deterministic._cli import main; "
        "sys.exit(main(['doctor', '--strict']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hazards: 0" in result.stdout


@pytest.mark.parametrize("value", ["0", "12345"])
def test_doctor_fixed_hash_seed_is_no_hazard(tmp_path: Path, value: str) -> None:
    """A fixed PYTHONHASHSEED (0 or any number, as under run) is not reported as hash randomisation."""
    result = cli("doctor", "--json", cwd=tmp_path, env={**os.environ, "PYTHONHASHSEED": value})
    assert "hash-randomization" not in {hazard["id"] for hazard in json.loads(result.stdout)["hazards"]}
    unset = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    for env in (unset, {**unset, "PYTHONHASHSEED": "random"}):
        report = json.loads(cli("doctor", "--json", cwd=tmp_path, env=env).stdout)
        assert "hash-randomization" in {hazard["id"] for hazard in report["hazards"]}


def test_doctor_strict_fails_only_on_environment_hazards(tmp_path: Path) -> None:
    """--strict exits 0 when only hazards in code remain (torch flags), 1 for environment ones."""
    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    report = json.loads(cli("doctor", "--json", cwd=tmp_path, env=env).stdout)
    assert report["hazards"], "torch's default flags give hazards in code"
    assert not any(hazard["environment"] for hazard in report["hazards"])
    assert cli("doctor", "--strict", cwd=tmp_path, env=env).returncode == 0
    unset = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    assert cli("doctor", "--strict", cwd=tmp_path, env=unset).returncode == 1


def test_run_module_gets_its_own_options(tmp_path: Path) -> None:
    """Everything after -m module belongs to the module, options included, as with python -m."""
    (tmp_path / "f.json").write_text('{"b": 1, "a": 2}')
    result = cli("run", "--seed", "0", "-m", "json.tool", "--sort-keys", "f.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"a": 2, "b": 1}
    assert result.stdout.index('"a"') < result.stdout.index('"b"')


def test_run_script_gets_its_own_options(script: Path) -> None:
    """Options after the script belong to the script, even ones run also has."""
    result = cli("run", "--seed", "5", str(script), "--seed", "7", "--strict", cwd=script.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "['--seed', '7', '--strict'] __main__ True"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--seed", "1", "-m", "no_such_module_here"], "no module named 'no_such_module_here'"),
        (["run", "--seed", "1", "."], "cannot run '.': it is a directory, not a script"),
        (["run", "--seed", "1", "/dev/null"], "cannot run '/dev/null': it is not a regular file"),
        (["check", "--seed", "1", "-m", "no.such.module"], "no module named 'no.such.module'"),
        (["check", "--seed", "1", "--ignore", "(", "script.py"], "is not a valid regular expression"),
    ],
)
def test_bad_targets_are_one_line_errors(script: Path, args: list[str], message: str) -> None:
    """A missing module, a directory or a special file is a one-line error with that command's usage."""
    result = cli(*args, cwd=script.parent)
    assert result.returncode == 2
    assert message in result.stderr
    seed_usage = "--seed N" if args[0] == "run" else "[--seed N]"  # check draws one without it
    assert f"usage: deterministic {args[0]} {seed_usage}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["1.5", "0x10", "1e3", "1_000", " 7"])
def test_numeric_looking_seeds_are_refused(script: Path, value: str) -> None:
    """A seed that looks numeric but is not a decimal int is refused with exit 2."""
    result = cli("run", "--seed", value, str(script), cwd=script.parent)
    assert result.returncode == 2
    assert "looks like a number but is not a decimal int" in result.stderr


def test_word_seeds_are_accepted(script: Path) -> None:
    """A word is a seed (mapped through derive_seed), and the same word gives the same run."""
    first = cli("run", "--seed", "baseline", str(script), cwd=script.parent)
    second = cli("run", "--seed", "baseline", str(script), cwd=script.parent)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout


def test_check_ignores_lines_and_progress_bars(tmp_path: Path) -> None:
    """--ignore drops matching lines; carriage-return progress output compares as its final state."""
    noisy = tmp_path / "noisy.py"
    noisy.write_text(
        textwrap.dedent(
            r"""
            import os, random, sys, time
            for step in range(3):
                sys.stdout.write(f"\r{step}/3 {os.urandom(2).hex()} it/s")
            sys.stdout.write("\r3/3 done\n")
            print("loss", random.random())
            print("took", time.perf_counter_ns(), "ns")
            """
        )
    )
    plain = cli("check", "--seed", "3", str(noisy), cwd=tmp_path)
    assert plain.returncode == 1
    assert "line 3 differs" in plain.stdout  # the timing line; the progress bar compared equal
    ignoring = cli("check", "--seed", "3", "--ignore", r"^took \d+", str(noisy), cwd=tmp_path)
    assert ignoring.returncode == 0, ignoring.stdout + ignoring.stderr
    assert ignoring.stdout.splitlines()[0] == "check: effective seed 3, 2 runs"


def test_check_compares_globbed_checkpoints(tmp_path: Path) -> None:
    """--compare takes a glob; every matching file is compared, and differing file sets are reported."""
    writer = tmp_path / "writer.py"
    writer.write_text(
        textwrap.dedent(
            """
            import os, random, sys
            os.makedirs("ckpt", exist_ok=True)
            for epoch in range(3):
                open(f"ckpt/epoch{epoch}.bin", "wb").write(random.randbytes(64))
            if len(sys.argv) > 1:
                open(f"ckpt/extra{os.getpid()}.bin", "wb").write(b"x")
            """
        )
    )
    good = cli("check", "--seed", "4", "--compare", "ckpt/*.bin", str(writer), cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "4 output(s) identical" in good.stdout
    bad = cli("check", "--seed", "4", "--compare", "ckpt/*.bin", str(writer), "extra", cwd=tmp_path)
    assert bad.returncode == 1
    assert "wrote different files" in bad.stdout


def test_check_prints_effective_seed_of_a_word(script: Path) -> None:
    """check prints the effective seed, so a word seed can be repeated as a number."""
    from deterministic._seeds import seed_from_text

    result = cli("check", "--seed", "experiment-7", str(script), cwd=script.parent)
    assert result.stdout.splitlines()[0] == f"check: effective seed {seed_from_text('experiment-7')}, 2 runs"


def test_console_script_installed() -> None:
    """The `deterministic` console script is installed next to the interpreter."""
    executable = Path(sys.executable).parent / "deterministic"
    result = subprocess.run(
        [str(executable), "doctor", "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "versions" in json.loads(result.stdout)


CHILDREN = textwrap.dedent(
    """
    import multiprocessing as mp, os, random, subprocess, sys
    import numpy as np

    def work(queue):
        queue.put((mp.current_process().name, random.random(), float(np.random.rand())))

    if __name__ == "__main__":
        out = {}
        for method in ("spawn", "forkserver"):
            context = mp.get_context(method)
            queue = context.Queue()
            processes = [context.Process(target=work, args=(queue,)) for _ in range(2)]
            for process in processes:
                process.start()
            out[method] = sorted(queue.get() for _ in processes)
            for process in processes:
                process.join()
        code = "import os, random; print(random.random(), os.environ.get('OWN_SITECUSTOMIZE'))"
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        out["subprocess"] = child.stdout
        print(out)
    """
)


def test_run_seeds_spawned_children(tmp_path: Path) -> None:
    """Under run, spawn and forkserver children and Python subprocesses draw the same in every run."""
    program = tmp_path / "children.py"
    program.write_text(CHILDREN)
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text("import os\nos.environ['OWN_SITECUSTOMIZE'] = 'ran'\n")
    env = {**os.environ, "PYTHONPATH": str(own)}
    runs = [cli("run", "--seed", "3", str(program), cwd=tmp_path, env=env) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    assert "ran" in runs[0].stdout  # the environment's own sitecustomize still runs in children
    assert "Error in sitecustomize" not in runs[0].stderr
    children = eval(runs[0].stdout)  # our own script's repr
    spawned = [draws for _, *draws in children["spawn"]]
    assert spawned[0] != spawned[1]  # each process has its own stream
    other = cli("run", "--seed", "4", str(program), cwd=tmp_path, env=env)
    assert other.stdout != runs[0].stdout
    free = [cli("run", "--seed", "3", "--no-children", str(program), cwd=tmp_path, env=env) for _ in range(2)]
    assert free[0].stdout != free[1].stdout  # opted out: children seed themselves from OS entropy


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is not None, reason="checks the message shown without torch"
)
def test_check_trace_without_torch_is_a_usage_error(script: Path) -> None:
    """check --trace without torch installed is a one-line usage error, exit 2, and runs nothing."""
    result = cli("check", "--trace", "--seed", "1", "script.py", cwd=script.parent)
    assert result.returncode == 2
    assert "--trace records torch operator calls, and torch is not installed" in result.stderr
    assert "check: effective seed" not in result.stdout


def test_check_trace_dir_that_cannot_be_made_is_a_usage_error(script: Path) -> None:
    """A --trace-dir that cannot be created is a one-line usage error, exit 2."""
    blocker = script.parent / "a-file"
    blocker.write_text("")
    result = cli("check", "--trace-dir", str(blocker / "sub"), "--seed", "1", "script.py", cwd=script.parent)
    assert result.returncode == 2
    assert "cannot be used" in result.stderr or "torch is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_trace_without_seed_draws_one_for_both_runs(tmp_path: Path) -> None:
    """check --trace without --seed draws one fresh seed, prints it, and both runs use it."""
    pytest.importorskip("torch")
    path = tmp_path / "draw.py"
    path.write_text("import torch\nprint(torch.initial_seed(), torch.rand(2).tolist())\n")
    result = cli("check", "--trace", "--trace-dir", str(tmp_path / "traces"), "draw.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    first_line = result.stdout.splitlines()[0]
    assert first_line.startswith("check: effective seed ") and first_line.endswith(", 2 runs, traced")
    seed = int(first_line.split()[3].rstrip(","))
    assert "reproducible" in result.stdout
    single = cli("run", "--seed", str(seed), "draw.py", cwd=tmp_path)
    assert single.stdout.split()[0] == str(seed)


THREADED = textwrap.dedent(
    """
    import random, threading
    from deterministic import deterministic, seeded

    @seeded(1)
    def in_thread():
        return random.random()

    results = []
    worker = threading.Thread(target=lambda: results.append(in_thread()))
    worker.start()
    worker.join(20)
    print("joined" if not worker.is_alive() else "blocked", results)
    with deterministic(1):
        print(random.random())
    print(random.random())
    """
)


def test_run_lets_other_threads_enter_scopes(tmp_path: Path) -> None:
    """Under run, a thread's scope never waits for the main thread: run seeds the start, it holds no scope."""
    path = tmp_path / "threaded.py"
    path.write_text(THREADED)
    result = cli("run", "--seed", "7", "threaded.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    joined, scoped, after = result.stdout.splitlines()
    with deterministic(1):
        expected = random.random()
    assert joined == f"joined [{expected!r}]"
    assert float(scoped) == expected
    with outside_state_restored():
        random.seed(7)
        assert float(after) == random.random()  # the process started as the classic recipe leaves it


def test_run_seeds_torch_imported_later(tmp_path: Path) -> None:
    """Under run, torch imported late is seeded with the run's seed, also inside a scope entered before."""
    pytest.importorskip("torch")
    path = tmp_path / "late.py"
    path.write_text(
        "from deterministic import deterministic\n"
        "with deterministic(3):\n    import torch\n    inside = torch.rand(2).tolist()\n"
        "print(inside, torch.rand(2).tolist(), torch.initial_seed())\n"
    )
    result = cli("run", "--seed", "11", "late.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import torch

    with outside_state_restored():
        torch.manual_seed(3)
        inside = torch.rand(2).tolist()
        torch.manual_seed(11)
        after = torch.rand(2).tolist()
    assert result.stdout.strip() == f"{inside} {after} 11"
