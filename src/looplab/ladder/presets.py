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
    lr: float = 1e-3  # peak learning rate
    warmup_tokens: int = 20_000  # linear warm-up in tokens
    eval_every_tokens: int  # periodic evaluation, which also writes the resumable last_model.pt
    train_eval_samples: int = 100  # examples per task in the trainer's periodic and final grids
    max_minutes: float = 0.0  # per-run training guard (0: none); a capped run trains fewer tokens
    device: str = "auto"  # training and evaluation device
    threads: int = 0  # CPU threads; 0 means all cores
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # variant -> model options
    eval_samples: int = 100  # examples per (task, length) cell of the hub's algorithmic suite
    n_loops: tuple[int, ...] = (1, 2, 4, 8, 16)  # loop sweep for looped variants (MODELS[v].looped)
    needle_lengths: tuple[int, ...] = (1024, 2048, 4096)  # longctx haystack sizes in tokens
    needle_depths: tuple[float, ...] = (0.0, 0.5, 1.0)  # longctx needle depths
    needle_trials: int = 20  # longctx prompts per (length, depth) cell
    ppl_tokens: int = 32_768  # ppl token cap on the TinyStories validation sample

    def __post_init__(self) -> None:
        if self.total_tokens > self.alg_tokens and not self.lang_data:
            raise LooplabError(f"preset {self.name}: total_tokens > alg_tokens needs lang_data")
        if self.eval_every_tokens < self.seq_len * self.batch_size:
            raise LooplabError(f"preset {self.name}: eval_every_tokens is smaller than one batch")


PRESETS: dict[str, LadderPreset] = {
    # At most ~70 s per variant on the shared 2-core CPU: tiny models, four short tasks, 40k tokens
    # (chance level: it tests the machinery, not the question), one thread (two stall when other jobs
    # share the cores), training capped at 30 s per run. longctx runs one 256-token haystack (so
    # "Needle @2k" is n/a) and ppl 4k tokens: the default longctx alone takes ~55 s per checkpoint here.
    "smoke": LadderPreset(
        name="smoke", size="tiny", alg_tasks=("copy", "successor", "parity", "compare"),
        note="CPU smoke test: tiny models, 40k tokens, light eval (longctx at 256 tokens only, ppl on 4k tokens)",
        alg_tokens=40_960, total_tokens=40_960, seq_len=64, batch_size=8, warmup_tokens=4_096,
        eval_every_tokens=20_480, train_eval_samples=8, max_minutes=0.5, threads=1, eval_samples=16,
        n_loops=(1, 2, 4), needle_lengths=(256,), needle_depths=(0.5,), needle_trials=4, ppl_tokens=4096,
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
