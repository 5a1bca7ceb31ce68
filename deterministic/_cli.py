"""The command line: ``python -m deterministic doctor | run | check``."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

from ._children import CHILD_SEED_VARIABLE, child_environment
from ._flags import CUBLAS_CONFIGS, CUBLAS_VARIABLE
from ._seeds import derive_seed, draw_fresh_seed, seed_from_text
from ._sources import SOURCES

TYPE_CHECKING = False  # typing is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["hash_seed", "main"]

USAGE_EXIT = 2


def hash_seed(seed: int) -> int:
    """Return the ``PYTHONHASHSEED`` that ``run`` and ``check`` use for an effective seed.

    Args:
        seed: The effective seed.

    Returns:
        ``derive_seed(seed, "PYTHONHASHSEED")``, in ``[0, 2**32)`` as Python accepts.
    """
    return derive_seed(seed, "PYTHONHASHSEED")


def _seed_argument(text: str) -> int:
    """Parse ``--seed``: an int (any size) or, failing that, a string, as a scope accepts."""
    try:
        return seed_from_text(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _runs_argument(text: str) -> int:
    try:
        runs = int(text, 10)
    except ValueError:
        runs = 0
    if runs < 2:
        raise argparse.ArgumentTypeError(f"--runs must be an int of at least 2, not {text!r}")
    return runs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deterministic",
        description="Check and run Python programs for reproducibility.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{doctor,run,check,selftest}")

    doctor = commands.add_parser("doctor", help="report versions, RNG sources, flags and hazards")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.add_argument(
        "--strict", action="store_true", help="exit 1 when a hazard the environment can fix is found"
    )

    selftest = commands.add_parser(
        "selftest",
        help="run the library's correctness probes on CPU and every accelerator, each in a fresh process",
    )
    selftest.add_argument("--json", action="store_true", help="print one JSON object")
    selftest.add_argument(
        "--device",
        choices=("cuda", "mps", "xpu", "all"),
        default="all",
        help="which accelerators (default all)",
    )

    for name, help_text in (
        ("run", "run a script or module under a seed, in a fresh interpreter"),
        ("check", "run a script several times and compare its outputs byte for byte"),
    ):
        seed_usage = "--seed N" if name == "run" else "[--seed N]"
        command = commands.add_parser(
            name,
            help=help_text,
            usage=f"deterministic {name} {seed_usage} [options] [--] script.py [args ...]\n"
            f"       deterministic {name} {seed_usage} [options] -m module [args ...]",
        )
        command.add_argument(
            "--seed",
            required=name == "run",
            type=_seed_argument,
            help="the seed: decimal digits, or a word"
            + ("" if name == "run" else " (default: a fresh one, printed, the same for every run)"),
        )
        command.add_argument(
            "--strict",
            action="store_true",
            help=f"also enable deterministic algorithms and set {CUBLAS_VARIABLE}={CUBLAS_CONFIGS[0]}",
        )
        command.add_argument(
            "--no-children",
            action="store_true",
            help="do not seed the Python processes the program starts (spawn, forkserver, subprocess)",
        )
        if name == "run":
            command.add_argument(
                "--verbose",
                action="store_true",
                help="print a line to stderr for every Python child that is seeded "
                "(a child not listed was not seeded)",
            )
        if name == "check":
            command.add_argument("--runs", type=_runs_argument, default=2, help="how many runs (default 2)")
            command.add_argument(
                "--compare",
                action="append",
                default=[],
                metavar="PATH",
                help="a file, or a glob of files, the script writes, compared between runs (repeatable)",
            )
            command.add_argument(
                "--ignore",
                action="append",
                default=[],
                metavar="REGEX",
                help="drop output lines matching REGEX before comparing (repeatable)",
            )
            command.add_argument(
                "--trace",
                action="store_true",
                help="record every torch op of each run and report the first op, module and line "
                "where the runs differ, and why",
            )
            command.add_argument(
                "--trace-dir",
                metavar="DIR",
                help="where --trace writes run1.dtrace, run2.dtrace, ... (default: a new temporary one)",
            )
        # Shown in the help; the parsing of -m and the target is done by _split_target.
        command.add_argument("-m", dest="module", metavar="module", help="run a module, like python -m")
        command.add_argument("target", nargs="*", help="the script and its arguments")
    return parser


#: Options of run and check that take a value (needed to find where the target begins).
_VALUED = ("--seed", "--runs", "--compare", "--ignore", "--trace-dir")  # the flags take none


def _split_target(argv: list[str]) -> tuple[list[str], str | None, list[str] | None]:
    """Split ``run``/``check`` arguments into their own options, ``-m``'s module and the target.

    Everything after the script or after ``-m module`` belongs to the target, as with
    ``python script.py ...`` and ``python -m module ...``; so does everything after ``--``.

    Args:
        argv: The arguments after the subcommand.

    Returns:
        (own options, module or None, target arguments or None when none was given).
    """
    own: list[str] = []
    index = 0
    while index < len(argv):
        argument = argv[index]
        if argument == "--":
            return own, None, argv[index + 1 :]
        if argument == "-m":
            if index + 1 == len(argv):
                own.append(argument)  # argparse reports the missing module
                return own, None, None
            return own, argv[index + 1], argv[index + 2 :]
        if argument.startswith("-m") and not argument.startswith("--"):
            return own, argument[2:], argv[index + 1 :]
        if argument in _VALUED:
            own += argv[index : index + 2]
            index += 2
            continue
        if argument.startswith("-") and argument != "-":
            own.append(argument)
            index += 1
            continue
        return own, None, argv[index:]
    return own, None, None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        The exit status: 0 on success, 1 for hazards under ``--strict`` or an
        irreproducible ``check``, 2 for a bad invocation, else the script's own status.
    """
    parser = _parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    module: str | None = None
    target: list[str] | None = None
    if arguments and arguments[0] in ("run", "check"):
        own, module, target = _split_target(arguments[1:])
        arguments = [arguments[0], *own]
    args = parser.parse_args(arguments)
    if args.command == "doctor":
        return _doctor(args.json, args.strict)
    if args.command == "selftest":
        from ._selftest import main as selftest  # noqa: PLC0415 - only this command needs it

        return selftest(args.json, args.device)
    if args.seed is None:  # check without --seed: one fresh seed, printed by _check, for every run
        args.seed = draw_fresh_seed()
    command = _child_command(
        parser, args.command, seed=args.seed, strict=args.strict, module=module, target=target
    )
    env = _child_environment(
        args.seed, args.strict, children=not args.no_children, verbose=getattr(args, "verbose", False)
    )
    if args.command == "run":
        return subprocess.run(command, env=env, check=False).returncode
    ignore = _patterns(parser, args.ignore)
    traces = None
    if args.trace or args.trace_dir is not None:
        traces = _trace_paths(parser, args.trace_dir, args.runs)
    return _check(
        command, env, seed=args.seed, runs=args.runs, compare=args.compare, ignore=ignore, traces=traces
    )


