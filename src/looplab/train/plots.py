"""Training plots: loss on a log scale and per-task accuracy, redrawn after every evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _boundary(ax: Any, metrics: Sequence[dict[str, Any]]) -> None:
    """A dashed line where the phase changes (algorithmic -> language)."""
    for prev, cur in zip(metrics, metrics[1:]):
        if prev.get("phase") != cur.get("phase"):
            ax.axvline(cur["tokens"], color="grey", ls="--", lw=1)


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
    ax.set_ylabel("exact match (training lengths)")
    ax.set_title("accuracy per task")
    ax.grid(alpha=0.3)
    if tasks:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
