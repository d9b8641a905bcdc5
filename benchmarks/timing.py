"""Timing helper shared by the benchmark scripts (run as `python benchmarks/bench_*.py`)."""

from __future__ import annotations

import time

import numpy as np


def best_of(f, reps):
    """(min, median) wall time and min CPU time of the calling thread of f() over reps calls, in s."""
    wall, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.thread_time()
        f()
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    return min(wall), float(np.median(wall)), min(cpu)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"