def _trace_paths(parser: argparse.ArgumentParser, directory: str | None, runs: int) -> list[str]:
    """The trace file of each run, in ``directory`` (made if missing) or a new temporary one."""
    import importlib.util  # noqa: PLC0415 - only check --trace needs it

    if importlib.util.find_spec("torch") is None:
        _usage_error(parser, "check", "--trace records torch operator calls, and torch is not installed")
    if directory is None:
        import tempfile  # noqa: PLC0415 - only check --trace needs it

        directory = tempfile.mkdtemp(prefix="deterministic-trace-")
    else:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as error:
            _usage_error(parser, "check", f"--trace-dir {directory!r} cannot be used: {error.strerror}")
    return [os.path.join(directory, f"run{run + 1}.dtrace") for run in range(runs)]


def _patterns(parser: argparse.ArgumentParser, expressions: list[str]) -> list[re.Pattern[str]]:
    patterns = []
    for expression in expressions:
        try:
            patterns.append(re.compile(expression))
        except re.error as error:
            _usage_error(
                parser, "check", f"--ignore {expression!r} is not a valid regular expression: {error}"
            )
    return patterns


def _child_command(
    parser: argparse.ArgumentParser,
    name: str,
    *,
    seed: int,
    strict: bool,
    module: str | None,
    target: list[str] | None,
) -> list[str]:
    """The command that runs the target in a fresh interpreter through ``_runner``."""
    runner = [sys.executable, "-m", "deterministic._runner", str(seed), str(int(strict))]
    if module is not None:
        _check_module(parser, name, module)
        return [*runner, "-m", module, *(target or [])]
    if not target:
        _usage_error(parser, name, "a script (or -m module) is required")
    assert target is not None
    script = target[0]
    if os.path.isdir(script):
        _usage_error(parser, name, f"cannot run {script!r}: it is a directory, not a script")
    if not os.path.exists(script):
        _usage_error(parser, name, f"cannot open script {script!r}: no such file")
    if not os.path.isfile(script):
        _usage_error(parser, name, f"cannot run {script!r}: it is not a regular file")
    return [*runner, "--", *target]


