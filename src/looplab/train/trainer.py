"""The training loop: data stream -> model -> AdamW, with periodic bounded evaluation and artefacts.

The split curriculum: the first `alg_steps` steps train on algorithmic data, the rest on language
data, of which an `alg_replay` share of steps (spread evenly) replays algorithmic batches so that
forgetting shows in the accuracy curves. An optional per-task curriculum probes competence every
`curriculum_every` steps of the algorithmic phase and steers the algorithmic stream.

Artefacts in the output directory: `config.json` (fully resolved), `metrics.json` (every logged
scalar with step, tokens and phase), `summary.json` (final evaluation, cost, wall time, tokens/s),
`best_model.pt` (best evaluation accuracy), `last_model.pt` (with optimiser, data and curriculum
state, from which `resume` continues), `loss.png`, `accuracy.png`, `curriculum.png`; with `log_to`,
the same metrics rows also go to `tensorboard/` or `wandb/` (train/trackers.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from looplab.config import ModelConfig, TrainConfig
from looplab.data.curriculum import build_curriculum
from looplab.data.lang import LangStream, default_cache_dir, load_corpus, validation_batches
from looplab.data.packing import AlgoStream
from looplab.data.task_file import describe, load_task_files
from looplab.data.tasks import Task, training_tasks
from looplab.errors import LooplabError
from looplab.eval.algorithmic import cell_rng, iid_accuracy, run_grid, score_examples
from looplab.meta import provenance
from looplab.models import build_model, get_spec
from looplab.models.base import IGNORE_INDEX
from looplab.train import parallel as par
from looplab.train.checkpoint import (
    atomic_write_bytes,
    load_latest,
    remove_stale_temporaries,
    save_checkpoint,
)
from looplab.train.guard import NonFiniteGuard
from looplab.train.optim import lr_at, make_optimizer
from looplab.train.parallel import World
from looplab.train.plots import plot_accuracy, plot_curriculum, plot_loss
from looplab.train.progress import Progress
from looplab.train.rng import rng_state, set_rng_state
from looplab.train.runtime import autocast, autocast_dtype, resolve_device, seed_everything, set_threads
from looplab.train.trackers import make_tracker

RUN_MARKER = "config.json"
VAL_BATCHES = 4  # held-out language batches scored at every evaluation
ALG_VAL_BATCHES = 8  # fresh algorithmic batches (training distribution) scored at every evaluation
ALG_VAL_SEED = 1_000_003  # their stream's seed: the same batches for every run, apart from any training seed
# training flags that --resume may change without changing the trajectory (the rest trigger a warning);
# evaluation draws from a copy of the generators (Trainer.no_draws), so its settings are free
RESUME_FREE = {"output_dir", "threads", "device", "progress", "log_to", "max_minutes", "save_every_steps",
               "eval_every_tokens", "eval_samples", "eval_max_new_tokens", "log_every", "grad_accum", "parallel",
               "max_skipped_steps", "lang_cache_dir", "allow_network"}
PLOT_EVERY_S = 60.0  # redrawing the plots costs ~0.5 s; short runs draw them once, at the end


def write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


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


@torch.no_grad()
def probe_accuracy(model: torch.nn.Module, tokenizer: Any, tasks: dict[str, Task], lengths: dict[str, int], *,
                   samples: int, seed: int, max_new_tokens: int) -> dict[str, float]:
    """Exact match per task at exactly the given length: the curriculum's competence signal."""
    pairs = {n: tasks[n].generate(cell_rng(seed, n, k), samples, k).texts() for n, k in lengths.items()}
    flat = [p for ps in pairs.values() for p in ps]
    if not flat:
        return {}
    model.eval()
    correct = score_examples(model, tokenizer, flat, max_new_tokens=max_new_tokens)
    out, i = {}, 0
    for name, ps in pairs.items():
        out[name] = sum(correct[i : i + len(ps)]) / len(ps)
        i += len(ps)
    return out


