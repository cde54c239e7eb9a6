"""Wall-clock timing for benchmarks and evaluation: medians after warm-up, round-robin pairs.

Every speed number of the project goes through here, so "median of N after warm-up, synchronised"
means the same thing in the bench, evaluation and the ablation runner.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def time_call(
    fn: Callable[[], Any], repeats: int, warmup: int = 1, sync: Callable[[Any], Any] | None = None
) -> dict[str, float]:
    """Median wall time of `fn()` over `repeats`, after `warmup` calls (the first compiles).

    `sync` waits for the result (default `jax.block_until_ready`), so async dispatch is counted.
    """
    sync = sync or jax.block_until_ready
    start = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        sync(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    if not times:
        return {"first_call_s": first}
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "first_call_s": first,
    }


def time_interleaved(
    calls: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> tuple[dict[str, dict[str, float]], list[dict[str, float]]]:
    """`time_call` for several functions in round-robin, so a shared machine's load drifts hit all
    of them alike; also returns each round's times, for paired ratios."""
    timings = {}
    for name, fn in calls.items():  # compile + warm-up, one function after the other
        timings[name] = time_call(fn, 0, warmup)
    rounds = []
    for _ in range(repeats):
        this = {}
        for name, fn in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            this[name] = time.perf_counter() - start
        rounds.append(this)
    for name in calls:
        times = [r[name] for r in rounds]
        timings[name].update(median_s=statistics.median(times), min_s=min(times), max_s=max(times))
    return timings, rounds


def rounded(t: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in t.items()}


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """`time_call`'s median with one warm-up call: the number evaluation reports."""
    return time_call(fn, max(1, repeats), warmup=1)["median_s"]