def _check_module(parser: argparse.ArgumentParser, name: str, module: str) -> None:
    """Refuse a module that cannot be found, as ``python -m`` would, with one line and exit 2."""
    import importlib.util  # noqa: PLC0415 - only run -m needs it

    if not module:
        _usage_error(parser, name, "-m needs a module name")
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        _usage_error(parser, name, f"no module named {module!r}")


def _usage_error(parser: argparse.ArgumentParser, name: str, message: str) -> None:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    subparsers.choices[name].error(message)


def _child_environment(seed: int, strict: bool, children: bool, verbose: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(CHILD_SEED_VARIABLE, None)  # a run inside a run starts its own family
    env["PYTHONHASHSEED"] = str(hash_seed(seed))
    if strict:
        env[CUBLAS_VARIABLE] = CUBLAS_CONFIGS[0]
    return child_environment(env, seed, verbose) if children else env


def _matches(pattern: str) -> list[str]:
    """The files a ``--compare`` value names: itself, or what it matches as a glob."""
    import glob  # noqa: PLC0415 - only check needs it

    if glob.has_magic(pattern):
        return sorted(path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))
    return [pattern]


def _shown_lines(output: bytes, ignore: list[re.Pattern[str]]) -> bytes:
    r"""What a terminal would show, less ignored lines: text after a line's last ``\r`` only."""
    shown = []
    for line in output.split(b"\n"):
        line = line.rsplit(b"\r", 1)[-1]  # noqa: PLW2901 - a progress bar redraws its line
        text = line.decode("utf-8", "replace")
        if not any(pattern.search(text) for pattern in ignore):
            shown.append(line)
    return b"\n".join(shown)


def _collect(run: int, compare: list[str]) -> dict[str, bytes] | None:
    """Read the files a run wrote for ``--compare``; ``None`` (reported) when one is missing."""
    files: dict[str, bytes] = {}
    for pattern in compare:
        paths = _matches(pattern)
        if not paths:
            print(f"run {run + 1} produced no file matching {pattern}", file=sys.stderr)
            return None
        for path in paths:
            try:
                with open(path, "rb") as produced:
                    files[path] = produced.read()
            except OSError as error:
                print(f"run {run + 1} did not produce {path}: {error.strerror}", file=sys.stderr)
                return None
    return files


def _check(
    command: list[str],
    env: dict[str, str],
    *,
    seed: int,
    runs: int,
    compare: list[str],
    ignore: list[re.Pattern[str]],
    traces: list[str] | None = None,
) -> int:
    """Run ``command`` ``runs`` times; compare stdout and the ``compare`` files with the first run.

    With ``traces`` (a file per run), each run is traced, and the first difference
    between the traces is reported before the outputs are compared.
    """
    print(f"check: effective seed {seed}, {runs} runs{', traced' if traces else ''}", flush=True)
    outputs: list[dict[str, bytes]] = []
    for run in range(runs):
        for pattern in compare:
            for path in _matches(pattern):
                if os.path.exists(path):
                    os.remove(path)
        run_env = env
        if traces is not None:
            from ._runner import TRACE_VARIABLE  # noqa: PLC0415 - only check --trace needs it

            run_env = {**env, TRACE_VARIABLE: traces[run]}
        result = subprocess.run(command, env=run_env, stdout=subprocess.PIPE, check=False)
        sys.stdout.flush()
        if result.returncode != 0:
            print(f"run {run + 1} exited with status {result.returncode}", file=sys.stderr)
            if traces is not None and runs > 1:
                return _check_crashed_traces(command, env, traces, run, result.returncode)
            return 1
        written = _collect(run, compare)
        if written is None:
            return 1
        outputs.append({"<stdout>": _shown_lines(result.stdout, ignore), **written})
    if traces is not None:
        return _check_traces(traces, outputs)
    difference = _output_difference(outputs)
    if difference is not None:
        print(difference)
        return 1
    print(f"reproducible: {runs} runs, {len(outputs[0])} output(s) identical")
    return 0


def _output_difference(outputs: list[dict[str, bytes]]) -> str | None:
    """How the first run's outputs and a later run's first differ, or ``None``."""
    for run, files in enumerate(outputs[1:], start=2):
        if set(files) != set(outputs[0]):
            only = sorted(set(files) ^ set(outputs[0]))
            return f"not reproducible: run 1 and run {run} wrote different files: {', '.join(only)}"
        for name, content in files.items():
            first = outputs[0][name]
            if content != first:
                return _first_difference(name, first, content, run)
    return None


