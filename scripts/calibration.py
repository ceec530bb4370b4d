"""The calibration table of docs/RESULTS.md: the reproduction ladders' goal cells, per arm, seed by seed.

    .venv/bin/python scripts/calibration.py runs/repro_grazzi runs/repro_fan runs/repro_coupling

For each ladder (its preset read from ladder.json) and each of the preset's goal cells: every seed's
answer accuracy and scaled accuracy, (acc - chance) / (1 - chance), the median and the best seed, and
how many seeds reach the goal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from looplab.eval.report_data import group_runs, load_run  # noqa: E402
from looplab.eval.stats import scaled  # noqa: E402

# preset -> (cells: the longest training length, then the goal cells; the answer accuracy a seed must reach)
GOALS = {
    "repro_grazzi": ([("parity_long", 40), ("parity_long", 64), ("parity_long", 128), ("parity_long", 256)], 0.95),
    "repro_fan": ([(t, n) for t in ("parity", "copy", "addition_bin") for n in (8, 16)], 0.95),
    "repro_coupling": ([("addition_rev", 4), ("addition_rev", 8)], 0.90),
}


def table(ladder: Path, preset: str | None = None) -> list[str]:
    """The ladder's table; a ladder stopped before its report (no ladder.json) needs `preset` and is read
    from its runs/ directory (the runs that finished their scoring)."""
    if (ladder / "ladder.json").exists():
        doc = json.loads((ladder / "ladder.json").read_text())
        preset, dirs = doc["preset"], [ladder / r["dir"] for r in doc["runs"].values()]
    else:
        dirs = sorted(p for p in (ladder / "runs").iterdir() if (p / "eval_results").is_dir())
    if preset not in GOALS:
        raise SystemExit(f"{ladder}: preset {preset!r} has no calibration goals; allowed: {', '.join(GOALS)}")
    cells, goal = GOALS[preset]
    runs = [load_run(d) for d in dirs if (d / "summary.json").exists()]
    lines = [f"### `{preset}` ({len(runs)} runs)", "",
             "| arm | cell | seeds | answer accuracy per seed | scaled per seed | scaled median | scaled best | "
             f"seeds ≥ {goal:.0%} |", "|---|---|---|---|---|---|---|---|"]
    for arm, group in group_runs(runs).items():
        for key in cells:
            got = [(r.seed, r.cells[key]) for r in sorted(group, key=lambda r: r.seed or 0) if key in r.cells]
            if not got:
                continue
            accs = [c.acc for _, c in got]
            sc = [scaled(c.acc, c.floor) for _, c in got]
            lines.append(f"| `{arm}` | {key[0]} @{key[1]} | {len(got)} | "
                         + ", ".join(f"s{s} {c.acc:.1%}" for s, c in got) + " | "
                         + ", ".join(f"{v:.2f}" for v in sc) + f" | {np.median(sc):.2f} | {max(sc):.2f} | "
                         f"{sum(a >= goal for a in accs)}/{len(accs)} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ladders", nargs="+", type=Path)
    ap.add_argument("--preset", default=None, help="the preset of a ladder stopped before its report")
    args = ap.parse_args()
    for ladder in args.ladders:
        print("\n".join(table(ladder, args.preset)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
