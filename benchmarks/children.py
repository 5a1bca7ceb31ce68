"""What the startup hook of ``run`` adds to the start of every Python child.

Run: ``python benchmarks/children.py`` (full), ``--quick`` (CI smoke run), ``--json`` (one
JSON object instead of the text).

Under ``python -m deterministic run`` every Python interpreter the program starts imports
the hook (``deterministic/_startup/sitecustomize.py``) and is seeded before its own code
runs. This times fresh ``python -c pass`` interpreters with the environment ``run`` gives
children (``child_environment``) and without it, in interleaved rounds, and reports the
medians, the time added and the ratio (target: at most 10 ms added). It also reports the
hook's own import time from ``python -X importtime`` and the modules the hook imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from deterministic._children import child_environment

TARGET_MS = 10.0
#: Modules whose presence would mean the hook imports more than seeding needs.
HEAVY = ("wrapt", "asyncio", "typing_extensions", "numpy", "torch", "logging", "inspect")


def start_ms(env: dict[str, str]) -> float:
    """The wall time of one fresh ``python -c pass`` with ``env``, in milliseconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return (time.perf_counter() - start) * 1e3


def hook_import_ms(env: dict[str, str]) -> float:
    """The cumulative ``-X importtime`` of ``sitecustomize`` (the hook and all it imports), in ms."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    # The outermost line: the hook also imports the environment's own sitecustomize.
    times = [0]
    for line in result.stderr.splitlines():
        fields = [field.strip() for field in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == "sitecustomize":
            times.append(int(fields[1]))
    return max(times) / 1e3


def modules(env: dict[str, str]) -> set[str]:
    """The modules a fresh interpreter with ``env`` has imported when its own code starts."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return set(result.stdout.split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few interpreters (CI smoke run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    rounds = 10 if args.quick else 60

    # Measure what users get: bytecode caches written and used.
    plain = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    hooked = child_environment(plain, 0)
    for env in (plain, hooked):  # warm-up, also writes bytecode
        start_ms(env)
    without, with_hook, hook_ms = [], [], []
    for _ in range(rounds):  # interleaved, to share any drift of the machine
        without.append(start_ms(plain))
        with_hook.append(start_ms(hooked))
    for _ in range(max(3, rounds // 5)):
        hook_ms.append(hook_import_ms(hooked))
    added_modules = sorted(modules(hooked) - modules(plain))
    without_ms, with_ms = statistics.median(without), statistics.median(with_hook)
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "rounds": rounds,
        "without_hook_ms": without_ms,
        "with_hook_ms": with_ms,
        "added_ms": with_ms - without_ms,
        "ratio": with_ms / without_ms,
        "target_added_ms": TARGET_MS,
        "hook_importtime_ms": statistics.median(hook_ms),
        "modules_added": len(added_modules),
        "heavy_modules_added": [name for name in HEAVY if name in added_modules],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    machine = result["machine"]
    print(f"Python {machine['python']}, {machine['cpus']} CPUs, {machine['platform']}")
    print(f"median of {rounds} interleaved fresh interpreters each (python -c pass)\n")
    print(f"without the hook: {without_ms:7.1f} ms")
    print(f"with the hook:    {with_ms:7.1f} ms")
    print(
        f"added:            {result['added_ms']:7.1f} ms (x{result['ratio']:.2f}; target at most "
        f"{TARGET_MS:.0f} ms added)"
    )
    print(f"the hook under -X importtime: {result['hook_importtime_ms']:.1f} ms (inflated by the tracing)")
    heavy = ", ".join(result["heavy_modules_added"]) or "none"
    print(f"modules the hook imports: {len(added_modules)}; of {', '.join(HEAVY)}: {heavy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
