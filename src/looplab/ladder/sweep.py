"""The learning-rate sweep's rule: how its runs are scored, which rate wins, and when the grid grows.

Every sweep run trains `sweep_tokens` at one peak learning rate and is scored by its final
in-distribution grid (summary.json `final_eval["iid_acc"]`: answer accuracy) and its IID validation
loss (`final_alg_val_loss`: answer tokens of fresh batches from the training distribution). A rate's
figures are the means over the sweep's seeds; a rate where a seed failed or diverged is never chosen.

The choice (`choose`): the highest mean IID answer accuracy, where rates within TIE of the best count
as tied (half a point is within the noise of the runs' final grid), and among the tied the lowest
mean validation loss wins, then the smaller rate.

The extension (`extension`): a winner at an edge of the rates tried has not been bracketed, so one
more rate a factor STEP beyond that edge is tried, at most `steps` per variant; the variant's seeds
train once no rate is left to try. Both are functions of the sweep runs' summaries alone, so a
restarted ladder recomputes the same extensions from what its sweep runs recorded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from looplab.errors import LooplabError

TIE = 0.005  # accuracies within half a point (inclusive) of the best are tied; the validation loss decides
STEP = 2.0  # factor between the edge of the rates tried and the rate an extension adds beyond it


@dataclass(frozen=True)
class Score:
    """One sweep run's figures; a run that failed or diverged has neither."""

    iid_acc: float | None  # final in-distribution answer accuracy
    val_loss: float | None  # final IID validation loss

    @property
    def failed(self) -> bool:
        return self.iid_acc is None or self.val_loss is None


FAILED = Score(None, None)


def score(run_dir: Path) -> Score:
    """A sweep run's figures from its summary.json (FAILED without one, or with a non-finite loss)."""
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    acc = (summary.get("final_eval") or {}).get("iid_acc")
    loss = summary.get("final_alg_val_loss")
    if acc is None or loss is None or not math.isfinite(loss):
        return FAILED
    return Score(float(acc), float(loss))


def mean(scores: Sequence[Score]) -> Score:
    """The seeds' mean figures; FAILED when any seed failed."""
    if not scores or any(s.failed for s in scores):
        return FAILED
    return Score(sum(s.iid_acc for s in scores) / len(scores), sum(s.val_loss for s in scores) / len(scores))


def choose(points: Mapping[float, Sequence[Score]], name: str = "") -> float:
    """The winning rate of `points` (rate -> each seed's score): highest mean accuracy, ties within TIE
    broken by the lower mean validation loss, then by the smaller rate."""
    means = {lr: mean(s) for lr, s in points.items()}
    usable = {lr: m for lr, m in means.items() if not m.failed}
    if not usable:
        raise LooplabError(f"every learning-rate sweep run of {name or 'the variant'} failed or diverged; see "
                           f"sweep/{name or '<variant>'}_lr*/ladder.log in the ladder directory")
    best = max(m.iid_acc for m in usable.values())
    tied = [lr for lr, m in usable.items() if m.iid_acc >= best - TIE - 1e-12]
    return min(tied, key=lambda lr: (usable[lr].val_loss, lr))


def extension(grid: Sequence[float], points: Mapping[float, Sequence[Score]], steps: int) -> float | None:
    """The next rate to try once every run of `points` has finished: a factor STEP beyond the edge the
    winner sits on, while fewer than `steps` rates were added to `grid`; None when the sweep is settled
    (or when no run is usable, which `choose` reports)."""
    added = [lr for lr in points if lr not in grid]
    if len(added) >= steps:
        return None
    try:
        won = choose(points)
    except LooplabError:
        return None
    tried = sorted(points)
    if won == tried[-1]:
        return won * STEP
    if won == tried[0]:
        return won / STEP
    return None


def outcome(grid: Sequence[float], points: Mapping[float, Sequence[Score]], chosen: float | None) -> dict[str, Any]:
    """The sweep of one variant as ladder.json keeps it: every rate tried (extensions marked) with each
    seed's figures and their means, and the chosen rate."""
    def figures(s: Score) -> dict[str, float | None]:
        return {"iid_acc": s.iid_acc, "val_loss": s.val_loss}

    return {"grid": list(grid), "extended": sorted(lr for lr in points if lr not in grid), "chosen": chosen,
            "points": {f"{lr:g}": {"lr": lr, "extended": lr not in grid, **figures(mean(points[lr])),
                                   "seeds": [figures(s) for s in points[lr]]} for lr in sorted(points)}}
