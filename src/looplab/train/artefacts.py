"""A training run's output directory: its guard against mixing runs, the metrics rows, the plots and
the experiment tracker.

Files: `config.json` (fully resolved; its presence marks a run), `metrics.json` (every logged row
with step, tokens and phase), `summary.json`, `loss.png`, `accuracy.png`, `curriculum.png`; with
`log_to`, the same rows also go to `tensorboard/` or `wandb/` (trackers.py). The checkpoints are
written by the trainer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from looplab.errors import LooplabError
from looplab.io import remove_stale_temporaries, write_json
from looplab.train.plots import plot_accuracy, plot_curriculum, plot_loss
from looplab.train.trackers import Tracker, make_tracker

RUN_MARKER = "config.json"
PLOT_EVERY_S = 60.0  # redrawing the plots costs ~0.5 s; short runs draw them once, at the end


def prepare_output_dir(path: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse to mix two runs in one directory; create it, prove it is writable, and clear the
    temporary files of a killed writer."""
    if resume and not (path / "last_model.pt").exists():
        raise LooplabError(f"--resume: {path / 'last_model.pt'} does not exist")
    if (path / RUN_MARKER).exists() and not (overwrite or resume):
        raise LooplabError(f"--output_dir {path} already holds a run; pass --resume to continue it, --overwrite "
                           "to replace it, or choose another directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise LooplabError(f"--output_dir {path} is not writable ({e.strerror})") from None
    remove_stale_temporaries(path)


class Artefacts:
    """The rows a run logs (`metrics`), its evaluations (`evals`, for the accuracy plot), and where
    they go: metrics.json, the plots, and the tracker."""

    def __init__(self, out: Path, *, curriculum: bool) -> None:
        self.out, self.curriculum = out, curriculum
        self.metrics: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.tracker: Tracker | None = None
        self.tracked = 0  # rows already sent to the tracker
        self.plotted = time.perf_counter()  # when the plots were last drawn

    def open_tracker(self, name: str, config: dict[str, Any]) -> None:
        """Rows logged before (a resumed run's restored rows) were sent by the run that logged them."""
        self.tracker = make_tracker(name, self.out, config)
        self.tracked = len(self.metrics)

    def evaluation(self, row: dict[str, Any], acc: dict[str, float]) -> None:
        self.evals.append({"step": row["step"], "tokens": row["tokens"], "acc": acc, "mean_acc": row["eval_mean_acc"]})
        self.metrics.append(row)

    def restore(self, step: int) -> None:
        """The rows of metrics.json up to `step` (a resumed run drops what it will log again)."""
        path = self.out / "metrics.json"
        self.metrics = [m for m in json.loads(path.read_text()) if m["step"] <= step] if path.exists() else []
        self.evals = [{"step": m["step"], "tokens": m["tokens"], "mean_acc": m["eval_mean_acc"],
                       "acc": {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("eval_acc/")}}
                      for m in self.metrics if "eval_mean_acc" in m]

    def write_metrics(self) -> None:
        write_json(self.out / "metrics.json", self.metrics)

    def track(self) -> None:
        """Send the rows appended since the last call to the tracker (--log_to)."""
        if self.tracker is not None:
            for row in self.metrics[self.tracked:]:
                self.tracker.log(row)
        self.tracked = len(self.metrics)

    def plot(self, *, every: float = 0.0) -> None:
        """loss.png, accuracy.png (and curriculum.png); with `every`, only when the last drawing is older."""
        if every and time.perf_counter() - self.plotted <= every:
            return
        plot_loss(self.metrics, self.out / "loss.png")
        plot_accuracy(self.evals, self.out / "accuracy.png")
        if self.curriculum:
            plot_curriculum(self.metrics, self.out / "curriculum.png")
        self.plotted = time.perf_counter()

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
