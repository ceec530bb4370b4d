"""Training rate per variant in two ladder reports: before and after, from their run tables.

    .venv/bin/python scripts/ladder_rates.py BEFORE/REPORT.md AFTER/REPORT.md --tokens 2500000

Reads each report's "Ladder runs" table (columns `run`, `tokens`, `train s`: the wall time of the run's
training process, its periodic evaluations included, its final scoring not) and prints, per variant, the median training tokens per second over its runs with the range, the ratio
after / before, and the training wall time the median rate gives a run of `--tokens` tokens.
`--skip` leaves runs out of the "after" report by their label (`baseline s4`): a run resumed after an
interruption, whose `train s` counts only its last part, or one that shared the CPU with other work.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path


def run_rates(report: Path, skip: frozenset[str] = frozenset()) -> dict[str, list[float]]:
    """variant -> tokens per training second of each of its runs in the report's ladder table."""
    lines = report.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "## Ladder runs"), None)
    if start is None:
        raise SystemExit(f"error: {report} has no '## Ladder runs' section")
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("| run |"))
    cols = [c.strip() for c in lines[header].strip("|").split("|")]
    at = {name: cols.index(name) for name in ("run", "tokens", "train s")}
    out: dict[str, list[float]] = {}
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        label = cells[at["run"]].strip("`")
        if label in skip:
            continue
        tokens, seconds = cells[at["tokens"]].replace(",", ""), cells[at["train s"]]
        if not re.fullmatch(r"\d+", tokens) or not re.fullmatch(r"[\d.]+", seconds) or float(seconds) == 0:
            continue  # a failed run
        out.setdefault(label.rsplit(" s", 1)[0], []).append(int(tokens) / float(seconds))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--tokens", type=int, default=2_500_000, help="the run budget the wall times are given for")
    ap.add_argument("--skip", nargs="*", default=[], help="labels of runs of the after report to leave out")
    args = ap.parse_args()
    before, after = run_rates(args.before), run_rates(args.after, frozenset(args.skip))
    print(f"| variant | runs before / after | tokens/s before: median [range] | after | after / before | "
          f"training s per {args.tokens / 1e6:g}M tokens before | after | after / before |")
    print("|---|---|---|---|---|---|---|---|")
    for variant in [v for v in before if v in after] + [v for v in after if v not in before]:
        b, a = before.get(variant), after[variant]
        mb, ma = (statistics.median(b) if b else None), statistics.median(a)

        def cell(rates: list[float] | None, m: float | None) -> str:
            return "n/a" if not rates else f"{m / 1e3:.1f}k [{min(rates) / 1e3:.1f}, {max(rates) / 1e3:.1f}]"

        ratio = f"{ma / mb:.2f}x" if mb else "n/a"
        wall_b = f"{args.tokens / mb:.0f}" if mb else "n/a"
        wall_ratio = f"{mb / ma:.2f}x" if mb else "n/a"
        print(f"| {variant} | {len(b or [])} / {len(a)} | {cell(b, mb)} | {cell(a, ma)} | {ratio} | {wall_b} | "
              f"{args.tokens / ma:.0f} | {wall_ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
