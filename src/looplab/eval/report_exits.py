"""The report's exit-criteria section: what the evaluation hub scored with `--exits` (looplab.eval.exits).

For every group whose runs carry `results["algorithmic"]["exits"]` (looped variants evaluated with
`EvalConfig.exits`), each task length is shown three ways: `fixed`, the main grid (the count the model
runs anyway: its trained count or its length policy's), and each exit criterion's grid (every
example's count chosen by the criterion). All three come from one hub call, so they share its
evaluation seed and examples. `exits.png`: answer accuracy (top row) and loops used (bottom row) against
task length, a panel per task, a line per (group, exit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from looplab.eval.report_data import Run, loop_samples
from looplab.eval.report_plots import _plt

FIXED = "fixed"  # the main grid: the loop count the model runs without an exit


def _subset(groups: dict[str, list[Run]]) -> str:
    """Where the exits scored fewer problems than the main grid: which ones."""
    sizes = loop_samples(groups)
    return f": the first {', '.join(map(str, sizes))} of each cell's test set" if sizes else ""


def exit_scores(groups: dict[str, list[Run]]) -> dict[str, list[dict[str, Any]]]:
    """Name -> one {exit: grid} per run that the hub scored with exits ("fixed": the main grid, or the
    trained count on the exits' subset when the hub scored them on `loop_samples` problems per cell)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, runs in groups.items():
        for r in runs:
            alg = r.results.get("algorithmic") or {}
            if alg.get("exits"):
                out.setdefault(name, []).append({FIXED: alg.get("exits_fixed", alg), **alg["exits"]})
    return out


def _criteria(runs: list[dict[str, Any]]) -> list[str]:
    return [c for c in runs[0] if all(c in r for r in runs)]


def _loops(cell: dict[str, Any]) -> float | None:
    return cell.get("mean_loops", cell.get("loops"))


def _cells(runs: list[dict[str, Any]], crit: str, task: str) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(length, first run's cell, every run's cell) for the lengths every run has."""
    lengths = runs[0][crit]["tasks"][task]["lengths"]
    return [(n, cell, [r[crit]["tasks"][task]["lengths"][n] for r in runs]) for n, cell in lengths.items()
            if all(n in r[crit]["tasks"].get(task, {}).get("lengths", {}) for r in runs)]


def exits_table(scores: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| arm | exit | task | length: answer accuracy [min-max over seeds] (mean loops) |", "|---|---|---|---|"]
    for name, runs in scores.items():
        for crit in _criteria(runs):
            for task in runs[0][crit]["tasks"]:
                cells = []
                for n, cell, per_run in _cells(runs, crit, task):
                    accs, loops = [c["acc"] for c in per_run], [_loops(c) for c in per_run]
                    used = f" ({np.mean(loops):.1f})" if None not in loops else ""
                    cells.append(f"{n}{'*' if cell['split'] == 'ood' else ''}: {100 * np.mean(accs):.0f}% "
                                 f"[{100 * min(accs):.0f}-{100 * max(accs):.0f}]{used}")
                lines.append(f"| `{name}` | {crit} | {task} | " + ", ".join(cells) + " |")
    return lines


def plot_exits(scores: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    plt = _plt()
    tasks = list(dict.fromkeys(t for runs in scores.values() for t in runs[0][FIXED]["tasks"]))
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6.4), squeeze=False)
    for i, (name, runs) in enumerate(scores.items()):
        for crit, style in zip(_criteria(runs), ("-", "--", ":", "-.")):
            for k, task in enumerate(tasks):
                if task not in runs[0][crit]["tasks"]:
                    continue
                cells = _cells(runs, crit, task)
                xs = [int(n) for n, _, _ in cells]
                acc = [np.mean([c["acc"] for c in per_run]) for _, _, per_run in cells]
                loops = [np.mean([_loops(c) if _loops(c) is not None else np.nan for c in per_run])
                         for _, _, per_run in cells]
                axes[0, k].plot(xs, acc, style, marker="o", color=f"C{i % 10}", label=f"{name} {crit}")
                axes[1, k].plot(xs, loops, style, marker="o", color=f"C{i % 10}")
                axes[0, k].set_title(task)
    for ax in axes.ravel():
        ax.set_xscale("log", base=2)
        ax.set_xlabel("task length")
    axes[0, 0].set_ylabel("answer accuracy")
    axes[1, 0].set_ylabel("loops used")
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def exits_section(groups: dict[str, list[Run]], out: Path) -> list[str]:
    """REPORT.md's exit-criteria section and `exits.png` beside it; nothing when no run scored exits."""
    scores = exit_scores(groups)
    if not scores:
        return []
    threshold = {r["convergence"].get("threshold") for runs in scores.values() for r in runs if "convergence" in r}
    plot = plot_exits(scores, out / "exits.png")
    return ["## Exit criteria", "",
            "Answer accuracy per task length (* out of distribution), mean over seeds with [min-max], and in brackets "
            "the mean loop count used: `fixed` runs the count the model runs anyway (its trained count or its "
            "length policy's); `convergence` stops at the first loop whose next-token distribution moved less "
            f"than KL {', '.join(f'{t:g}' for t in sorted(threshold)) or 'n/a'} from the previous loop's; "
            "`confidence` takes the loop with the most confident next token. Both decide on the answer's first "
            "token, from loops 1 to twice the fixed count, and decode the whole answer at that count; all three "
            f"score the same problems{_subset(groups)}.", "",
            *exits_table(scores), "",
            f"![answer accuracy and loops used against task length, by exit criterion]({plot.name})", ""]
