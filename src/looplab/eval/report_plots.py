"""The report's figures: accuracy-vs-length heat maps, accuracy vs loop count, overlaid loss curves.

Each plot averages over a variant's seeds. A plot with no data is not drawn; `write_plots` returns
a note saying why, which REPORT.md prints in its place.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from looplab.eval.report_data import Run, algorithmic_grid, loop_samples


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)


def _mean_grid(runs: list[Run]) -> tuple[list[str], list[int], np.ndarray] | None:
    """Tasks x lengths accuracy (NaN where a task has no such length), mean over seeds."""
    grids = [g for g in (algorithmic_grid(r) for r in runs) if g and g.get("tasks")]
    if not grids:
        return None
    tasks = list(dict.fromkeys(t for g in grids for t in g["tasks"]))
    lengths = sorted({int(n) for g in grids for t in g["tasks"].values() for n in t["lengths"]})
    acc = np.full((len(grids), len(tasks), len(lengths)), np.nan)
    for k, g in enumerate(grids):
        for i, t in enumerate(tasks):
            for j, n in enumerate(lengths):
                cell = g["tasks"].get(t, {}).get("lengths", {}).get(str(n))
                if cell:
                    acc[k, i, j] = cell["acc"]
    return tasks, lengths, _nanmean(acc)


def _mean_needle(runs: list[Run]) -> tuple[list[str], list[str], np.ndarray] | None:
    cells = [r.results["longctx"]["cells"] for r in runs if r.results.get("longctx", {}).get("cells")]
    if not cells:
        return None
    lengths = sorted({n for c in cells for n in c}, key=int)
    depths = sorted({d for c in cells for row in c.values() for d in row}, key=float)
    acc = np.full((len(cells), len(lengths), len(depths)), np.nan)
    for k, c in enumerate(cells):
        for i, n in enumerate(lengths):
            for j, d in enumerate(depths):
                if d in c.get(n, {}):
                    acc[k, i, j] = c[n][d]["acc"]
    return lengths, depths, _nanmean(acc)


def _nanmean(acc: np.ndarray) -> np.ndarray:
    """Mean over seeds (axis 0), NaN where no seed has the cell."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(acc, axis=0)


def _heat(ax: Any, data: np.ndarray, rows: list[str], cols: list[str], title: str, xlabel: str) -> Any:
    im = ax.imshow(np.ma.masked_invalid(data), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if np.isfinite(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if data[i, j] < 0.5 else "black")
    return im


def plot_heatmaps(name: str, runs: list[Run], out: Path) -> Path | None:
    grid, needle = _mean_grid(runs), _mean_needle(runs)
    if grid is None and needle is None:
        return None
    plt = _plt()
    panels = [p for p in (grid, needle) if p is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 0.45 * len(grid[0]) + 2.5 if grid else 4),
                             squeeze=False)
    k = 0
    if grid is not None:
        tasks, lengths, acc = grid
        im = _heat(axes[0, k], acc, tasks, [str(n) for n in lengths], f"{name}: answer accuracy by length "
                   f"(n={len(runs)} seeds)", "length (task's knob)")
        k += 1
    if needle is not None:
        lengths_n, depths, acc = needle
        im = _heat(axes[0, k], acc, lengths_n, depths, f"{name}: needle retrieval", "needle depth")
        axes[0, k].set_ylabel("haystack tokens")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="accuracy")
    path = out / f"heatmap_{_safe(name)}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_loops(groups: dict[str, list[Run]], out: Path) -> Path | None:
    curves = {}
    for name, runs in groups.items():
        sweeps = [r.results.get("algorithmic", {}).get("loops") for r in runs]
        sweeps = [s for s in sweeps if s]
        if sweeps:
            counts = sorted({int(n) for s in sweeps for n in s})
            curves[name] = {split: (counts, [np.mean([s[str(n)][f"{split}_acc"] or 0 for s in sweeps if str(n) in s])
                                             for n in counts]) for split in ("iid", "ood")}
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (name, by_split) in enumerate(curves.items()):
        for split, style in (("iid", "-"), ("ood", "--")):
            xs, ys = by_split[split]
            ax.plot(xs, ys, style, marker="o", color=f"C{i}", label=f"{name} {split.upper()}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("loops at evaluation")
    ax.set_ylabel("answer accuracy")
    ax.set_ylim(-0.02, 1.02)
    subset = loop_samples(groups)
    ax.set_title("Test-time compute: accuracy vs loop count"
                 + (f"\n(first {', '.join(map(str, subset))} problems of each cell)" if subset else ""))
    ax.legend(fontsize=8)
    path = out / "loops.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _by_task_length(runs: list[Run], read: Any) -> dict[str, dict[int, float]]:
    """task -> length -> mean over runs of read(run, task, length) (None values skipped)."""
    vals: dict[str, dict[int, list[float]]] = {}
    for r in runs:
        grid = algorithmic_grid(r) or {}
        for task, entry in grid.get("tasks", {}).items():
            for n in entry["lengths"]:
                v = read(r, task, n)
                if v is not None:
                    vals.setdefault(task, {}).setdefault(int(n), []).append(float(v))
    return {t: {n: float(np.mean(v)) for n, v in sorted(by.items())} for t, by in vals.items()}


def _task_panels(curves: dict[str, dict[str, dict[int, float]]], ylabel: str, title: str, path: Path,
                 floors: dict[str, dict[int, float]] | None = None, ylim: tuple[float, float] | None = None) -> Path:
    """One panel per task, one line per group: x the task length (log 2), y the figure."""
    plt = _plt()
    tasks = sorted({t for c in curves.values() for t in c})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, (name, by_task) in enumerate(curves.items()):
            if task in by_task:
                xs, ys = zip(*by_task[task].items())
                ax.plot(xs, ys, marker="o", color=f"C{i % 10}", linestyle="-" if i < 10 else "--", label=name)
        if floors and task in floors:
            xs, ys = zip(*floors[task].items())
            ax.plot(xs, ys, color="grey", linestyle=":", label="chance floor")
        ax.set_xscale("log", base=2)
        ax.set_title(task)
        ax.set_xlabel("task length")
        if ylim:
            ax.set_ylim(*ylim)
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_length_curves(groups: dict[str, list[Run]], out: Path) -> Path | None:
    """Answer accuracy against task length, every group in one panel per task, chance floor dotted."""
    def acc(r: Run, task: str, n: str) -> float:
        return algorithmic_grid(r)["tasks"][task]["lengths"][n]["acc"]

    def floor(r: Run, task: str, n: str) -> float | None:
        return algorithmic_grid(r)["tasks"][task]["lengths"][n].get("floor")

    curves = {name: _by_task_length(runs, acc) for name, runs in groups.items()}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    floors = _by_task_length([r for runs in groups.values() for r in runs], floor)
    return _task_panels(curves, "answer accuracy", "Accuracy against input length (mean over seeds)",
                        out / "length.png", floors, (-0.02, 1.02))


def plot_compute_by_length(groups: dict[str, list[Run]], out: Path) -> Path | None:
    """Loops used against task length: a length policy's count per cell, and act's mean halting loop
    at the answer's first position (`halting_by_length`). Does compute grow with the problem?"""
    def used(r: Run, task: str, n: str) -> float | None:
        alg = r.results.get("algorithmic") or {}
        halting = alg.get("halting_by_length", {}).get(task, {}).get(n)
        return halting if halting is not None else algorithmic_grid(r)["tasks"][task]["lengths"][n].get("loops")

    curves = {name: _by_task_length(runs, used) for name, runs in groups.items()}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    return _task_panels(curves, "loops used", "Compute against input length (mean over seeds)",
                        out / "loops_by_length.png")


def plot_losses(groups: dict[str, list[Run]], out: Path) -> Path | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for i, (name, runs) in enumerate(groups.items()):
        for k, r in enumerate(runs):
            pts = [(m["tokens"], m["loss"]) for m in r.metrics if "loss" in m and "tokens" in m]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, color=f"C{i}", alpha=0.85, linestyle=("-", "--", ":", "-.")[k % 4], marker=".",
                        label=f"{name} seed {r.seed}")
                drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_yscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("training loss")
    ax.set_title("Loss curves")
    ax.legend(fontsize=8)
    path = out / "loss.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _eval_curve(run: Run, x: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, IID answer accuracy) at each periodic evaluation of the run; x is `tokens` or `train_seconds`."""
    pts = [(m[x], m["eval_mean_acc"]) for m in run.metrics if "eval_mean_acc" in m and x in m]
    if len(pts) < 1:
        return None
    xs, ys = (np.array(v, dtype=np.float64) for v in zip(*pts))
    return xs, ys