def _check_crashed_traces(
    command: list[str], env: dict[str, str], traces: list[str], run: int, status: int
) -> int:
    """A traced run failed: trace the next run too, then report where the traces first differ.

    Both traces are readable up to the failure, and the first divergence usually
    explains it (a NaN guard that fires in one run only, say).
    """
    from ._runner import TRACE_VARIABLE  # noqa: PLC0415 - only check --trace needs it
    from ._trace._comparing import compare  # noqa: PLC0415

    if run == 0:  # the first run failed: a second one, to compare with
        result = subprocess.run(
            command, env={**env, TRACE_VARIABLE: traces[1]}, stdout=subprocess.PIPE, check=False
        )
        sys.stdout.flush()
        print(f"run 2 exited with status {result.returncode}", file=sys.stderr)
        other = 1
    else:
        other = run
    try:
        divergence, unread = compare(traces[0], traces[other])
    except (OSError, ValueError) as error:
        print(f"the traces cannot be compared: {error}")
        return 1
    if divergence is None and unread is not None:
        print(
            f"run {run + 1} exited with status {status}; the traces match at every value a later op read, "
            f"but op #{unread.index} produced values that differ (no later op read them, or its results "
            "were equal all the same: NaN in both runs, say):"
        )
        print(unread)
    elif divergence is None:
        print(
            f"run {run + 1} exited with status {status}, and the traces match up to where it stopped: "
            "the failure did not come from a torch op's values"
        )
    else:
        print(
            f"not reproducible: run {run + 1} exited with status {status}; "
            f"the traces of run 1 and run {other + 1} differ first here:"
        )
        print(divergence)
    return 1


def _check_traces(traces: list[str], outputs: list[dict[str, bytes]]) -> int:
    """Report the first divergence between run 1's trace and a later one's, else compare outputs."""
    from ._trace._comparing import alerts_of, compare  # noqa: PLC0415 - only check --trace needs it
    from ._trace._reporting import alert_line  # noqa: PLC0415

    unread = None
    for run, path in enumerate(traces[1:], start=2):
        divergence, unread_here = compare(traces[0], path)
        unread = unread or unread_here
        if divergence is not None:
            print(f"not reproducible: the traces of run 1 and run {run} differ")
            print(divergence)
            return 1
    difference = _output_difference(outputs)
    alerts = alerts_of(traces[0])
    if alerts:
        print("torch flagged these ops as nondeterministic on this device (warn_only alerts):")
        for alert in alerts:
            print(alert_line(alert))
    if difference is not None:
        if unread is not None:
            print(
                "the traces match at every value a later torch op read; op "
                f"#{unread.index} {unread.op} at {unread.location} produced values that differ and that "
                "no later torch op read (the program may have used them outside torch, e.g. through "
                ".numpy() or .tolist(), or saved them):"
            )
            print(unread)
        else:
            print(
                "the traces match: every torch op consumed and produced the same values in every run, "
                "so the difference arose outside torch ops (Python-level randomness, time, I/O)"
            )
        print(difference)
        print(f"traces: {', '.join(traces)}")
        return 1
    # Values that differ but that no traced op read (scratch memory, say) do not matter.
    match = "traces identical" if unread is None else "traces match at every value read"
    print(f"reproducible: {len(traces)} runs, {len(outputs[0])} output(s) identical, {match}")
    print(f"traces: {', '.join(traces)}")
    return 0


def _first_difference(name: str, first: bytes, other: bytes, run: int) -> str:
    first_lines = first.splitlines(keepends=True)
    other_lines = other.splitlines(keepends=True)
    for number, (a, b) in enumerate(zip(first_lines, other_lines, strict=False), start=1):
        if a != b:
            return f"not reproducible: {name} line {number} differs\n  run 1: {a!r}\n  run {run}: {b!r}"
    number = min(len(first_lines), len(other_lines)) + 1
    a = first_lines[number - 1] if number <= len(first_lines) else b"<end of output>"
    b = other_lines[number - 1] if number <= len(other_lines) else b"<end of output>"
    return f"not reproducible: {name} line {number} differs\n  run 1: {a!r}\n  run {run}: {b!r}"


def _doctor(as_json: bool, strict: bool) -> int:
    report = doctor_report()
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(_format_report(report))
    fixable = [hazard for hazard in report["hazards"] if hazard["environment"]]
    return 1 if strict and fixable else 0


def _version(module: str) -> str | None:
    try:
        imported = __import__(module)
    except ImportError:
        return None
    return str(getattr(imported, "__version__", "unknown"))


