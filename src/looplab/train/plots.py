"""Training plots: loss on a log scale and per-task accuracy, redrawn after every evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _boundary(ax: Any, metrics: Sequence[dict[str, Any]]) -> None:
    """A dashed line where the phase changes (algorithmic -> language): at the last row of the old
    phase, which the trainer logs at the switch step."""
    for prev, cur in zip(metrics, metrics[1:]):
        if prev.get("phase") != cur.get("phase"):
            ax.axvline(prev["tokens"], color="grey", ls="--", lw=1)
            ax.annotate(f"{cur.get('phase')} ->", (prev["tokens"], 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -12), textcoords="offset points", fontsize=8, color="grey")


def plot_loss(metrics: Sequence[dict[str, Any]], path: Path) -> None:
    rows = [m for m in metrics if "loss" in m]
    fig, ax = plt.subplots(figsize=(6, 4))
    if rows:
        ax.plot([m["tokens"] for m in rows], [m["loss"] for m in rows], lw=1)
        _boundary(ax, rows)
    ax.set_yscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_accuracy(evals: Sequence[dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    tasks = sorted({t for e in evals for t in e["acc"]})
    for t in tasks:
        pts = [(e["tokens"], e["acc"][t]) for e in evals if t in e["acc"]]
        ax.plot(*zip(*pts), marker="o", ms=3, label=t)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("answer accuracy (training lengths)")
    ax.set_title("accuracy per task")
    ax.grid(alpha=0.3)
    if tasks:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curriculum(metrics: Sequence[dict[str, Any]], path: Path) -> None:
    """Difficulty per task over training (0 while locked) with unlocks marked, and competence."""
    rows = [m for m in metrics if "curriculum_active" in m]
    tasks = sorted({k.split("/", 1)[1] for m in rows for k in m if k.startswith("curriculum/")})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for i, t in enumerate(tasks):
        color = f"C{i % 10}"
        top.step([m["tokens"] for m in rows], [m[f"curriculum/{t}"] for m in rows], where="post", color=color,
                 label=t, lw=1.2)
        pts = [(m["tokens"], m[f"competence/{t}"]) for m in rows if f"competence/{t}" in m]
        if pts:
            bottom.plot(*zip(*pts), color=color, lw=1, marker=".", ms=3)
        for m in rows:
            for e in m.get("curriculum_events", []):
                if e["task"] == t and e["event"] == "unlock":
                    top.plot(m["tokens"], e["difficulty"], marker="*", ms=10, color=color, mec="black", mew=0.5)
    top.set_ylabel("difficulty (length; 0 = locked)")
    top.set_title("task curriculum (stars: unlocks)")
    bottom.set_ylabel("competence (EMA answer accuracy)")
    bottom.set_xlabel("training tokens")
    bottom.set_ylim(-0.02, 1.02)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    if tasks:
        top.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