def plot_learning_curves(groups: dict[str, list[Run]], out: Path) -> Path | None:
    """IID answer accuracy (the periodic evaluation's mean over tasks) against training tokens and against
    training seconds, per arm: the mean over seeds with a band from the lowest to the highest seed, each
    seed's curve read on a common grid (linear between evaluations, up to the shortest seed's end)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    drawn = 0
    for col, (x, label) in enumerate((("tokens", "training tokens"), ("train_seconds", "training seconds"))):
        ax = axes[0, col]
        for i, (name, runs) in enumerate(groups.items()):
            curves = [c for c in (_eval_curve(r, x) for r in runs) if c is not None]
            if not curves:
                continue
            end = min(c[0][-1] for c in curves)
            grid = np.linspace(min(c[0][0] for c in curves), end, 50) if end > 0 else np.array([0.0])
            ys = np.stack([np.interp(grid, cx, cy) for cx, cy in curves])  # (S, G)
            ax.plot(grid, ys.mean(axis=0), color=f"C{i}", label=f"{name} ({len(curves)} seeds)")
            ax.fill_between(grid, ys.min(axis=0), ys.max(axis=0), color=f"C{i}", alpha=0.2, linewidth=0)
            drawn += 1
        ax.set_xlabel(label)
        ax.set_ylabel("IID answer accuracy (periodic evaluation)")
        ax.set_ylim(-0.02, 1.02)
    if not drawn:
        plt.close(fig)
        return None
    axes[0, 1].legend(fontsize=8, loc="lower right")
    fig.suptitle("Accuracy against training tokens and seconds (mean over seeds, band: lowest to highest seed)")
    path = out / "learning.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_plots(groups: dict[str, list[Run]], out: Path) -> tuple[list[Path], list[str]]:
    plots, notes = [], []
    for name, runs in groups.items():
        p = plot_heatmaps(name, runs, out)
        plots += [p] if p else []
        notes += [] if p else [f"no accuracy heat map for `{name}`: no algorithmic or longctx results"]
    p = plot_loops(groups, out)
    plots += [p] if p else []
    notes += [] if p else ["no loop-count plot: no run has an `--n_loops` sweep in eval_results/results_algorithmic.json"]
    for plot in (plot_length_curves, plot_compute_by_length, plot_learning_curves):
        p = plot(groups, out)
        plots += [p] if p else []
    p = plot_losses(groups, out)
    plots += [p] if p else []
    notes += [] if p else ["no loss plot: no run has a metrics.json with losses"]
    return plots, notes
