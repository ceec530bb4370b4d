"""The training loop: data stream -> model -> AdamW, with periodic bounded evaluation and artefacts.

The split curriculum: the first `alg_steps` steps train on algorithmic data, the rest on language
data, of which an `alg_replay` share of steps (spread evenly) replays algorithmic batches so that
forgetting shows in the accuracy curves. An optional per-task curriculum probes competence every
`curriculum_every` steps of the algorithmic phase and steers the algorithmic stream.

Stopping: at the end of the token budget; with --competence, at the first evaluation where every IID
cell is competent (cosine), or after the decay that it starts (wsd: optim.decay_window), so that the
stopped model is annealed; --max_minutes is a safety stop, and a run it ends says `stopped_by:
time_cap` in summary.json (a ladder keeps such runs out of its verdicts).

Realised compute: every forward reports the loops it executed (aux `loops_run`), and the run sums
the training FLOPs of each micro-batch at that count (`realised_flops` in summary.json, beside the
nominal `cost`): a length-loop arm runs its batch's largest count, not its nominal one.

Checkpoints: `best_model.pt` (best evaluation accuracy, or with --competence the competent
checkpoint: evaluation.py) and `last_model.pt` (with optimiser, data and curriculum state, from
which `resume` continues: resume.py); `summary.json` holds the final evaluation, cost, realised
FLOPs, why training stopped, wall time and tokens/s. The rest of the output directory is artefacts.py's, and
the batches and accuracies come from the run's training data (data.py).
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from pathlib import Path
from typing import Any

import torch

from looplab.config import ModelConfig, TrainConfig
from looplab.data.batch import IGNORE, Batch
from looplab.data.curriculum import build_curriculum
from looplab.data.lang import LangStream, default_cache_dir, load_corpus, validation_batches
from looplab.data.task_file import describe, load_task_files
from looplab.data.tasks import training_tasks
from looplab.errors import LooplabError
from looplab.io import write_json
from looplab.meta import provenance
from looplab.models import MODELS, build_model, get_spec
from looplab.runtime import autocast, autocast_dtype, resolve_device, seed_everything, set_threads
from looplab.train import parallel as par
from looplab.train.artefacts import RUN_MARKER, Artefacts, prepare_output_dir
from looplab.train.data import make_train_data
from looplab.train.evaluation import Evaluation
from looplab.train.guard import NonFiniteGuard
from looplab.train.optim import decay_window, lr_at, make_optimizer
from looplab.train.parallel import World
from looplab.train.progress import Progress
from looplab.train.resume import Resumable

VAL_BATCHES = 4  # held-out language batches scored at every evaluation



def resolve_packing(variant: str, packing: str) -> str:
    """The packing a run of `variant` trains with. `auto`: `isolated` where the registry says the variant
    keeps packed examples apart (`ModelSpec.isolates`: every generic variant), else `single`; measured
    on the baseline, packing without isolation cost 47 points of IID exact match (docs/RESULTS.md).
    `isolated` where that cannot hold is an error naming the variants that can. Random positions are
    drawn per packed example (models.positions), so every position encoding packs."""
    can = get_spec(variant).isolates
    if packing == "auto":
        return "isolated" if can else "single"
    if packing == "isolated" and not can:
        allowed = ", ".join(v for v, s in MODELS.items() if s.isolates)
        raise LooplabError(f"--packing isolated keeps packed examples apart, which variant '{variant}' cannot "
                           f"(allowed: {allowed}); use --packing single")
    return packing


class Trainer(Resumable, Evaluation):
    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, tokenizer: Any, *, overwrite: bool = False,
                 resume: bool = False, world: World | None = None) -> None:
        world = world or World()
        self.file_tasks = load_task_files(cfg.task_files)
        builtin = training_tasks(cfg.alg_tasks, cfg.answer_format)
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
        self.lang_val: list[Batch] = []
        if cfg.total_steps > cfg.alg_steps:
            corpus = load_corpus(cfg.lang_data, tokenizer, cfg.lang_cache_dir or default_cache_dir(),
                                 text_field=cfg.text_field, allow_network=cfg.allow_network)
            train_docs, val_docs = corpus.split(cfg.lang_val_fraction)
            self.lang = LangStream(corpus, train_docs, seq_len=cfg.seq_len, batch_size=cfg.batch_size, seed=cfg.seed)
            if len(val_docs):
                self.lang_val = validation_batches(corpus, val_docs, seq_len=cfg.seq_len,
                                                      batch_size=cfg.batch_size, max_batches=VAL_BATCHES)
        self.out = Path(cfg.output_dir)
        par.from_main(world, lambda: prepare_output_dir(self.out, overwrite=overwrite, resume=resume))
        self.art = Artefacts(self.out, curriculum=cfg.use_task_curriculum)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and world.distributed:
            self.device = torch.device("cuda", world.local_rank)
        self.amp = autocast_dtype(cfg.dtype, self.device)
        self.threads = set_threads(cfg.threads) if self.device.type == "cpu" else torch.get_num_threads()
        seed_everything(cfg.seed)
        self.model = build_model(model_cfg).to(self.device)
        self.model_cfg = self.model.cfg  # a builder may resolve options (rlf records its base's architecture)
        self.cfg = cfg = dataclasses.replace(cfg, packing=resolve_packing(model_cfg.variant, cfg.packing))
        self.data = make_train_data(self.model, tokenizer, self.task_objs, cfg)
        self.curriculum = None
        if cfg.use_task_curriculum:
            by_schedule = {"steps_per_level": cfg.curriculum_schedule_steps} \
                if cfg.task_curriculum_strategy == "schedule" else {}
            self.curriculum = build_curriculum(
                cfg.task_curriculum_strategy, self.task_objs, cooldown=cfg.curriculum_cooldown,
                min_evals=cfg.curriculum_min_task_evals, jitter=cfg.curriculum_jitter, **by_schedule)
            self.curriculum.apply(self.data.stream)
        self.best_acc = -1.0
        self.competent_at: dict[str, int] | None = None  # step and tokens of the first competent evaluation
        self.scored: dict[str, Any] | None = None  # step, tokens and reason of the checkpoint in best_model.pt
        self.window: tuple[int, int] | None = None  # wsd: the decay [start, end) steps a competence stop set
        self.stopped_by: str | None = None  # competence, token_budget or time_cap
        self.realised_flops = 0.0  # training FLOPs executed by every rank, up to the last sync_flops
        self.pending_flops = 0.0  # this rank's since then
        self.flops_at: dict[float | None, float] = {}  # realised FLOPs per token by executed loop count
        self.step = 0
        self.tokens = 0
        self.replay_steps = 0
        self.train_seconds = 0.0
        self.saved: tuple[Path, int] | None = None  # the newest checkpoint written, and its step
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
        self.art.open_tracker(cfg.log_to if world.main else "none",
                              {"model": model_cfg.to_dict(), "train": dataclasses.asdict(cfg)})

    # --- phases -------------------------------------------------------------------------------
    def phase(self, step: int) -> str:
        """Phase of the optimiser step with 0-based index `step`."""
        return "algorithmic" if step < self.cfg.alg_steps or self.lang is None else "language"

    @property
    def end_step(self) -> int:
        """The step the run ends at: the budget's last, or the end of a decay that competence started."""
        return self.window[1] if self.window else self.cfg.total_steps

    def replays(self, step: int) -> bool:
        """Whether language-phase step `step` trains on algorithmic data: floor((j + 1) r) > floor(j r)
        spreads a share r of the steps evenly, with no random state to resume."""
        j, r = step - self.cfg.alg_steps, self.cfg.alg_replay
        return math.floor((j + 1) * r) > math.floor(j * r)

    # --- one optimiser step -------------------------------------------------------------------
    def next_batch(self) -> Batch:
        """The global batch of this step (every rank draws the same one and keeps its rows)."""
        if self.phase(self.step) == "algorithmic" or self.replays(self.step):
            self.replay_steps += self.phase(self.step) == "language"
            return self.data.next_batch()
        return self.lang.next_batch()

    def train_step(self) -> dict[str, Any]:
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, self.cfg, self.window)
        batch = self.next_batch()
        parts = [batch.rows(sl) for sl in par.micro_rows(batch.tokens.shape[0], self.world, self.cfg.grad_accum)]
        whole = len(parts) == 1 and not self.world.distributed
        shares = [1.0]  # each micro-batch's share of the global batch's supervised tokens, counted on the host
        if not whole:
            n_all = max(1, int((batch.targets != IGNORE).sum()))
            shares = [int((part.targets != IGNORE).sum()) / n_all for part in parts]
        self.model.train()
        loss = torch.zeros((), device=self.device)  # this rank's share of the global token-mean loss
        for i, (part, share) in enumerate(zip(parts, shares, strict=True)):
            with par.grad_sync(self.step_model, self.mode, i == len(parts) - 1):
                with autocast(self.device, self.amp):
                    out = self.step_model(part.to(self.device))
                (out.loss if whole else out.loss * (share * self.world.size)).backward()  # DDP averages ranks
            loss += out.loss.detach() * share
            self.pending_flops += self.realised_flops_per_token(out.aux) * part.tokens.numel()
        grad_norm = None
        if self.cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm  # fsdp DTensor
        skip = self.guard.observe(self.step + 1, loss, grad_norm)
        if skip:
            self.art.metrics.append({"step": self.step + 1, "tokens": self.tokens, "phase": self.phase(self.step),
                                 "skipped_nonfinite": 1})
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += batch.tokens.numel()
        return {"loss": loss, "grad_norm": grad_norm, "aux": out.aux}

    def realised_flops_per_token(self, aux: dict[str, Any]) -> float:
        """The model's training FLOPs per token at the loop count a forward executed (cached per count)."""
        key = aux.get("loops_run", aux.get("n_loops"))  # rlf reports its loops as n_loops
        if key not in self.flops_at:
            self.flops_at[key] = self.model.realised_flops_per_token(aux, self.cfg.seq_len)
        return self.flops_at[key]

    def sync_flops(self) -> None:
        """Add every rank's realised FLOPs since the last sync to the run's total (a collective)."""
        pending = torch.tensor(self.pending_flops, dtype=torch.float64, device=self.device)
        self.realised_flops += float(par.all_sum(pending, self.world))
        self.pending_flops = 0.0

    def last_good(self) -> str:
        if self.saved is None:
            return "No checkpoint was written yet."
        path, step = self.saved
        return f"The last good checkpoint is {path} (step {step}); continue with --resume, perhaps with a lower --lr."

    def meta(self) -> dict[str, Any]:
        return {"step": self.step, "tokens": self.tokens, "tasks": self.builtin_tasks, "seed": self.cfg.seed,
                "seq_len": self.cfg.seq_len,
                "custom_tasks": describe(self.file_tasks), "task_files": list(self.cfg.task_files)}

    def resolved_config(self) -> dict[str, Any]:
        return {"model": self.model_cfg.to_dict(), "train": {**dataclasses.asdict(self.cfg), "output_dir": "."},
                "tasks": self.tasks,
                "tokenizer": {"name": self.tokenizer.name, "vocab_size": self.tokenizer.vocab_size,
                              "fingerprint": self.tokenizer.fingerprint},
                "runtime": {"device": str(self.device), "autocast": str(self.amp), "threads": self.threads},
                "provenance": provenance()}

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.step == 0 and self.world.main:
            write_json(self.out / RUN_MARKER, self.resolved_config())
        eval_every = max(1, cfg.eval_every_tokens // cfg.tokens_per_step)
        bar = Progress(cfg.total_steps, desc=f"{self.model_cfg.variant}/{self.model_cfg.size}",
                       enabled=cfg.progress and self.world.main)
        t0 = time.perf_counter()
        log_t, log_tokens = t0, 0
        while self.step < self.end_step:
            res = self.train_step()
            if self.step % cfg.log_every == 0 or self.step in (self.end_step, cfg.alg_steps):  # and at the switch
                self.guard.check()
                loss = float(par.all_sum(res["loss"], self.world))
                now = time.perf_counter()
                tps = (self.tokens - log_tokens) / max(1e-9, now - log_t)
                log_t, log_tokens = now, self.tokens
                row = {"step": self.step, "tokens": self.tokens, "phase": self.phase(self.step - 1), "loss": loss,
                       "lr": lr_at(self.step - 1, cfg, self.window), "tokens_per_s": tps}
                if res["grad_norm"] is not None:
                    row["grad_norm"] = float(res["grad_norm"])
                row.update({f"aux/{k}": float(v) for k, v in res["aux"].items()})
                self.art.metrics.append(row)
                bar.update(self.step, loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}")
            if self.curriculum is not None and self.step % cfg.curriculum_every == 0 \
                    and self.phase(self.step - 1) == "algorithmic":
                self.train_seconds += time.perf_counter() - t0  # probing is evaluation, not training
                self.curriculum_step()
                t0 = time.perf_counter()
            out_of_time = self.out_of_time(self.train_seconds + time.perf_counter() - t0)
            if self.step % eval_every == 0 or self.step == self.end_step or out_of_time:
                self.train_seconds += time.perf_counter() - t0
                self.evaluate()
                t0 = time.perf_counter()
            elif cfg.save_every_steps and self.step % cfg.save_every_steps == 0:
                self.train_seconds += time.perf_counter() - t0
                self.save_last()
                t0 = time.perf_counter()
            if out_of_time:
                self.stopped_by = "time_cap"
                break
            if self.competent_at is not None and self.window is None:
                if cfg.schedule != "wsd":
                    break
                self.window = decay_window(cfg, self.competent_at["step"])
        self.train_seconds += time.perf_counter() - t0
        self.stopped_by = self.stopped_by or ("competence" if self.competent_at is not None else "token_budget")
        self.sync_flops()
        weights, _ = self.gather(with_optimizer=False)
        with self.no_draws():
            summary = par.from_main(self.world, lambda: self.finish(weights))
        self.art.close()
        return summary

    def out_of_time(self, trained: float) -> bool:
        """--max_minutes of training time (evaluation excluded) spent; rank 0's clock decides for all."""
        if self.cfg.max_minutes <= 0:
            return False
        over = torch.tensor(float(self.world.main and trained > 60 * self.cfg.max_minutes))
        return bool(par.all_sum(over, self.world) > 0)

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
