"""The report's halting section: does adaptive computation stay adaptive, seed by seed?

For every arm whose runs carry `halting_by_length` (act: the mean loop at which the answer's first
position halts, per task and length, on the grid's problems), one row per seed gives that depth at
each length, then a verdict line per arm: how many seeds collapsed (every cell halts within
COLLAPSED loops of loop 1, so the adaptive model runs as a 1-loop one) and how many use more loops
on longer inputs (depth at the longest length at least GROWS loops above the shortest, in a task).
"""

from __future__ import annotations

from typing import Any

from looplab.eval.report_data import Run

COLLAPSED = 1.1  # a cell whose mean halting loop is at most this runs, in effect, one loop
GROWS = 0.5  # loops more at the longest length than at the shortest: compute grows with the input


def depths(run: Run) -> dict[str, dict[int, float]]:
    """task -> length -> mean halting loop ({} when the run has none)."""
    table = (run.results.get("algorithmic") or {}).get("halting_by_length") or {}
    return {task: {int(n): float(d) for n, d in by.items()} for task, by in table.items()}


def collapsed(table: dict[str, dict[int, float]]) -> bool:
    return all(d <= COLLAPSED for by in table.values() for d in by.values())


def grows(table: dict[str, dict[int, float]]) -> bool:
    return any(by[max(by)] - by[min(by)] >= GROWS for by in table.values() if len(by) > 1)


def _arm_lines(name: str, runs: list[tuple[Any, dict[str, dict[int, float]]]]) -> list[str]:
    tasks = sorted({t for _, table in runs for t in table})
    lines = []
    for task in tasks:
        lengths = sorted({n for _, table in runs for n in table.get(task, {})})
        lines += [f"`{name}`, {task}:", "", "| seed | " + " | ".join(str(n) for n in lengths) + " |",
                  "|---|" + "---|" * len(lengths)]
        for seed, table in runs:
            by = table.get(task, {})
            lines.append(f"| {seed} | " + " | ".join(f"{by[n]:.2f}" if n in by else "n/a" for n in lengths) + " |")
        lines.append("")
    n_collapsed = sum(collapsed(t) for _, t in runs)
    n_grows = sum(grows(t) for _, t in runs)
    if n_collapsed == len(runs):
        verdict = (f"**every seed collapsed**: all {len(runs)} halt within {COLLAPSED:g} loops of loop 1 on every "
                   "cell, so this arm ran as a one-loop model")
    else:
        verdict = (f"{n_collapsed} of {len(runs)} seeds collapsed (every cell within {COLLAPSED:g} loops of loop 1); "
                   f"{n_grows} of {len(runs)} use at least {GROWS:g} loops more at a task's longest length than at "
                   "its shortest")
    return [*lines, f"- `{name}`: {verdict}.", ""]


def halting_section(groups: dict[str, list[Run]]) -> list[str]:
    """REPORT.md's halting section; nothing when no run has halting depths."""
    arms = {name: [(r.seed, depths(r)) for r in runs if depths(r)] for name, runs in groups.items()}
    arms = {k: v for k, v in arms.items() if v}
    if not arms:
        return []
    lines = ["## Halting depth per seed", "",
             "Mean loop at which the answer's first position halts, by task and input length (each seed's own "
             "row; lengths past training are out of distribution), on the grid's problems. A seed has collapsed "
             f"when every cell halts at loop {COLLAPSED:g} or less.", ""]
    for name, runs in arms.items():
        lines += _arm_lines(name, sorted(runs, key=lambda x: (x[0] is None, x[0])))
    return lines
