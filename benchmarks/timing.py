"""Timing shared by the benchmarks: functions run in alternation, medians reported."""

from __future__ import annotations

import statistics
import time


def interleaved_medians(functions, repeats: int) -> list[float]:
    """Median seconds of each function over ``repeats`` rounds, after one warm-up call
    each (tracing, first-call allocation); each round runs every function once, in
    turn, so that load from other processes on a shared machine hits all of them alike."""
    for function in functions:
        function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, bucket in zip(functions, times, strict=True):
            start = time.perf_counter()
            function()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]
