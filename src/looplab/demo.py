"""`make demo`: the embedded default job, the smoke ladder, sized for a 2-core CPU.

Trains every registered variant at `tiny` size on one data stream, evaluates each with the full
suite (light longctx and ppl settings), writes the report and prints where REPORT.md is. A second
`make demo` skips the finished runs and only rewrites the report.
"""

from __future__ import annotations

import time

from looplab.ladder import run_ladder


def demo(out: str) -> None:
    t0 = time.perf_counter()
    path = run_ladder("smoke", out=out)
    print(f"\ndemo (smoke ladder) finished in {time.perf_counter() - t0:.0f}s. Report: {path}")
