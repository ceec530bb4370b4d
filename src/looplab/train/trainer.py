"""The training loop: data stream -> model -> AdamW, with periodic bounded evaluation and artefacts.

Artefacts in the output directory: `config.json` (fully resolved), `metrics.json` (every logged
scalar with step, tokens and phase), `summary.json` (final evaluation, cost, wall time, tokens/s),
`best_model.pt` (best evaluation accuracy), `last_model.pt` (with optimiser state), `loss.png`,
`accuracy.png`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from looplab.config import ModelConfig, TrainConfig
from looplab.data.packing import AlgoStream
from looplab.data.tasks import get_tasks
from looplab.errors import LooplabError
from looplab.eval.algorithmic import quick_accuracy, run_grid
from looplab.meta import provenance
from looplab.models import build_model
from looplab.train.checkpoint import atomic_write_bytes, save_checkpoint
from looplab.train.optim import lr_at, make_optimizer
from looplab.train.plots import plot_accuracy, plot_loss
from looplab.train.progress import Progress
from looplab.train.runtime import autocast, autocast_dtype, resolve_device, seed_everything, set_threads

RUN_MARKER = "config.json"


def write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def prepare_output_dir(path: Path, overwrite: bool) -> None:
    """Refuse to mix two runs in one directory; create it and prove it is writable."""
    if (path / RUN_MARKER).exists() and not overwrite:
        raise LooplabError(f"--output_dir {path} already holds a run; pass --overwrite to replace it "
                           "or choose another directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise LooplabError(f"--output_dir {path} is not writable ({e.strerror})") from None


class Trainer:
    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, tokenizer: Any, *, overwrite: bool = False) -> None:
        if cfg.total_tokens > cfg.alg_tokens:
            raise LooplabError(
                f"the language phase (--total_tokens - --alg_tokens = {cfg.total_tokens - cfg.alg_tokens} tokens) "
                "needs language data, which this version cannot load yet; set --alg_tokens equal to --total_tokens"
            )
        self.tasks = [t.name for t in get_tasks(cfg.alg_tasks or None)]
        if tokenizer.vocab_size != model_cfg.vocab_size:
            raise LooplabError(f"tokenizer {tokenizer.name} has vocab_size {tokenizer.vocab_size} "
                               f"but the model has {model_cfg.vocab_size}")
        self.cfg, self.model_cfg, self.tokenizer = cfg, model_cfg, tokenizer
        self.out = Path(cfg.output_dir)
        prepare_output_dir(self.out, overwrite)
        self.device = resolve_device(cfg.device)
        self.amp = autocast_dtype(cfg.dtype, self.device)
        self.threads = set_threads(cfg.threads) if self.device.type == "cpu" else torch.get_num_threads()
        seed_everything(cfg.seed)
        self.model = build_model(model_cfg).to(self.device)
        self.step_model = torch.compile(self.model) if cfg.compile else self.model
        self.opt = make_optimizer(self.model, cfg)
        self.stream = AlgoStream(tokenizer, self.tasks, seq_len=cfg.seq_len, batch_size=cfg.batch_size,
                                 seed=cfg.seed, loss_on=cfg.loss_on)
        self.metrics: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.best_acc = -1.0
        self.step = 0
        self.tokens = 0
        self.train_seconds = 0.0

    # --- one optimiser step -------------------------------------------------------------------
    def train_step(self) -> dict[str, Any]:
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, self.cfg)
        x, y = self.stream.next_batch()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        self.model.train()
        with autocast(self.device, self.amp):
            out = self.step_model(x, y)
        out.loss.backward()
        grad_norm = None
        if self.cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += x.numel()
        return {"loss": out.loss.detach(), "grad_norm": grad_norm, "aux": out.aux}

    # --- evaluation and artefacts -------------------------------------------------------------
    def evaluate(self) -> float:
        acc = quick_accuracy(self.model, self.tokenizer, self.tasks, samples=self.cfg.eval_samples,
                             seed=self.cfg.seed + 1, max_new_tokens=self.cfg.eval_max_new_tokens)
        mean = sum(acc.values()) / len(acc)
        self.evals.append({"step": self.step, "tokens": self.tokens, "acc": acc, "mean_acc": mean})
        self.metrics.append({"step": self.step, "tokens": self.tokens, "phase": "algorithmic",
                             "eval_mean_acc": mean, **{f"eval_acc/{k}": v for k, v in acc.items()}})
        if mean > self.best_acc:
            self.best_acc = mean
            save_checkpoint(self.out / "best_model.pt", self.model, self.tokenizer,
                            meta={**self.meta(), "eval_mean_acc": mean})
        save_checkpoint(self.out / "last_model.pt", self.model, self.tokenizer,
                        train_state=self.train_state(), meta=self.meta())
        write_json(self.out / "metrics.json", self.metrics)
        plot_loss(self.metrics, self.out / "loss.png")
        plot_accuracy(self.evals, self.out / "accuracy.png")
        return mean

    def meta(self) -> dict[str, Any]:
        return {"step": self.step, "tokens": self.tokens, "tasks": self.tasks, "seed": self.cfg.seed}

    def train_state(self) -> dict[str, Any]:
        return {"optimizer": self.opt.state_dict(), "step": self.step, "tokens": self.tokens,
                "stream": json.dumps(self.stream.state_dict())}

    def resolved_config(self) -> dict[str, Any]:
        return {"model": self.model_cfg.to_dict(), "train": dataclasses.asdict(self.cfg),
                "tasks": self.tasks,
                "tokenizer": {"name": self.tokenizer.name, "vocab_size": self.tokenizer.vocab_size,
                              "fingerprint": self.tokenizer.fingerprint},
                "runtime": {"device": str(self.device), "autocast": str(self.amp), "threads": self.threads},
                "provenance": provenance()}

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        write_json(self.out / "config.json", self.resolved_config())
        eval_every = max(1, cfg.eval_every_tokens // cfg.tokens_per_step)
        bar = Progress(cfg.total_steps, desc=f"{self.model_cfg.variant}/{self.model_cfg.size}", enabled=cfg.progress)
        t0 = time.perf_counter()
        log_t, log_tokens = t0, 0
        while self.step < cfg.total_steps:
            res = self.train_step()
            if self.step % cfg.log_every == 0 or self.step == cfg.total_steps:
                loss = float(res["loss"])
                if not math.isfinite(loss):
                    raise LooplabError(f"loss became {loss} at step {self.step}; the last good checkpoint is "
                                       f"{self.out / 'last_model.pt'}")
                now = time.perf_counter()
                tps = (self.tokens - log_tokens) / max(1e-9, now - log_t)
                log_t, log_tokens = now, self.tokens
                row = {"step": self.step, "tokens": self.tokens, "phase": "algorithmic", "loss": loss,
                       "lr": lr_at(self.step - 1, cfg), "tokens_per_s": tps}
                if res["grad_norm"] is not None:
                    row["grad_norm"] = float(res["grad_norm"])
                row.update({f"aux/{k}": float(v) for k, v in res["aux"].items()})
                self.metrics.append(row)
                bar.update(self.step, loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}")
            trained = self.train_seconds + time.perf_counter() - t0  # evaluation time excluded
            out_of_time = cfg.max_minutes > 0 and trained > 60 * cfg.max_minutes
            if self.step % eval_every == 0 or self.step == cfg.total_steps or out_of_time:
                self.train_seconds += time.perf_counter() - t0
                self.evaluate()
                t0 = time.perf_counter()
            if out_of_time:
                break
        self.train_seconds += time.perf_counter() - t0
        return self.finish()

    def finish(self) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.perf_counter()
        self.model.eval()
        final = run_grid(self.model, self.tokenizer, self.tasks, samples=cfg.eval_samples, seed=cfg.seed + 2,
                         max_new_tokens=cfg.eval_max_new_tokens)
        summary = {
            "variant": self.model_cfg.variant,
            "size": self.model_cfg.size,
            "tasks": self.tasks,
            "steps": self.step,
            "tokens": self.tokens,
            "train_seconds": self.train_seconds,
            "tokens_per_s": self.tokens / max(1e-9, self.train_seconds),
            "final_eval_seconds": time.perf_counter() - t0,
            "best_eval_mean_acc": self.best_acc,
            "final_eval": final,
            "cost": self.model.cost(cfg.seq_len),
            "runtime": {"device": str(self.device), "threads": self.threads},
            "provenance": provenance(),
        }
        write_json(self.out / "summary.json", summary)
        return summary


def train(model_cfg: ModelConfig, cfg: TrainConfig, tokenizer: Any, *, overwrite: bool = False) -> dict[str, Any]:
    return Trainer(model_cfg, cfg, tokenizer, overwrite=overwrite).run()
