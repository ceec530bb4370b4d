"""Ladder presets: one frozen dataclass per preset, kept as data in `PRESETS`.

A preset fixes everything the variants must share (size, tasks, token budget, sequence length,
batch, schedule, evaluation settings), so that the only difference between two runs of one seed is
the variant. `inputs` says how a variant that needs more than a config gets it: a training flag
filled with the best checkpoint of another variant trained with the same seed (rlf's `--base`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looplab.errors import LooplabError

TINYSTORIES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "tinystories"
# variant -> {training flag: variant whose best checkpoint (same seed) fills it}. The ladder trains
# the source first and adds it when it is not asked for; a variant named here is not shape-matched.
INPUTS: dict[str, dict[str, str]] = {"rlf": {"--base": "baseline"}}


@dataclass(frozen=True, kw_only=True)
class LadderPreset:
    name: str  # the preset's name in PRESETS
    note: str  # one line for the report: what the preset is for and what it leaves out
    size: str  # model size preset every variant starts from (see config.SIZES)
    alg_tasks: tuple[str, ...] = ()  # algorithmic training tasks; empty means all
    alg_tokens: int  # algorithmic tokens (phase 1), the same for every variant
    total_tokens: int  # all training tokens; beyond alg_tokens is language from lang_data
    lang_data: str = ""  # language text for phase 2 (needed when total_tokens > alg_tokens)
    seq_len: int  # training sequence length
    batch_size: int  # sequences per optimiser step
    packing: str = "packed"  # how examples fill rows: packed, or single (one per row, isolated)
    lr: float = 1e-3  # peak learning rate when there is no sweep and `lrs` names none for the variant
    lrs: Mapping[str, float] = field(default_factory=dict)  # variant -> peak learning rate, without a sweep
    lr_grid: tuple[float, ...] = ()  # peak learning rates tried per variant (seed 0, sweep_tokens); () no sweep
    sweep_tokens: int = 0  # training tokens of each sweep run
    warmup_tokens: int = 20_000  # linear warm-up in tokens
    eval_every_tokens: int  # periodic evaluation, which also writes the resumable last_model.pt
    competence: float = 0.0  # a run stops once every task's IID exact match reaches this (0: whole budget)
    train_eval_samples: int = 100  # examples per IID cell in the trainer's periodic checks and final grid
    max_minutes: float = 0.0  # per-run training guard (0: none); a capped run trains fewer tokens
    device: str = "auto"  # training and evaluation device
    threads: int = 0  # CPU threads per run; 0 means all cores shared among the lanes
    jobs: int = 1  # runs at once (lanes) unless --jobs says otherwise
    seeds: int = 1  # seeds 0..seeds-1 per variant unless --seeds says otherwise
    variants: tuple[str, ...] = ()  # variants run by default; () means every generic one
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # variant -> model options
    suite: str = "all"  # the hub suite each finished run is scored with
    eval_samples: int = 100  # examples per (task, length) cell of the hub's algorithmic suite
    n_loops: tuple[int, ...] = (1, 2, 4, 8, 16)  # loop sweep for looped variants (MODELS[v].looped)
    needle_lengths: tuple[int, ...] = (1024, 2048, 4096)  # longctx haystack sizes in tokens
    needle_depths: tuple[float, ...] = (0.0, 0.5, 1.0)  # longctx needle depths
    needle_trials: int = 20  # longctx prompts per (length, depth) cell
    ppl_tokens: int = 32_768  # ppl token cap on the TinyStories validation sample

    def __post_init__(self) -> None:
        if self.lr_grid and (len(self.lr_grid) < 2 or self.sweep_tokens < self.seq_len * self.batch_size):
            raise LooplabError(f"preset {self.name}: an lr_grid needs >= 2 values and sweep_tokens of at least "
                               "one batch")
        if self.total_tokens > self.alg_tokens and not self.lang_data:
            raise LooplabError(f"preset {self.name}: total_tokens > alg_tokens needs lang_data")
        if self.eval_every_tokens < self.seq_len * self.batch_size:
            raise LooplabError(f"preset {self.name}: eval_every_tokens is smaller than one batch")


CPU_TASKS = ("parity", "addition_rev", "copy", "successor")
# Model options shared by the CPU presets. Defaults elsewhere, except prc: its default (2, 4, 2) core
# at r = 4 is 20 blocks deep, which FLOP matching at `tiny` could only pay for with a 40-wide model;
# one block each for prelude, core and coda at a mean of 3 recurrences keeps it 80 wide.
CPU_OPTIONS = {"prc": {"prelude": 1, "recur": 1, "coda": 1, "train_recur_mean": 3.0}}
# The learning rates the `cpu` preset's sweep chose (docs/results/cpu/REPORT.md); the demo reuses them.
CPU_SWEPT_LRS = {"baseline": 5e-4, "shared_loop": 2e-3, "latent": 2e-3, "act": 2e-3, "absolute": 5e-4, "ssm": 1e-3,
                 "ssm_mem": 1e-3, "prc": 2e-3}

PRESETS: dict[str, LadderPreset] = {
    # `make demo`: every generic variant, one seed, on successor written both ways (the answer-format
    # axis), each run stopping once it reaches 95% IID exact match. Learning rates: those the `cpu`
    # preset's sweep chose. Copy is left out: at this size the SSM does not learn 8-letter copies.
    "smoke": LadderPreset(
        name="smoke", size="tiny", alg_tasks=("successor", "successor_rev"),
        note="CPU demo: tiny models, successor with numbers in both digit orders, one seed, each run stops at "
             "95% IID exact match",
        alg_tokens=2_000_000, total_tokens=2_000_000, seq_len=24, batch_size=16, packing="single",
        lrs=CPU_SWEPT_LRS, warmup_tokens=20_000, eval_every_tokens=100_000, competence=0.95, train_eval_samples=50,
        max_minutes=3.0,
        threads=1, jobs=2, options=CPU_OPTIONS, suite="algorithmic", eval_samples=50, n_loops=(1, 2, 4, 8),
    ),
    # The answer on this CPU: every generic variant at matched training FLOPs, 3 seeds, a learning
    # rate per variant from a sweep, each run trained until 95% IID exact match on every task (or
    # 4M tokens, or 6 minutes of training), then scored in and out of distribution. Two single-thread
    # lanes; about 90 minutes in all on the 2-core CPU (docs/results/cpu/).
    "cpu": LadderPreset(
        name="cpu", size="tiny", alg_tasks=CPU_TASKS,
        note="CPU answer: tiny models, parity, addition (numbers reversed), copy, successor; one example per "
             "row; 3 seeds; lr swept per variant; each run to 95% IID exact match or 4M tokens or 6 minutes",
        alg_tokens=4_000_000, total_tokens=4_000_000, seq_len=24, batch_size=16, packing="single",
        lr_grid=(5e-4, 1e-3, 2e-3), sweep_tokens=300_000, warmup_tokens=20_000, eval_every_tokens=250_000,
        competence=0.95, train_eval_samples=50, max_minutes=6.0, threads=1, jobs=2, seeds=3, options=CPU_OPTIONS,
        suite="algorithmic", eval_samples=100, n_loops=(1, 2, 4, 8),
    ),
    # The seed README's nano ladder for one GPU: 10M algorithmic then 10M TinyStories tokens per variant.
    "nano": LadderPreset(
        name="nano", size="nano", note="seed nano ladder: 10M algorithmic + 10M TinyStories tokens, full eval",
        alg_tokens=10_000_000, total_tokens=20_000_000, lang_data=str(TINYSTORIES / "train_sample.txt"),
        seq_len=512, batch_size=32, warmup_tokens=500_000, eval_every_tokens=2_000_000,
    ),
}


def get_preset(name: str) -> LadderPreset:
    if name not in PRESETS:
        raise LooplabError(f"unknown ladder preset '{name}'; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]
