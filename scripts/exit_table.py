"""Exit criteria on a finished ladder's looped runs: accuracy and loops chosen per task length.

    python scripts/exit_table.py runs/axes [--samples 100] [--threshold 1e-3] [--out docs/results/axes]

For every run directory under `<ladder>/runs/` whose best checkpoint is a looped model, scores the
algorithmic grid three ways: at the count the model runs anyway (`fixed`: its trained count or its
length policy's), and with each example's count chosen by the `convergence` and `confidence` exits
(looplab.eval.exits). Writes `exits.json` (every cell) and `EXITS.md` (mean over seeds per arm) to
--out. Runs are grouped by directory name without the `_s<seed>` suffix (the ladder's arm).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from looplab.checkpoint import Checkpoint, load_checkpoint
from looplab.data.tokenizer import ByteTokenizer
from looplab.eval.algorithmic import run_grid
from looplab.eval.exits import EXITS, exit_grid
from looplab.io import write_json
from looplab.models.base import LoopedModel
from looplab.runtime import set_threads


def score_run(ckpt: Checkpoint, samples: int, threshold: float) -> dict:
    model, tasks = ckpt.model.eval(), ckpt.meta.get("tasks")
    grid = dict(samples=samples, seed=0, max_new_tokens=32)
    out = {"fixed": run_grid(model, ByteTokenizer(), tasks, **grid)}
    for name in EXITS:
        out[name] = exit_grid(model, ByteTokenizer(), tasks, name, threshold=threshold, **grid)
    return out


def table(scores: dict[str, list[dict]]) -> list[str]:
    lines = ["| arm | exit | task | " + "length: exact match (mean loops) |", "|---|---|---|---|"]
    for arm, runs in scores.items():
        for crit in ("fixed", *EXITS):
            tasks = runs[0][crit]["tasks"]
            for task, entry in tasks.items():
                cells = []
                for n, cell in entry["lengths"].items():
                    accs = [r[crit]["tasks"][task]["lengths"][n]["acc"] for r in runs]
                    loops = [r[crit]["tasks"][task]["lengths"][n].get("mean_loops",
                             r[crit]["tasks"][task]["lengths"][n].get("loops")) for r in runs]
                    used = f" ({np.mean(loops):.1f})" if None not in loops else ""
                    cells.append(f"{n}{'*' if cell['split'] == 'ood' else ''}: {100 * np.mean(accs):.0f}% "
                                 f"[{100 * min(accs):.0f}-{100 * max(accs):.0f}]{used}")
                lines.append(f"| `{arm}` | {crit} | {task} | " + ", ".join(cells) + " |")
    return lines


def plot(scores: dict[str, list[dict]], path: Path) -> None:
    """Top row: exact match against task length; bottom row: loops used; a panel per task, a line per
    (arm, exit), mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(next(iter(scores.values()))[0]["fixed"]["tasks"])
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6.4), squeeze=False)
    for i, (arm, runs) in enumerate(scores.items()):
        for crit, style in zip(("fixed", *EXITS), ("-", "--", ":")):
            for k, task in enumerate(tasks):
                cells = runs[0][crit]["tasks"][task]["lengths"]
                xs = [int(n) for n in cells]
                acc = [np.mean([r[crit]["tasks"][task]["lengths"][n]["acc"] for r in runs]) for n in cells]
                loops = [np.mean([r[crit]["tasks"][task]["lengths"][n].get("mean_loops",
                         r[crit]["tasks"][task]["lengths"][n].get("loops", np.nan)) for r in runs]) for n in cells]
                axes[0, k].plot(xs, acc, style, marker="o", color=f"C{i}", label=f"{arm} {crit}")
                axes[1, k].plot(xs, loops, style, marker="o", color=f"C{i}")
                axes[0, k].set_title(task)
    for ax in axes.ravel():
        ax.set_xscale("log", base=2)
        ax.set_xlabel("task length")
    axes[0, 0].set_ylabel("exact match")
    axes[1, 0].set_ylabel("loops used")
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ladder")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--threshold", type=float, default=1e-3)
    ap.add_argument("--out", default="")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    set_threads(args.threads)
    scores: dict[str, list[dict]] = defaultdict(list)
    for run in sorted(Path(args.ladder, "runs").glob("*_s*")):
        if not (run / "best_model.pt").exists():
            continue
        ckpt = load_checkpoint(run / "best_model.pt")
        if not isinstance(ckpt.model, LoopedModel):
            continue
        print(f"scoring {run.name}", flush=True)
        scores[re.sub(r"_s\d+$", "", run.name)].append(score_run(ckpt, args.samples, args.threshold))
    if not scores:
        print(f"no looped run with a best_model.pt under {args.ladder}/runs", file=sys.stderr)
        return 1
    out = Path(args.out or args.ladder)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "exits.json", {"threshold": args.threshold, "samples": args.samples, "arms": scores})
    md = ["# Exit criteria", "", f"`python scripts/exit_table.py {args.ladder} --samples {args.samples} "
          f"--threshold {args.threshold}`", "",
          "Exact match per task length (* out of distribution), mean over seeds with [min-max], and in brackets "
          "the mean loop count used: `fixed` runs the count the model runs anyway (its trained count or its "
          "length policy's); `convergence` stops at the first loop whose next-token distribution moved less "
          f"than KL {args.threshold} from the previous loop's; `confidence` takes the loop with the most "
          "confident next token. Both decide on the answer's first token, from loops 1 to twice the fixed "
          "count, and decode the whole answer at that count.", "", *table(scores), ""]
    plot(scores, out / "exits.png")
    md += ["![exact match and loops used against task length, by exit criterion](exits.png)", ""]
    (out / "EXITS.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
