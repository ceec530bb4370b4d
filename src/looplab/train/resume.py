"""--resume: what a resumable checkpoint holds, and continuing from it bit for bit.

`Resumable` is the trainer's resume half: `train_state` is everything a continuation needs
(optimiser keyed by parameter name, so any world size can resume it; counters; data position;
generators; curriculum), `read_resume_checkpoint` finds and checks last_model.pt (or the previous
one kept beside it), and `restore` puts it all back. The learning-rate schedule is a function of the
step and needs no state.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from looplab.checkpoint import Checkpoint, load_latest
from looplab.config import TrainConfig
from looplab.errors import LooplabError
from looplab.train import parallel as par
from looplab.train.artefacts import RUN_MARKER
from looplab.train.rng import set_rng_state

# training flags that --resume may change without changing the trajectory (the rest trigger a warning)
RESUME_FREE = frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("resume_free"))


class Resumable:
    """Mixed into Trainer, whose attributes (cfg, out, data, lang, curriculum, counters) it reads and sets."""

    resumed_from: Path

    def train_state(self, optimizer: dict[str, Any], rng: dict[str, Any]) -> dict[str, Any]:
        state = {"optimizer": optimizer, "step": self.step, "tokens": self.tokens,
                 "stream": json.dumps(self.data.state_dict()), "best_acc": self.best_acc,
                 "replay_steps": self.replay_steps, "skipped_steps": self.guard.skipped,
                 "train_seconds": self.train_seconds, "rng": rng, "competent_at": self.competent_at,
                 "scored": self.scored, "window": self.window, "realised_flops": self.realised_flops}
        if self.lang is not None:
            state["lang_stream"] = json.dumps(self.lang.state_dict())
        if self.curriculum is not None:
            state["curriculum"] = json.dumps(self.curriculum.state_dict())
        return state

    def read_resume_checkpoint(self) -> Checkpoint:
        """last_model.pt (or the previous one kept beside it when it fails its checks), checked against this run."""
        ckpt, path = load_latest(self.out / "last_model.pt", map_location=self.device)
        if ckpt.tokenizer.fingerprint != self.tokenizer.fingerprint:
            raise LooplabError(f"--resume: {path} was trained with tokenizer {ckpt.tokenizer.name} (vocab "
                               f"{ckpt.tokenizer.vocab_size}), not {self.tokenizer.name} (vocab "
                               f"{self.tokenizer.vocab_size}); use the original --tokenizer")
        if ckpt.config != self.model_cfg:
            raise LooplabError(f"--resume: {path} holds a different model ({ckpt.config.variant}/{ckpt.config.size}"
                               f", {ckpt.config.d_model} wide); use the flags of the original run")
        self.resumed_from = path
        self.warn_changed_flags()
        return ckpt

    def warn_changed_flags(self) -> None:
        """One stderr line when --resume runs with training flags that change the trajectory."""
        config = self.out / RUN_MARKER
        if not config.exists() or not self.world.main:
            return
        before = json.loads(config.read_text()).get("train", {})
        now = json.loads(json.dumps(dataclasses.asdict(self.cfg)))  # tuples as JSON lists, like config.json
        changed = [f"--{k} {before[k]} -> {v}" for k, v in now.items()
                   if k in before and k not in RESUME_FREE and before[k] != v]
        if changed:
            print(f"warning: --resume with flags that differ from the original run ({'; '.join(changed)}); the "
                  "result will not equal an uninterrupted run", file=sys.stderr)

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from a checkpoint: optimiser, counters, data streams, curriculum, generators, logs
        (the weights were loaded before the model was wrapped)."""
        ts = ckpt.train_state
        par.load_optimizer_state(self.model, self.opt, self.mode, ts["optimizer"])
        self.step, self.tokens = int(ts["step"]), int(ts["tokens"])
        self.best_acc, self.replay_steps = float(ts["best_acc"]), int(ts["replay_steps"])
        self.guard.skipped = int(ts.get("skipped_steps", 0))
        self.train_seconds = float(ts["train_seconds"])
        self.competent_at = ts.get("competent_at")
        self.scored = ts.get("scored")
        self.window = tuple(ts["window"]) if ts.get("window") else None
        self.realised_flops = float(ts.get("realised_flops", 0.0))  # 0 in checkpoints written before it was counted
        self.data.load_state_dict(json.loads(ts["stream"]))
        for name, part in (("lang_stream", self.lang), ("curriculum", self.curriculum)):
            if part is not None:
                if name not in ts:
                    raise LooplabError(f"--resume: {self.resumed_from} has no {name} state; it was saved by a run "
                                       "without it")
                part.load_state_dict(json.loads(ts[name]))
        if "rng" in ts:  # absent in checkpoints written before exact resume
            set_rng_state(ts["rng"])
        self.saved = (self.resumed_from, self.step)
        self.art.restore(self.step)
