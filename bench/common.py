"""Helpers shared by the benchmarks: import path, timing, and the figure line format."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def best_of(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Fastest wall time of `repeats` calls after `warmup` calls (the least disturbed run)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def figure(name: str, value: float, op: str, target: float, unit: str = "") -> bool:
    ok = value >= target if op == ">=" else value <= target
    print(f"{name}: {value:,.3f}{unit} (target {op} {target:g}{unit}) {'PASS' if ok else 'FAIL'}", flush=True)
    return ok