class Trainer:
    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, tokenizer: Any, *, overwrite: bool = False,
                 resume: bool = False, world: World | None = None) -> None:
        world = world or World()
        self.file_tasks = load_task_files(cfg.task_files)
        builtin = training_tasks(cfg.alg_tasks)
        self.task_objs = [*builtin, *self.file_tasks]
        self.by_name = {t.name: t for t in self.task_objs}
        self.tasks = list(self.by_name)
        self.builtin_tasks = [t.name for t in builtin]
        if tokenizer.vocab_size != model_cfg.vocab_size:
            raise LooplabError(f"tokenizer {tokenizer.name} has vocab_size {tokenizer.vocab_size} "
                               f"but the model has {model_cfg.vocab_size}")
        par.check_batch(cfg.batch_size, world, cfg.grad_accum)
        self.cfg, self.model_cfg, self.tokenizer, self.world = cfg, model_cfg, tokenizer, world
        self.lang: LangStream | None = None
        self.val_batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        if cfg.total_steps > cfg.alg_steps:
            corpus = load_corpus(cfg.lang_data, tokenizer, cfg.lang_cache_dir or default_cache_dir(),
                                 text_field=cfg.text_field, allow_network=cfg.allow_network)
            train_docs, val_docs = corpus.split(cfg.lang_val_fraction)
            self.lang = LangStream(corpus, train_docs, seq_len=cfg.seq_len, batch_size=cfg.batch_size, seed=cfg.seed)
            if len(val_docs):
                self.val_batches = validation_batches(corpus, val_docs, seq_len=cfg.seq_len,
                                                      batch_size=cfg.batch_size, max_batches=VAL_BATCHES)
        self.out = Path(cfg.output_dir)
        par.from_main(world, lambda: prepare_output_dir(self.out, overwrite=overwrite, resume=resume))
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and world.distributed:
            self.device = torch.device("cuda", world.local_rank)
        self.amp = autocast_dtype(cfg.dtype, self.device)
        self.threads = set_threads(cfg.threads) if self.device.type == "cpu" else torch.get_num_threads()
        seed_everything(cfg.seed)
        self.model = build_model(model_cfg).to(self.device)
        self.model_cfg = self.model.cfg  # a builder may resolve options (rlf records its base's architecture)
        own_data = get_spec(model_cfg.variant).train_data  # a variant with its own batches and accuracy (rlf)
        self.own_data = own_data is not None
        self.stream = own_data(self.model, tokenizer, cfg) if own_data is not None else \
            AlgoStream(tokenizer, self.task_objs, seq_len=cfg.seq_len, batch_size=cfg.batch_size, seed=cfg.seed,
                       loss_on=cfg.loss_on, packing=cfg.packing)
        self.alg_val: list[tuple[torch.Tensor, torch.Tensor]] = [] if self.own_data else [
            AlgoStream(tokenizer, self.task_objs, seq_len=cfg.seq_len, batch_size=cfg.batch_size, seed=ALG_VAL_SEED,
                       loss_on=cfg.loss_on, packing=cfg.packing).next_batch() for _ in range(ALG_VAL_BATCHES)]
        self.curriculum = None
        if cfg.use_task_curriculum:
            self.curriculum = build_curriculum(
                cfg.task_curriculum_strategy, self.task_objs, cooldown=cfg.curriculum_cooldown,
                min_evals=cfg.curriculum_min_task_evals, jitter=cfg.curriculum_jitter)
            self.curriculum.apply(self.stream)
        self.metrics: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []  # evaluations, for the accuracy plot
        self.best_acc = -1.0
        self.competent_at: dict[str, int] | None = None  # step and tokens of the first competent evaluation
        self.step = 0
        self.tokens = 0
        self.replay_steps = 0
        self.train_seconds = 0.0
        self.saved: tuple[Path, int] | None = None  # the newest checkpoint written, and its step
        self.plotted = time.perf_counter()  # when the plots were last drawn
        ckpt = self.read_resume_checkpoint() if resume else None
        if ckpt is not None:
            self.model.load_state_dict(ckpt.model.state_dict())  # before sharding: every rank loads the full weights
        self.mode = par.resolve_mode(cfg.parallel, world, sum(p.numel() for p in self.model.parameters()))
        wrapped = par.wrap(self.model, self.mode, world)
        self.step_model = torch.compile(wrapped) if cfg.compile else wrapped
        self.opt = make_optimizer(self.model, cfg)
        self.eval_copy: torch.nn.Module | None = None  # under fsdp, rank 0's unsharded model for evaluation
        self.guard = NonFiniteGuard(cfg.on_nonfinite, cfg.max_skipped_steps, world, self.device, self.last_good)
        if ckpt is not None:
            self.restore(ckpt)
        self.tracker = make_tracker(cfg.log_to if world.main else "none", self.out,
                                    {"model": model_cfg.to_dict(), "train": dataclasses.asdict(cfg)})
        self.tracked = len(self.metrics)  # rows already sent (a resumed run sent its restored rows before)

    # --- phases -------------------------------------------------------------------------------
    def phase(self, step: int) -> str:
        """Phase of the optimiser step with 0-based index `step`."""
        return "algorithmic" if step < self.cfg.alg_steps or self.lang is None else "language"

    def replays(self, step: int) -> bool:
        """Whether language-phase step `step` trains on algorithmic data: floor((j + 1) r) > floor(j r)
        spreads a share r of the steps evenly, with no random state to resume."""
        j, r = step - self.cfg.alg_steps, self.cfg.alg_replay
        return math.floor((j + 1) * r) > math.floor(j * r)

    # --- one optimiser step -------------------------------------------------------------------
    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch of this step (every rank draws the same one and keeps its slice)."""
        if self.phase(self.step) == "algorithmic" or self.replays(self.step):
            self.replay_steps += self.phase(self.step) == "language"
            return self.stream.next_batch()
        return self.lang.next_batch()

    def train_step(self) -> dict[str, Any]:
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, self.cfg)
        x, y = self.next_batch()
        parts = par.micro_batches(x, y, self.world, self.cfg.grad_accum)
        whole = len(parts) == 1 and not self.world.distributed
        shares = [1.0]  # each micro-batch's share of the global batch's supervised tokens, counted on the host
        if not whole:
            n_all = max(1, int((y != IGNORE_INDEX).sum()))
            shares = [int((ym != IGNORE_INDEX).sum()) / n_all for _, ym in parts]
        self.model.train()
        loss = torch.zeros((), device=self.device)  # this rank's share of the global token-mean loss
        for i, ((xm, ym), share) in enumerate(zip(parts, shares, strict=True)):
            xm, ym = xm.to(self.device, non_blocking=True), ym.to(self.device, non_blocking=True)
            with par.grad_sync(self.step_model, self.mode, i == len(parts) - 1):
                with autocast(self.device, self.amp):
                    out = self.step_model(xm, ym)
                (out.loss if whole else out.loss * (share * self.world.size)).backward()  # DDP averages ranks
            loss += out.loss.detach() * share
        grad_norm = None
        if self.cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm  # fsdp DTensor
        skip = self.guard.observe(self.step + 1, loss, grad_norm)
        if skip:
            self.metrics.append({"step": self.step + 1, "tokens": self.tokens, "phase": self.phase(self.step),
                                 "skipped_nonfinite": 1})
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += x.numel()
        return {"loss": loss, "grad_norm": grad_norm, "aux": out.aux}

    def last_good(self) -> str:
        if self.saved is None:
            return "No checkpoint was written yet."
        path, step = self.saved
        return f"The last good checkpoint is {path} (step {step}); continue with --resume, perhaps with a lower --lr."

    # --- evaluation and artefacts -------------------------------------------------------------
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
        """Score, checkpoint, and note the first evaluation at which every task reaches `competence`."""
        self.guard.check()
        weights, opt = self.gather(with_optimizer=True)
        rng = rng_state()
        with self.no_draws():
            self.competent_at = par.from_main(self.world, lambda: self.evaluate_and_save(weights, opt, rng))
        self.saved = (self.out / "last_model.pt", self.step)  # on every rank, for their error messages
        par.barrier(self.world)

    def evaluate_and_save(self, weights: dict[str, torch.Tensor] | None, opt: dict[str, Any],
                          rng: dict[str, Any]) -> dict[str, int] | None:
        model = self.model_for_eval(weights)
        if self.own_data:
            acc = self.stream.accuracy(model, samples=self.cfg.eval_samples, seed=self.cfg.seed + 1)
        else:
            acc = iid_accuracy(model, self.tokenizer, self.task_objs, samples=self.cfg.eval_samples,
                                 seed=self.cfg.seed + 1, max_new_tokens=self.cfg.eval_max_new_tokens)
        mean = sum(acc.values()) / len(acc)
        if self.cfg.competence and self.competent_at is None and min(acc.values()) >= self.cfg.competence:
            self.competent_at = {"step": self.step, "tokens": self.tokens}
        self.evals.append({"step": self.step, "tokens": self.tokens, "acc": acc, "mean_acc": mean})
        row = {"step": self.step, "tokens": self.tokens, "phase": self.phase(self.step - 1),
               "eval_mean_acc": mean, **{f"eval_acc/{k}": v for k, v in acc.items()}}
        if self.val_batches:
            row["lang_val_loss"] = self.val_loss(model)
        if self.alg_val:
            row["alg_val_loss"] = self.val_loss(model, self.alg_val)
        self.metrics.append(row)
        if mean > self.best_acc:
            self.best_acc = mean
            save_checkpoint(self.out / "best_model.pt", model, self.tokenizer, weights=weights,
                            meta={**self.meta(), "eval_mean_acc": mean})
        self.write_last(weights, opt, rng)
        self.track()
        if time.perf_counter() - self.plotted > PLOT_EVERY_S:
            self.plot()
        return self.competent_at

    def plot(self) -> None:
        """loss.png, accuracy.png (and curriculum.png): redrawn at most every PLOT_EVERY_S and at the end."""
        plot_loss(self.metrics, self.out / "loss.png")
        plot_accuracy(self.evals, self.out / "accuracy.png")
        if self.curriculum is not None:
            plot_curriculum(self.metrics, self.out / "curriculum.png")
        self.plotted = time.perf_counter()

    def save_last(self) -> None:
        """A resumable checkpoint between evaluations (--save_every_steps)."""
        self.guard.check()
        weights, opt = self.gather(with_optimizer=True)
        par.from_main(self.world, lambda: self.write_last(weights, opt, rng_state()))
        self.saved = (self.out / "last_model.pt", self.step)
        par.barrier(self.world)

    def write_last(self, weights: dict[str, torch.Tensor] | None, opt: dict[str, Any], rng: dict[str, Any]) -> None:
        """last_model.pt (the one it replaces kept as last_model.prev.pt), then metrics.json."""
        save_checkpoint(self.out / "last_model.pt", self.model_for_eval(weights), self.tokenizer, weights=weights,
                        train_state=self.train_state(opt, rng), meta=self.meta(), keep_previous=True)
        write_json(self.out / "metrics.json", self.metrics)

    @torch.no_grad()
    def val_loss(self, model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None
                 ) -> float:
        """Mean loss on held-out batches: the language documents never trained on (default), or fresh
        algorithmic batches."""
        model.eval()
        losses = []
        for x, y in self.val_batches if batches is None else batches:
            with autocast(self.device, self.amp):
                losses.append(float(model(x.to(self.device), y.to(self.device)).loss))
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
            self.metrics.append({"step": self.step, "tokens": self.tokens, "phase": self.phase(self.step - 1),
                                 **{f"probe_acc/{n}": a for n, a in acc.items()}, **cur.snapshot(),
                                 "curriculum_events": events})
            return json.dumps(cur.state_dict()), events

        with self.no_draws():
            state, events = par.from_main(self.world, probe)
        if not self.world.main:
            cur.load_state_dict(json.loads(state))
        if events:
            cur.apply(self.stream)

    def track(self) -> None:
        """Send the metrics rows appended since the last call to the tracker (--log_to)."""
        for row in self.metrics[self.tracked:]:
            self.tracker.log(row)
        self.tracked = len(self.metrics)

    def meta(self) -> dict[str, Any]:
        return {"step": self.step, "tokens": self.tokens, "tasks": self.builtin_tasks, "seed": self.cfg.seed,
                "seq_len": self.cfg.seq_len,
                "custom_tasks": describe(self.file_tasks), "task_files": list(self.cfg.task_files)}

    def train_state(self, optimizer: dict[str, Any], rng: dict[str, Any]) -> dict[str, Any]:
        """Everything --resume needs to continue bit for bit: optimiser (keyed by parameter name, so
        any world size can resume it), counters, data position, generators, curriculum. The learning
        rate schedule is a function of the step and needs no state."""
        state = {"optimizer": optimizer, "step": self.step, "tokens": self.tokens,
                 "stream": json.dumps(self.stream.state_dict()), "best_acc": self.best_acc,
                 "replay_steps": self.replay_steps, "skipped_steps": self.guard.skipped,
                 "train_seconds": self.train_seconds, "rng": rng, "competent_at": self.competent_at}
        if self.lang is not None:
            state["lang_stream"] = json.dumps(self.lang.state_dict())
        if self.curriculum is not None:
            state["curriculum"] = json.dumps(self.curriculum.state_dict())
        return state

    def read_resume_checkpoint(self) -> Any:
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

    def restore(self, ckpt: Any) -> None:
        """Continue from a checkpoint: optimiser, counters, data streams, curriculum, generators, logs
        (the weights were loaded before the model was wrapped)."""
        ts = ckpt.train_state
        par.load_optimizer_state(self.model, self.opt, self.mode, ts["optimizer"])
        self.step, self.tokens = int(ts["step"]), int(ts["tokens"])
        self.best_acc, self.replay_steps = float(ts["best_acc"]), int(ts["replay_steps"])
        self.guard.skipped = int(ts.get("skipped_steps", 0))
        self.train_seconds = float(ts["train_seconds"])
        self.competent_at = ts.get("competent_at")
        self.stream.load_state_dict(json.loads(ts["stream"]))
        for name, part in (("lang_stream", self.lang), ("curriculum", self.curriculum)):
            if part is not None:
                if name not in ts:
                    raise LooplabError(f"--resume: {self.resumed_from} has no {name} state; it was saved by a run "
                                       "without it")
                part.load_state_dict(json.loads(ts[name]))
        if "rng" in ts:  # absent in checkpoints written before exact resume
            set_rng_state(ts["rng"])
        self.saved = (self.resumed_from, self.step)
        metrics = self.out / "metrics.json"
        self.metrics = [m for m in json.loads(metrics.read_text()) if m["step"] <= self.step] \
            if metrics.exists() else []
        self.evals = [{"step": m["step"], "tokens": m["tokens"], "mean_acc": m["eval_mean_acc"],
                       "acc": {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("eval_acc/")}}
                      for m in self.metrics if "eval_mean_acc" in m]

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
        if self.step == 0 and self.world.main:
            write_json(self.out / "config.json", self.resolved_config())
        eval_every = max(1, cfg.eval_every_tokens // cfg.tokens_per_step)
        bar = Progress(cfg.total_steps, desc=f"{self.model_cfg.variant}/{self.model_cfg.size}",
                       enabled=cfg.progress and self.world.main)
        t0 = time.perf_counter()
        log_t, log_tokens = t0, 0
        while self.step < cfg.total_steps:
            res = self.train_step()
            if self.step % cfg.log_every == 0 or self.step in (cfg.total_steps, cfg.alg_steps):  # and at the switch
                self.guard.check()
                loss = float(par.all_sum(res["loss"], self.world))
                now = time.perf_counter()
                tps = (self.tokens - log_tokens) / max(1e-9, now - log_t)
                log_t, log_tokens = now, self.tokens
                row = {"step": self.step, "tokens": self.tokens, "phase": self.phase(self.step - 1), "loss": loss,
                       "lr": lr_at(self.step - 1, cfg), "tokens_per_s": tps}
                if res["grad_norm"] is not None:
                    row["grad_norm"] = float(res["grad_norm"])
                row.update({f"aux/{k}": float(v) for k, v in res["aux"].items()})
                self.metrics.append(row)
                bar.update(self.step, loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}")
            if self.curriculum is not None and self.step % cfg.curriculum_every == 0 \
                    and self.phase(self.step - 1) == "algorithmic":
                self.train_seconds += time.perf_counter() - t0  # probing is evaluation, not training
                self.curriculum_step()
                t0 = time.perf_counter()
            out_of_time = self.out_of_time(self.train_seconds + time.perf_counter() - t0)
            if self.step % eval_every == 0 or self.step == cfg.total_steps or out_of_time:
                self.train_seconds += time.perf_counter() - t0
                self.evaluate()
                t0 = time.perf_counter()
            elif cfg.save_every_steps and self.step % cfg.save_every_steps == 0:
                self.train_seconds += time.perf_counter() - t0
                self.save_last()
                t0 = time.perf_counter()
            if out_of_time or self.competent_at is not None:
                break
        self.train_seconds += time.perf_counter() - t0
        weights, _ = self.gather(with_optimizer=False)
        with self.no_draws():
            summary = par.from_main(self.world, lambda: self.finish(weights))
        self.tracker.close()
        return summary

    def out_of_time(self, trained: float) -> bool:
        """--max_minutes of training time (evaluation excluded) spent; rank 0's clock decides for all."""
        if self.cfg.max_minutes <= 0:
            return False
        over = torch.tensor(float(self.world.main and trained > 60 * self.cfg.max_minutes))
        return bool(par.all_sum(over, self.world) > 0)

    def finish(self, weights: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.perf_counter()
        model = self.model_for_eval(weights)
        model.eval()
        if self.own_data:
            final = self.stream.final_eval(model, samples=cfg.eval_samples, seed=cfg.seed + 2)
        else:
            final = run_grid(model, self.tokenizer, self.task_objs, samples=cfg.eval_samples,
                             seed=cfg.seed + 2, max_new_tokens=cfg.eval_max_new_tokens)
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
            "runtime": {"device": str(self.device), "threads": self.threads, "processes": self.world.size,
                        "parallel": self.mode, "grad_accum": cfg.grad_accum},
            "provenance": provenance(),
        }
        if self.val_batches:
            summary["final_lang_val_loss"] = self.val_loss(model)
        if self.alg_val:
            summary["final_alg_val_loss"] = self.val_loss(model, self.alg_val)
        if cfg.competence:
            summary["competence"] = {"threshold": cfg.competence, "reached": self.competent_at is not None,
                                     **(self.competent_at or {"step": None, "tokens": None})}
        if self.curriculum is not None:
            summary["curriculum"] = {"difficulty": {n: self.curriculum.difficulty(n) for n in self.tasks},
                                     "active": self.curriculum.active(), "events": self.curriculum.events}
        write_json(self.out / "summary.json", summary)
        self.plot()
        self.track()
        return summary


def train(model_cfg: ModelConfig, cfg: TrainConfig, tokenizer: Any, *, overwrite: bool = False,
          resume: bool = False) -> dict[str, Any]:
    """Train in this process, or as one rank of a torchrun job (the world comes from its environment)."""
    world = par.init_world()
    try:
        trainer = Trainer(model_cfg, cfg, tokenizer, overwrite=overwrite, resume=resume, world=world)
        summary = trainer.run()
        if world.distributed:  # free FSDP's pending gloo work while the interpreter is whole (else a rare
            del trainer  # SIGABRT at exit: pytorch/pytorch#179291), and tear the group down only when
            gc.collect()  # no rank still has traffic in flight
            par.barrier(world)
        return summary
    finally:
        par.close_world(world)
