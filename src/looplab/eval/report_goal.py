"""The report's research-goal section: the seed's targets for length generalisation, counted by seed.

The goal (seed README): 95% answer accuracy on parity at 32 bits when trained on at most 8, and 90%
on addition at 8 digits when trained on at most 4 digits (either digit order). Per arm that was
trained within those lengths and scored at the target cell: each seed's accuracy there, how many
seeds reach the target, and the mean with its 95% interval (bootstrap over seeds and problems).
Seeds split between finding the algorithm and not, so the count is the headline, not the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from looplab.eval.algorithmic import OOD_PROBES
from looplab.eval.report_data import Run, cell_accuracy, competence, run_cells


@dataclass(frozen=True)
class Goal:
    tasks: tuple[str, ...]  # the task names that count (an arm trains on at most one of them)
    length: int  # the scored length
    trained_at_most: int  # the longest training length allowed
    target: float  # answer accuracy to reach

    @property
    def name(self) -> str:
        return f"{self.tasks[0]} @{self.length} (trained <= {self.trained_at_most})"


GOALS = (Goal(("parity",), OOD_PROBES["parity"], 8, 0.95),
         Goal(("addition", "addition_rev"), OOD_PROBES["addition"], 4, 0.90))


def goal_cell(run: Run, goal: Goal) -> tuple[str, int] | None:
    """The run's cell for the goal, when it trained within the goal's lengths and was scored there."""
    cells = run_cells(run)
    for task in goal.tasks:
        trained = [n for (t, n), c in cells.items() if t == task and c.split == "iid"]
        if trained and max(trained) <= goal.trained_at_most and (task, goal.length) in cells:
            return task, goal.length
    return None


def goal_row(name: str, runs: list[Run], goal: Goal) -> str | None:
    have = [(r, goal_cell(r, goal)) for r in runs]
    have = [(r, key) for r, key in have if key is not None]
    if not have:
        return None
    accs = [(r.seed, run_cells(r)[key].acc, bool(competence(r).reached)) for r, key in have]
    reached = sum(a >= goal.target for _, a, _ in accs)
    iv = cell_accuracy([r for r, _ in have], have[0][1])
    interval = "n/a" if iv is None else f"{100 * iv.mean:.1f}% [{100 * iv.lo:.1f}, {100 * iv.hi:.1f}]"
    seeds = ", ".join(f"s{s} {100 * a:.0f}%{'' if c else '†'}" for s, a, c in sorted(accs, key=lambda x: str(x[0])))
    return (f"| `{name}` | {have[0][1][0]} @{goal.length} | {reached} of {len(accs)} | {interval} | "
            f"{sum(c for *_, c in accs)} of {len(accs)} | {seeds} |")


def goal_section(groups: dict[str, list[Run]]) -> list[str]:
    """REPORT.md's research-goal section; nothing when no arm was scored at a goal cell."""
    lines = []
    for goal in GOALS:
        rows = [row for name, runs in groups.items() if (row := goal_row(name, runs, goal))]
        if rows:
            lines += [f"### {goal.name}: {goal.target:.0%} answer accuracy", "",
                      f"| arm | cell | seeds at {goal.target:.0%} | mean [95% interval] | competent seeds | "
                      "each seed (†: not competent in distribution) |", "|---|---|---|---|---|---|", *rows, ""]
    if not lines:
        return []
    return ["## Research goal (seed README)", "",
            "Parity at 32 bits trained on at most 8, addition at 8 digits trained on at most 4: each seed's answer "
            "accuracy at that cell, the seeds that reach the target, and the mean over all seeds (competent or "
            "not) with its 95% interval.", "", *lines]
