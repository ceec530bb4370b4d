"""Experiment trackers: the scalars of metrics.json, also sent to TensorBoard or Weights & Biases.

A tracker receives each metrics row once (`log(row)`, keyed by the row's `step`) and is closed at
the end of the run. Only numbers are sent: strings (the phase), lists and dicts (curriculum
events) stay in metrics.json alone. tensorboard and wandb are optional and imported only when
chosen. wandb runs offline unless WANDB_MODE says otherwise, so nothing leaves the machine unasked.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from looplab.errors import LooplabError


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row, without its step (the x axis)."""
    return {k: float(v) for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Tracker:
    """Logs nothing: the default, and the interface the others follow."""

    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        self.out = out

    def log(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoard(Tracker):
    """Event files under <output_dir>/tensorboard (view with `tensorboard --logdir <output_dir>`)."""

    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        super().__init__(out, config)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise LooplabError("--log_to tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def log(self, row: dict[str, Any]) -> None:
        for name, value in scalars(row).items():
            self.writer.add_scalar(name, value, global_step=int(row["step"]))

    def close(self) -> None:
        self.writer.close()


class Wandb(Tracker):
    """A wandb run in <output_dir>/wandb, offline unless WANDB_MODE is set (`wandb sync` uploads it)."""

    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        super().__init__(out, config)
        try:
            import wandb
        except ImportError:
            raise LooplabError("--log_to wandb needs the wandb package: pip install wandb") from None
        mode = None if os.environ.get("WANDB_MODE") else "offline"
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "looplab"), name=out.name, dir=str(out),
                              config=config, mode=mode)

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(scalars(row), step=int(row["step"]))

    def close(self) -> None:
        self.run.finish()


TRACKERS: dict[str, type[Tracker]] = {"none": Tracker, "tensorboard": TensorBoard, "wandb": Wandb}


def make_tracker(name: str, out: Path, config: dict[str, Any]) -> Tracker:
    if name not in TRACKERS:
        raise LooplabError(f"unknown --log_to '{name}'; allowed: {', '.join(TRACKERS)}")
    return TRACKERS[name](out, config)
