"""Frozen configuration dataclasses and the size presets.

`ModelConfig` holds what every variant shares (width, depth, heads, vocabulary); what only one
variant needs (loop counts, halting settings) lives in that variant's own options dataclass,
carried here as the `options` mapping and validated by the variant's builder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from looplab.errors import LooplabError

# name -> shape. The seed's table, plus two CPU presets. 300M and 350M share a shape in the seed.
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(d_model=112, n_layer=3, n_head=4, n_kv_head=4, max_seq_len=1024),
    "micro": dict(d_model=256, n_layer=4, n_head=4, n_kv_head=4, max_seq_len=1024),
    "nano": dict(d_model=512, n_layer=6, n_head=8, n_kv_head=8, max_seq_len=2048),
    "50M": dict(d_model=512, n_layer=8, n_head=8, n_kv_head=8, max_seq_len=2048),
    "125M": dict(d_model=768, n_layer=12, n_head=12, n_kv_head=12, max_seq_len=2048),
    "300M": dict(d_model=1024, n_layer=24, n_head=16, n_kv_head=16, max_seq_len=2048),
    "350M": dict(d_model=1024, n_layer=24, n_head=16, n_kv_head=16, max_seq_len=2048),
    "760M": dict(d_model=1280, n_layer=36, n_head=20, n_kv_head=20, max_seq_len=2048),
    "1B": dict(d_model=2048, n_layer=18, n_head=16, n_kv_head=16, max_seq_len=4096),
    "1B-16k": dict(d_model=2048, n_layer=18, n_head=16, n_kv_head=4, max_seq_len=16384),
}


def _choice(value: str, allowed: Mapping[str, Any] | tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise LooplabError(f"unknown {what} '{value}'; allowed: {', '.join(allowed)}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    variant: str = "baseline"  # registered model name (see looplab.models.MODELS)
    size: str = "tiny"  # size preset the shape came from (informational once resolved)
    vocab_size: int = 260  # embedding rows; must equal the tokenizer's vocab_size
    d_model: int = 112  # residual stream width
    n_layer: int = 3  # unique transformer blocks
    n_head: int = 4  # query heads
    n_kv_head: int = 4  # key/value heads (< n_head means grouped-query attention)
    d_ff: int = 0  # SwiGLU hidden width; 0 means 8/3 * d_model rounded up to a multiple of 32
    max_seq_len: int = 1024  # longest context the model is built for (RoPE tables, position tables)
    rope_base: float = 10000.0  # rotary frequency base
    norm_eps: float = 1e-5  # RMSNorm epsilon
    tie_embeddings: bool = True  # share the token embedding with the output head
    dropout: float = 0.0  # residual dropout (0 for the algorithmic tasks)
    options: Mapping[str, Any] = field(default_factory=dict)  # variant-specific settings

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise LooplabError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise LooplabError(f"n_head {self.n_head} is not divisible by n_kv_head {self.n_kv_head}")
        if (self.d_model // self.n_head) % 2:
            raise LooplabError("head dimension d_model / n_head must be even for rotary embeddings")
        for name in ("vocab_size", "d_model", "n_layer", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise LooplabError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def ff_dim(self) -> int:
        return self.d_ff or 32 * -(-(8 * self.d_model // 3) // 32)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["options"] = dict(self.options)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def model_config(size: str, vocab_size: int, variant: str = "baseline", **overrides: Any) -> ModelConfig:
    """Resolve a size preset plus overrides; names that are not ModelConfig fields go to options."""
    _choice(size, SIZES, "model size")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    shared = {k: v for k, v in overrides.items() if k in fields and k != "options"}
    options = dict(overrides.get("options", {}))
    options.update({k: v for k, v in overrides.items() if k not in fields})
    return ModelConfig(
        variant=variant, size=size, vocab_size=vocab_size, **{**SIZES[size], **shared}, options=options
    )


LOSS_ON = ("answer", "all")
PACKING = ("packed", "single")  # how the algorithmic stream lays examples into rows (data.packing)
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
NONFINITE = ("stop", "skip")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    output_dir: str = "runs/default"  # where every artefact of the run goes
    alg_tokens: int = 200_000  # tokens of algorithmic data (phase 1)
    total_tokens: int = 200_000  # all training tokens; the rest after alg_tokens is language (phase 2)
    alg_tasks: tuple[str, ...] = ()  # algorithmic tasks to train on; empty means all
    seq_len: int = 256  # training sequence length
    batch_size: int = 32  # sequences per optimiser step
    lr: float = 1e-3  # peak learning rate (3e-3 learned copy far slower on tiny; docs/RESULTS.md)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_tokens: int = 20_000  # linear warm-up length in tokens
    weight_decay: float = 0.1  # AdamW decay on matrices (not on norms, biases, embeddings)
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # global gradient norm clip; 0 disables
    loss_on: str = "answer"  # which tokens of an algorithmic example carry loss
    packing: str = "packed"  # packed: examples back to back in a row (later ones see earlier ones); single: one per row
    seed: int = 0  # seeds model init, data stream and evaluation sampling
    device: str = "auto"  # auto picks cuda when available
    dtype: str = "auto"  # auto: bf16 autocast on a GPU, fp32 on the CPU
    compile: bool = False  # torch.compile the model (off by default: on the CPU ~1.1x faster steps after a ~40 s compile; see PERFORMANCE.md)
    threads: int = 0  # CPU threads; 0 means all cores
    eval_every_tokens: int = 50_000  # periodic evaluation interval
    eval_samples: int = 100  # examples per in-distribution cell (task, length) of a periodic evaluation
    competence: float = 0.0  # stop at the first evaluation where every task's IID exact match reaches this (0: never)
    eval_max_new_tokens: int = 32  # generation cap: evaluation can never hang
    log_every: int = 10  # optimiser steps between logged scalars
    log_to: str = "none"  # experiment tracker that also receives the metrics rows: none, tensorboard, wandb
    max_minutes: float = 0.0  # stop after this much training time, evaluation excluded (0: no limit)
    progress: bool = True  # show the progress bar
    lang_data: str = ""  # language source for phase 2: .txt/.jsonl/.parquet file, directory, or hf:NAME
    text_field: str = "text"  # field holding the text in .jsonl / .parquet / hf records
    lang_val_fraction: float = 0.05  # share of documents held out for validation loss (never trained on)
    lang_cache_dir: str = ""  # token cache directory; empty means $LOOPLAB_CACHE or ~/.cache/looplab
    allow_network: bool = False  # allow downloading a hub tokenizer or hf: dataset
    alg_replay: float = 0.0  # share of language-phase steps that train on algorithmic data instead
    task_files: tuple[str, ...] = ()  # JSONL task files whose tasks train beside the built-in ones
    use_task_curriculum: bool = False  # move each task's difficulty with its measured competence
    task_curriculum_strategy: str = "linear"  # linear (all tasks) or dag (unlock along prerequisites)
    curriculum_every: int = 10  # optimiser steps between competence probes
    curriculum_samples: int = 32  # examples per task per competence probe
    curriculum_cooldown: int = 20  # steps between two difficulty changes of one task
    curriculum_min_task_evals: int = 2  # probes at a difficulty before it may change
    curriculum_jitter: float = 0.1  # probability of an easier length than the current difficulty
    save_every_steps: int = 0  # also write last_model.pt every this many steps (0: only at evaluations)
    on_nonfinite: str = "stop"  # a NaN/inf loss: stop (naming the step and last good checkpoint) or skip the step
    max_skipped_steps: int = 10  # with on_nonfinite=skip, stop after more consecutive skipped steps than this
    grad_accum: int = 1  # micro-batches per optimiser step and process (the global batch stays batch_size)
    parallel: str = "auto"  # under torchrun: ddp, fsdp (FSDP2 fully_shard), or auto (fsdp for large models)

    def __post_init__(self) -> None:
        if self.alg_tokens < 0:
            raise LooplabError(f"--alg_tokens must be >= 0, got {self.alg_tokens}")
        if self.total_tokens <= 0:
            raise LooplabError(f"--total_tokens must be positive, got {self.total_tokens}")
        if self.alg_tokens > self.total_tokens:
            raise LooplabError(
                f"--alg_tokens ({self.alg_tokens}) is larger than --total_tokens ({self.total_tokens}); "
                "allowed: 0 <= alg_tokens <= total_tokens"
            )
        if self.seq_len < 8 or self.batch_size < 1:
            raise LooplabError(f"--seq_len must be >= 8 and --batch_size >= 1, got {self.seq_len}, {self.batch_size}")
        if self.total_tokens < self.seq_len * self.batch_size:
            raise LooplabError(
                f"--total_tokens ({self.total_tokens}) is smaller than one batch "
                f"(seq_len {self.seq_len} x batch_size {self.batch_size} = {self.seq_len * self.batch_size})"
            )
        if self.total_tokens > self.alg_tokens and not self.lang_data:
            raise LooplabError(f"--total_tokens ({self.total_tokens}) exceeds --alg_tokens ({self.alg_tokens}): "
                               "the language phase needs --lang_data PATH")
        if not 0 <= self.alg_replay < 1 or not 0 <= self.lang_val_fraction < 1:
            raise LooplabError(f"--alg_replay and --lang_val_fraction must be in [0, 1), "
                               f"got {self.alg_replay}, {self.lang_val_fraction}")
        if not 0 <= self.curriculum_jitter < 1:
            raise LooplabError(f"--curriculum_jitter must be in [0, 1), got {self.curriculum_jitter}")
        if self.curriculum_every < 1 or self.curriculum_samples < 1 or self.curriculum_cooldown < 0 \
                or self.curriculum_min_task_evals < 1:
            raise LooplabError("--curriculum_every, --curriculum_samples and --curriculum_min_task_evals must be "
                               ">= 1 and --curriculum_cooldown >= 0")
        from looplab.data.curriculum import CURRICULA  # the registry is the one list of strategies

        _choice(self.task_curriculum_strategy, CURRICULA, "task_curriculum_strategy")
        _choice(self.loss_on, LOSS_ON, "loss_on")
        _choice(self.packing, PACKING, "packing")
        _choice(self.device, DEVICES, "device")
        _choice(self.dtype, DTYPES, "dtype")
        from looplab.train.trackers import TRACKERS

        _choice(self.log_to, TRACKERS, "log_to")
        if not 0 <= self.competence <= 1:
            raise LooplabError(f"--competence must be in [0, 1] (0: train the whole budget), got {self.competence}")
        if self.lr <= 0:
            raise LooplabError(f"--lr must be positive, got {self.lr}")
        _choice(self.on_nonfinite, NONFINITE, "on_nonfinite")
        from looplab.train.parallel import PARALLEL

        _choice(self.parallel, PARALLEL, "parallel")
        if self.save_every_steps < 0 or self.max_skipped_steps < 0 or self.grad_accum < 1 or self.log_every < 1:
            raise LooplabError(f"--save_every_steps and --max_skipped_steps must be >= 0, --grad_accum and --log_every >= 1, got "
                               f"{self.save_every_steps}, {self.max_skipped_steps}, {self.grad_accum}, {self.log_every}")

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size

    @property
    def total_steps(self) -> int:
        return max(1, self.total_tokens // self.tokens_per_step)

    @property
    def alg_steps(self) -> int:
        return self.alg_tokens // self.tokens_per_step


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    suite: str = "algorithmic"  # which suite to run
    tasks: tuple[str, ...] = ()  # tasks to evaluate; empty means the checkpoint's training tasks
    samples: int = 100  # examples per (task, length) cell
    max_new_tokens: int = 32  # generation cap per example
    batch_size: int = 64  # prompts decoded together
    seed: int = 1234  # evaluation sampling seed, distinct from training seeds
    use_cache: bool = True  # KV cache (or recurrent state) decoding; False recomputes every step
    n_loops: tuple[int, ...] = ()  # loop counts to sweep for looped variants; empty: trained count
    data: tuple[str, ...] = ()  # task files (JSONL) scored by the custom suite
    checkpoint: str = ""  # path of the checkpoint under evaluation (set by the hub; selftest re-reads it)
    needle_lengths: tuple[int, ...] = (1024, 2048, 4096)  # longctx haystack sizes in tokens
    needle_depths: tuple[float, ...] = (0.0, 0.5, 1.0)  # longctx needle depths (fraction of filler)
    needle_trials: int = 20  # longctx prompts per (length, depth) cell
    lang_data: str = ""  # ppl validation text; empty: the shared TinyStories validation sample
    ppl_tokens: int = 32768  # ppl token cap (whole documents until the cap)

    def __post_init__(self) -> None:
        if self.samples < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise LooplabError("eval samples, max_new_tokens and batch_size must be >= 1")
        if self.needle_trials < 1 or self.ppl_tokens < 2:
            raise LooplabError(f"--needle_trials must be >= 1 and --ppl_tokens >= 2, got {self.needle_trials}, "
                               f"{self.ppl_tokens}")
        if not self.needle_lengths or min(self.needle_lengths) < 64:
            raise LooplabError(f"--needle_lengths must be token counts >= 64, got {list(self.needle_lengths)}")
        if not self.needle_depths or not all(0.0 <= d <= 1.0 for d in self.needle_depths):
            raise LooplabError(f"--needle_depths must be fractions in [0, 1], got {list(self.needle_depths)}")
