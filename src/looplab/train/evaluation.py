"""The trainer's evaluation half: periodic scoring with checkpoints, the curriculum's competence
probes, held-out losses, and the final evaluation and summary.

Competence (--competence) is every in-distribution (task, length) cell at the threshold, not a task's
mean: 4-bit parity at 100% does not carry 8-bit parity at 90%. A periodic evaluation scores
`screen_samples` per cell where set, and only when every cell passes is competence confirmed on
`eval_samples` per cell. With a target, best_model.pt holds the first competent checkpoint (under
wsd, the annealed one at the end of the decay that follows, when it is competent too), else, until
then, the best mean accuracy; summary.json's `scored` says which and when.

Evaluation draws from a copy of torch's generators (`no_draws`), so how often and how much a run
evaluates never changes its training. Under fsdp, rank 0 scores an unsharded copy holding the
gathered weights; every other rank waits at the barrier.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import torch

from looplab.checkpoint import save_checkpoint
from looplab.data.batch import Batch
from looplab.io import write_json
from looplab.meta import provenance
from looplab.models import build_model
from looplab.runtime import autocast
from looplab.train import parallel as par
from looplab.train.artefacts import PLOT_EVERY_S
from looplab.train.data import cells_below, probe_accuracy, task_means
from looplab.train.optim import lr_at
from looplab.train.rng import rng_state


class Evaluation:
    """Mixed into Trainer, whose model, data, counters and artefacts it reads."""

    def model_for_eval(self, weights: dict[str, torch.Tensor] | None) -> torch.nn.Module:
        """The model rank 0 evaluates: itself, or under fsdp an unsharded copy holding the gathered weights."""
        if self.mode != "fsdp":
            return self.model
        if self.eval_copy is None:
            self.eval_copy = build_model(self.model_cfg).to(self.device)
        self.eval_copy.load_state_dict(weights)
        return self.eval_copy

    def gather(self, *, with_optimizer: bool) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any] | None]:
        """Full weights (fsdp only, else None) and optimiser state; a collective under fsdp."""
        weights = par.full_weights(self.model, self.mode) if self.mode == "fsdp" else None
        opt = par.optimizer_state(self.model, self.opt, self.mode) if with_optimizer else None
        return weights, opt

    def no_draws(self) -> contextlib.AbstractContextManager:
        """Evaluation may draw from torch's generator (prc's random initial state); it gets a copy, so
        how often and how much a run evaluates never changes its training."""
        return torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [],
                                     device_type=self.device.type)

    def evaluate(self) -> None:
        """Score, checkpoint, and note the first evaluation at which every IID cell reaches `competence`."""
        self.guard.check()
        self.sync_flops()
        weights, opt = self.gather(with_optimizer=True)
        rng = rng_state()
        with self.no_draws():
            self.competent_at = par.from_main(self.world, lambda: self.evaluate_and_save(weights, opt, rng))
        self.saved = (self.out / "last_model.pt", self.step)  # on every rank, for their error messages
        par.barrier(self.world)

    def evaluate_and_save(self, weights: dict[str, torch.Tensor] | None, opt: dict[str, Any],
                          rng: dict[str, Any]) -> dict[str, int] | None:
        cfg, model = self.cfg, self.model_for_eval(weights)
        samples = cfg.screen_samples or cfg.eval_samples
        cells = self.data.cell_accuracy(model, samples=samples, seed=cfg.seed + 1)
        acc = task_means(cells)
        mean = sum(acc.values()) / len(acc)
        row = {"step": self.step, "tokens": self.tokens, "phase": self.phase(self.step - 1),
               "train_seconds": self.train_seconds, "eval_mean_acc": mean, "eval_min_cell_acc": min(a for c in cells.values() for a in c.values()),
               **{f"eval_acc/{k}": v for k, v in acc.items()}}
        competent = False
        if cfg.competence and (self.competent_at is None or self.annealed()):
            competent = self.competent(model, cells, samples, row)
        first = competent and self.competent_at is None
        if first:
            self.competent_at = {"step": self.step, "tokens": self.tokens}
        if self.lang_val:
            row["lang_val_loss"] = self.val_loss(model)
        if self.data.val_batches:
            row["alg_val_loss"] = self.val_loss(model, self.data.val_batches)
        self.art.evaluation(row, acc)
        why = None
        if competent:
            why = "first competent evaluation" if first else "competent after the decay"
        elif self.competent_at is None and mean > self.best_acc:
            why = "best mean accuracy"
        if why is not None:
            self.best_acc = mean
            self.scored = {"step": self.step, "tokens": self.tokens, "why": why}
            save_checkpoint(self.out / "best_model.pt", model, self.tokenizer, weights=weights,
                            meta={**self.meta(), "eval_mean_acc": mean, "scored": why})
        self.write_last(weights, opt, rng)
        self.art.track()
        self.art.plot(every=PLOT_EVERY_S)
        return self.competent_at

    def annealed(self) -> bool:
        """Whether this is the end of a wsd run's decay after it became competent (the annealed model)."""
        return self.cfg.schedule == "wsd" and self.competent_at is not None and self.step == self.end_step

    def competent(self, model: torch.nn.Module, cells: dict[str, dict[str, float]], samples: int,
                  row: dict[str, Any]) -> bool:
        """Every cell at the threshold: on the screen, then, when the screen had fewer examples, on eval_samples."""
        below = cells_below(cells, self.cfg.competence)
        if not below and samples < self.cfg.eval_samples:
            full = self.data.cell_accuracy(model, samples=self.cfg.eval_samples, seed=self.cfg.seed + 4)
            row["confirm_min_cell_acc"] = min(a for c in full.values() for a in c.values())
            below = cells_below(full, self.cfg.competence)
        row["cells_below_competence"] = len(below)
        return not below

    def save_last(self) -> None:
        """A resumable checkpoint between evaluations (--save_every_steps)."""
        self.guard.check()
        self.sync_flops()
        weights, opt = self.gather(with_optimizer=True)
        par.from_main(self.world, lambda: self.write_last(weights, opt, rng_state()))
        self.saved = (self.out / "last_model.pt", self.step)
        par.barrier(self.world)

    def write_last(self, weights: dict[str, torch.Tensor] | None, opt: dict[str, Any], rng: dict[str, Any]) -> None:
        """last_model.pt (the one it replaces kept as last_model.prev.pt), then metrics.json."""
        save_checkpoint(self.out / "last_model.pt", self.model_for_eval(weights), self.tokenizer, weights=weights,
                        train_state=self.train_state(opt, rng), meta=self.meta(), keep_previous=True)
        self.art.write_metrics()

    @torch.no_grad()
    def val_loss(self, model: torch.nn.Module, batches: list[Batch] | None = None) -> float:
        """Mean loss on held-out batches: the language documents never trained on (default), or fresh
        algorithmic batches."""
        model.eval()
        losses = []
        for batch in self.lang_val if batches is None else batches:
            with autocast(self.device, self.amp):
                losses.append(float(model(batch.to(self.device)).loss))
        return sum(losses) / len(losses)

    def curriculum_step(self) -> None:
        """Rank 0 probes every active task at its difficulty and updates the curriculum; every rank
        receives the new state and steers its stream."""
        cur = self.curriculum
        weights, _ = self.gather(with_optimizer=False)

        def probe() -> tuple[str, list[Any]]:
            lengths = {n: cur.difficulty(n) for n in cur.active()}
            acc = probe_accuracy(self.model_for_eval(weights), self.tokenizer, self.by_name, lengths,
                                 samples=self.cfg.curriculum_samples, seed=self.cfg.seed + 3 + self.step,
                                 max_new_tokens=self.cfg.eval_max_new_tokens)
            events = cur.update(self.step, acc)
            self.art.metrics.append({"step": self.step, "tokens": self.tokens, "phase": self.phase(self.step - 1),
                                 **{f"probe_acc/{n}": a for n, a in acc.items()}, **cur.snapshot(),
                                 "curriculum_events": events})
            return json.dumps(cur.state_dict()), events

        with self.no_draws():
            state, events = par.from_main(self.world, probe)
        if not self.world.main:
            cur.load_state_dict(json.loads(state))
        if events:
            cur.apply(self.data.stream)

    def finish(self, weights: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.perf_counter()
        model = self.model_for_eval(weights)
        model.eval()
        # the screen's count: the full grid (OOD included) at eval_samples would cost more than training on a CPU,
        # and a ladder scores its answers with the evaluation hub
        final = self.data.final_eval(model, samples=cfg.screen_samples or cfg.eval_samples, seed=cfg.seed + 2)
        summary = {
            "variant": self.model_cfg.variant,
            "size": self.model_cfg.size,
            "tasks": self.tasks,
            "steps": self.step,
            "tokens": self.tokens,
            "phases": {"algorithmic_steps": min(self.step, cfg.alg_steps),
                       "language_steps": max(0, self.step - cfg.alg_steps) if self.lang else 0,
                       "replay_steps": self.replay_steps, "switch_tokens": cfg.alg_steps * cfg.tokens_per_step},
            "skipped_steps": self.guard.skipped,
            "train_seconds": self.train_seconds,
            "tokens_per_s": self.tokens / max(1e-9, self.train_seconds),
            "final_eval_seconds": time.perf_counter() - t0,
            "best_eval_mean_acc": self.best_acc,
            "final_eval": final,
            "cost": model.cost(cfg.seq_len),
            "realised_flops": self.realised_flops,
            "realised_flops_per_token": self.realised_flops / max(1, self.tokens),
            "stopped_by": self.stopped_by,
            "schedule": {"name": cfg.schedule, "decay": list(self.window) if self.window else None,
                         "final_lr": lr_at(max(0, self.step - 1), cfg, self.window)},
            "scored": self.scored,
            "runtime": {"device": str(self.device), "threads": self.threads, "processes": self.world.size,
                        "parallel": self.mode, "grad_accum": cfg.grad_accum},
            "provenance": provenance(),
        }
        if self.lang_val:
            summary["final_lang_val_loss"] = self.val_loss(model)
        if self.data.val_batches:
            summary["final_alg_val_loss"] = self.val_loss(model, self.data.val_batches)
        if cfg.competence:
            summary["competence"] = {"threshold": cfg.competence, "reached": self.competent_at is not None,
                                     "per": "IID cell", "samples": cfg.eval_samples,
                                     "screen_samples": cfg.screen_samples or cfg.eval_samples,
                                     **(self.competent_at or {"step": None, "tokens": None})}
        if self.curriculum is not None:
            summary["curriculum"] = {"difficulty": {n: self.curriculum.difficulty(n) for n in self.tasks},
                                     "active": self.curriculum.active(), "events": self.curriculum.events}
        write_json(self.out / "summary.json", summary)
        self.art.plot()
        self.art.track()
        return summary
