"""`make demo`: the embedded default job, the smoke ladder, sized for a 2-core CPU.

Trains every generic variant at `tiny` size on one data stream (successor, in both digit orders)
until it reaches 95% IID exact match, two runs at a time, scores each with the algorithmic suite
(in and out of distribution, and the loop sweep for looped variants), writes the report and prints
where REPORT.md is. About 6 minutes on a 2-core CPU. A second `make demo` skips the finished runs
and only rewrites the report. The full answer is `looplab ladder --preset cpu` (about 90 minutes).
"""

from __future__ import annotations

import time

from looplab.ladder import run_ladder


def demo(out: str) -> None:
    t0 = time.perf_counter()
    path = run_ladder("smoke", out=out)
    print(f"\ndemo (smoke ladder) finished in {time.perf_counter() - t0:.0f}s. Report: {path}")