def doctor_report() -> dict[str, Any]:
    """Collect versions, RNG sources, flags and hazards (each with its exact fix).

    Returns:
        ``{"versions", "sources", "flags", "hazards"}``; see the command-line docs for the schema.
    """
    versions: dict[str, Any] = {"python": sys.version.split()[0], "numpy": _version("numpy"), "torch": None}
    if versions["numpy"] is not None:
        import numpy.random  # noqa: F401, PLC0415 - so that the NumPy source counts as found
    versions.update({"cuda": None, "cudnn": None})
    flags: dict[str, Any] = {
        "hash_randomization": bool(sys.flags.hash_randomization),
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
        CUBLAS_VARIABLE: os.environ.get(CUBLAS_VARIABLE),
    }
    hazards: list[dict[str, Any]] = []
    if os.environ.get("PYTHONHASHSEED", "random") in ("", "random"):
        hazards.append(
            {
                "id": "hash-randomization",
                "message": "hash randomisation is on: set order and hash() of str differ between runs",
                "fix": "start Python with PYTHONHASHSEED=0, or run through `python -m deterministic run`",
                "environment": True,
            }
        )
    if _version("torch") is not None:
        _torch_report(sys.modules["torch"], versions, flags, hazards)
    sources = [name for name, source in SOURCES.items() if source.available()]
    return {"versions": versions, "sources": sources, "flags": flags, "hazards": hazards}


def _torch_report(
    torch: Any, versions: dict[str, Any], flags: dict[str, Any], hazards: list[dict[str, Any]]
) -> None:
    versions["torch"] = torch.__version__
    versions["cuda"] = torch.version.cuda
    cuda_available = bool(torch.cuda.is_available())
    cudnn = torch.backends.cudnn
    versions["cudnn"] = cudnn.version() if cuda_available and cudnn.is_available() else None
    flags.update(
        {
            "cuda_available": cuda_available,
            "cudnn.deterministic": bool(cudnn.deterministic),
            "cudnn.benchmark": bool(cudnn.benchmark),
            "cudnn.enabled": bool(cudnn.enabled),
            "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
            "deterministic_algorithms_warn_only": bool(torch.is_deterministic_algorithms_warn_only_enabled()),
            "cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }
    )
    if cuda_available and os.environ.get(CUBLAS_VARIABLE) not in CUBLAS_CONFIGS:
        hazards.append(
            {
                "id": "cublas-workspace-config",
                "message": f"{CUBLAS_VARIABLE} is {os.environ.get(CUBLAS_VARIABLE)!r} while CUDA is "
                "available: cuBLAS may be non-deterministic",
                "fix": f"export {CUBLAS_VARIABLE}={CUBLAS_CONFIGS[0]} before starting Python",
                "environment": True,
            }
        )
    if cudnn.benchmark:
        hazards.append(
            {
                "id": "cudnn-benchmark",
                "message": "cudnn.benchmark is on: convolution algorithms are chosen by timing",
                "fix": "torch.backends.cudnn.benchmark = False, or use deterministic(...) (off by default)",
                "environment": False,
            }
        )
    if not torch.are_deterministic_algorithms_enabled():
        hazards.append(
            {
                "id": "deterministic-algorithms-off",
                "message": "deterministic algorithms are off: some operations are non-deterministic",
                "fix": "torch.use_deterministic_algorithms(True), "
                "or deterministic(..., deterministic_algorithms=True)",
                "environment": False,
            }
        )
    if torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest":
        hazards.append(
            {
                "id": "tf32-matmul",
                "message": "TF32 matmul is on: float32 matmul results depend on the hardware",
                "fix": "torch.backends.cuda.matmul.allow_tf32 = False; "
                'torch.set_float32_matmul_precision("highest")',
                "environment": False,
            }
        )
    if torch.cuda._is_in_bad_fork():
        hazards.append(
            {
                "id": "bad-fork",
                "message": "this process was forked after CUDA was initialised: CUDA cannot be used here",
                "fix": "start worker processes with the 'spawn' method, or initialise CUDA after forking",
                "environment": False,
            }
        )


def _format_report(report: dict[str, Any]) -> str:
    lines = ["deterministic doctor", "", "versions:"]
    lines += [
        f"  {name}: {value if value is not None else 'not installed'}"
        for name, value in report["versions"].items()
    ]
    lines += ["", f"RNG sources found: {', '.join(report['sources']) or 'none'}", "", "flags:"]
    lines += [f"  {name}: {value}" for name, value in report["flags"].items()]
    lines += ["", f"hazards: {len(report['hazards'])}"]
    for hazard in report["hazards"]:
        where = "environment" if hazard["environment"] else "code"
        lines += [f"  - [{hazard['id']}] {hazard['message']}", f"    fix ({where}): {hazard['fix']}"]
    return "\n".join(lines)
