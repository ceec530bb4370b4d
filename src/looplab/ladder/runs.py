"""One ladder run: what it trains (its two configs), and the state of its directory.

`stage` and `checkpoint_step` read only the run directory, so the runner, the report and the soak
script agree on where a run stands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from looplab.config import LaunchConfig, TrainConfig
from looplab.errors import LooplabError
from looplab.flags import to_argv
from looplab.io import previous_path, read_payload
from looplab.ladder.match import Shape

RECORD = "ladder_run.json"
LOG = "ladder.log"


@dataclass
class Run:
    variant: str
    seed: int
    dir: Path
    launch: LaunchConfig  # the model it builds (variant, size, matched shape, options, input checkpoint)
    train: TrainConfig  # how it trains
    shape: Shape
    weight: float  # estimated cost (FLOPs per token x tokens) for the ETA
    sweep: bool = False  # a learning-rate sweep run (trained, not evaluated by the hub)

    @property
    def lr(self) -> float:
        return self.train.lr

    @property
    def label(self) -> str:
        return f"{self.variant} lr{self.lr:g} s{self.seed}" if self.sweep else f"{self.variant} s{self.seed}"

    @property
    def argv(self) -> list[str]:
        """train.py's flags for this run (a record: the ladder calls training with the configs)."""
        return (["--variant", self.launch.variant, "--model_size", self.launch.model_size]
                + to_argv(self.launch, skip=("variant", "model_size")) + to_argv(self.train))

    @property
    def root(self) -> Path:
        """The ladder directory (above `runs/` or `sweep/`)."""
        return self.dir.parent.parent

    @property
    def flags(self) -> list[str]:
        """`argv` with paths relative to the ladder directory: what its records hold, run from there."""
        return [relative(a, self.root) for a in self.argv]


def relative(text: str, root: Path) -> str:
    """`text` with the directory `root` (and anything under it) written relative to it."""
    return "." if text == str(root) else text.replace(f"{root}/", "")


def stage(run_dir: Path, suite: str | None = "all") -> str:
    """finished / trained (summary, no evaluation) / partial (resumable) / started / new. A run that
    needs no evaluation (`suite` None: a sweep run) is finished with its summary."""
    if (run_dir / "summary.json").exists():
        done = suite is None or (run_dir / "eval_results" / f"results_{suite}.json").exists()
        return "finished" if done else "trained"
    if (run_dir / "last_model.pt").exists():
        return "partial"
    return "started" if (run_dir / "config.json").exists() else "new"


def checkpoint_step(run_dir: Path) -> int:
    """The step training resumes from: the newest sound resumable checkpoint's (0 when there is none)."""
    for path in (run_dir / "last_model.pt", previous_path(run_dir / "last_model.pt")):
        try:
            return int(json.loads(read_payload(path)["meta"])["step"])
        except (LooplabError, KeyError, ValueError):
            continue
    return 0
