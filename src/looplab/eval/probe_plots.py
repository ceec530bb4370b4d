"""Plots of `looplab probe`: accuracy per hop, the PCA of per-loop states, the gate, the ablations,
and the phase-trajectory plot (lifeline on, solid, against lifeline zeroed, dashed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy(result: dict[str, Any], path: Path) -> None:
    hops = list(result["accuracy"])
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(hops))
    for off, key in ((-0.2, "acc"), (0.0, "trace_acc"), (0.2, "halt_exact")):
        ax.bar([x + off for x in xs], [result["accuracy"][h][key] for h in hops], width=0.2, label=key)
    for mode, r in result["ablation"].items():
        ax.plot(list(xs), [r["acc"][h] for h in hops], marker=".", lw=1, label=f"acc, lifeline {mode}")
    ax.set_xticks(list(xs), [f"{h}\n(n={result['accuracy'][h]['n']})" for h in hops])
    ax.set_xlabel("hops (1-5 trained, 6+ out of distribution)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_states(points: torch.Tensor, result: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    sc = ax.scatter(points[:, 0], points[:, 1], c=points[:, 2] + 1, cmap="viridis", s=6)
    fig.colorbar(sc, ax=ax, label="loop")
    hs = result["hidden_states"]
    ax.set_title(f"hops-{hs['hops']} query states: PC1+PC2 {hs['pca_var_explained_2']:.1%}, "
                 f"NC acc {hs['nearest_centroid_acc']:.2f}", fontsize=9)
    _save(fig, path)


def plot_gate(gate: torch.Tensor, result: dict[str, Any], path: Path) -> None:
    g = result["gate"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(gate.numpy(), bins=60)
    ax.axvline(g["init"], color="k", ls="--", lw=1)
    ax.set_title(f"lifeline gate: amplify {g['amplify_share']:.1%}, suppress {g['suppress_share']:.1%}, "
                 f"negative {g['negative_share']:.1%}", fontsize=9)
    _save(fig, path)


def plot_ablation(result: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for mode, r in result["ablation"].items():
        per = r["agreement_per_loop"]
        ax.plot([int(k) for k in per], [v["share"] for v in per.values()], marker="o", label=mode)
    ax.set_xlabel("loop")
    ax.set_ylabel("top-1 agreement with intact")
    ax.set_ylim(0, 1.05)
    ax.legend()
    _save(fig, path)


def plot_trajectory(result: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    traj = result["trajectory"]
    for i in range(len(traj["intact"]["xy"])):
        for mode, ls in (("intact", "-"), ("zero", "--")):
            pts = torch.tensor(traj[mode]["xy"][i])
            ax.plot(pts[:, 0], pts[:, 1], ls=ls, marker="o", ms=3, color=f"C{i}",
                    label=f"chain {i}, lifeline {'on' if mode == 'intact' else 'zeroed'}")
            ax.annotate("1", pts[0].tolist(), fontsize=7)
    ax.set_xlabel("PC1 (intact states)")
    ax.set_ylabel("PC2")
    ax.legend(fontsize=7)
    _save(fig, path)


def write_plots(result: dict[str, Any], points: torch.Tensor, gate: torch.Tensor, out: Path) -> None:
    plot_accuracy(result, out / "accuracy_by_hop.png")
    plot_states(points, result, out / "hidden_states_pca.png")
    plot_gate(gate, result, out / "gate.png")
    plot_ablation(result, out / "ablation.png")
    plot_trajectory(result, out / "trajectory.png")
