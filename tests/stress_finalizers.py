"""Stress: abandoned @seeded generators finalised by the garbage collector at any moment.

Runs a loop that enters thousands of scopes, draws globally, and abandons started
decorated generators in reference cycles (whose cleanup draws in its own stream) while
the collector runs very often. It then reruns the same number of iterations without the
generators, from the same starting state, and compares the final global states. Prints a
JSON summary; exits 0 when the states match, nothing was reported as an unraisable error
or warning, and no scope or lock is left behind.

Usage: python tests/stress_finalizers.py --seconds 40 --sources all|torch
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
import warnings
from typing import Any

import numpy as np
import torch

from deterministic import _scope, deterministic, seeded


class Node:
    """A reference cycle that keeps an abandoned generator until the collector finds it."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        self.me = self


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sources", choices=("all", "torch"), default="all")
    options = parser.parse_args()
    torch_only = options.sources == "torch"
    sources = ("torch",) if torch_only else None

    def draw() -> None:
        if not torch_only:
            random.random()
            np.random.rand()
        torch.rand(2)

    @seeded(7, sources=sources)
    def stream() -> Any:
        try:
            while True:
                draw()
                yield
        finally:
            draw()  # cleanup that draws: it must do so in the generator's own stream

    problems: list[str] = []

    def record(unraisable: Any) -> None:
        problems.append(f"{unraisable.exc_type.__name__}: {unraisable.exc_value}")

    sys.unraisablehook = record

    def start() -> None:
        random.seed(1)
        np.random.seed(1)
        torch.manual_seed(1)

    def final() -> list[Any]:
        gc.collect()
        return [random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state().tolist()]

    def body(index: int, generators: bool) -> None:
        with deterministic(index, sources=sources):
            draw()
            if generators and index % 3 == 0:
                g = stream()
                next(g)  # started inside another scope, then abandoned
                Node(g)
        draw()
        if generators:
            g = stream()
            next(g)
            next(g)
            Node(g)
        [object() for _ in range(index % 17)]  # allocation churn moves collections around

    gc.set_threshold(25, 3, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start()
        count = 0
        deadline = time.perf_counter() + options.seconds
        while time.perf_counter() < deadline:
            body(count, generators=True)
            count += 1
        with_generators = final()
        start()
        for index in range(count):
            body(index, generators=False)
        control = final()
    problems += [f"{w.category.__name__}: {w.message}" for w in caught]
    leftovers = {"stack": len(_scope._STACK), "lock_count": _scope._LOCK.count}
    ok = with_generators == control and not problems and leftovers == {"stack": 0, "lock_count": 0}
    print(
        json.dumps(
            {
                "iterations": count,
                "states_equal": with_generators == control,
                "problems": problems[:5],
                "problem_count": len(problems),
                **leftovers,
                "ok": ok,
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
