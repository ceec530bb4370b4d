"""A task's in-distribution accuracy at each periodic evaluation, per run: when each seed learned it.

    .venv/bin/python scripts/task_curve.py addition_rev runs/cpu_v2/runs/baseline_s* runs/axes_v2/runs/baseline_s*

Reads each run's `metrics.json` (the rows with `eval_acc/<task>`: the task's accuracy averaged over its
IID lengths, on the screening problems of the periodic evaluation, `screen_samples` per cell) and
prints one line per run: the run, then `tokens(k):accuracy%` at every evaluation. The last evaluation
of a wsd run follows its decay. A run without the task or without metrics is named on stderr and
skipped; none found at all is an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def curve(run: Path, task: str) -> list[tuple[int, float]] | None:
    """(tokens, accuracy) at each periodic evaluation of `task`, or None when the run has none."""
    path = run / "metrics.json"
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    key = f"eval_acc/{task}"
    points = [(int(r["tokens"]), float(r[key])) for r in rows if key in r and "tokens" in r]
    return points or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", help="a task name as the runs trained it (parity, addition_rev, copy, ...)")
    ap.add_argument("runs", nargs="+", type=Path, help="run directories (each with metrics.json)")
    args = ap.parse_args(argv)
    found = 0
    for run in args.runs:
        points = curve(run, args.task)
        if points is None:
            print(f"skipped {run}: no readable metrics.json with eval_acc/{args.task}", file=sys.stderr)
            continue
        found += 1
        label = f"{run.parent.parent.name}/{run.name}" if run.parent.name == "runs" else str(run)
        print(label, " ".join(f"{t // 1000}k:{100 * a:.0f}%" for t, a in points))
    if not found:
        print(f"error: no run among {len(args.runs)} has periodic evaluations of task '{args.task}'", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
