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
from looplab.flags import check_settings, setting

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


POS_ENCODINGS = ("rope", "nope", "absolute", "random")
ANSWER_FORMATS = ("msd", "reversed")  # numbers most-significant digit first (as written), or reversed (data.tasks)
EXIT_CRITERIA = ("convergence", "confidence")  # test-time exits of looped variants (eval.exits)  # how positions reach a model (models.positions)


def _choice(value: str, allowed: Mapping[str, Any] | tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise LooplabError(f"unknown {what} '{value}'; allowed: {', '.join(allowed)}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    variant: str = "baseline"  # registered model name (see looplab.models.MODELS)
    size: str = "tiny"  # size preset the shape came from (informational once resolved)
    vocab_size: int = setting(260, "embedding rows; must equal the tokenizer's vocab_size", range=">= 1", cli=False)
    d_model: int = setting(112, "residual stream width", range=">= 1")
    n_layer: int = setting(3, "unique transformer blocks", range=">= 1")
    n_head: int = setting(4, "query heads", range=">= 1")
    n_kv_head: int = setting(4, "key/value heads (< n_head means grouped-query attention)", range=">= 1")
    d_ff: int = setting(0, "SwiGLU hidden width; 0 means 8/3 * d_model rounded up to a multiple of 32", range=">= 0")
    max_seq_len: int = setting(1024, "longest context the model is built for (RoPE tables, position tables)",
                               range=">= 1")
    rope_base: float = setting(10000.0, "rotary frequency base", range="> 1")
    pos_encoding: str = setting("rope", "how positions reach the model (see models.positions)", choices=POS_ENCODINGS)
    pos_range: int = setting(0, "random: positions drawn from [0, pos_range); 0 means max_seq_len", range=">= 0")
    norm_eps: float = setting(1e-5, "RMSNorm epsilon", range="> 0")
    tie_embeddings: bool = setting(True, "share the token embedding with the output head")
    dropout: float = setting(0.0, "residual dropout (0 for the algorithmic tasks)", range="[0, 1)")
    position_ids: str = setting("plain", "position ids from the data: plain, coupled (digits of equal significance "
                                "share a position, Cho et al.) or abacus (an added embedding of each digit's "
                                "significance, McLeish et al.); see data.digit_ids", choices=("plain", "coupled", "abacus"))
    position_offset: int = setting(0, "coupled, abacus: training shifts each example's digit ids by a random offset "
                                   "in [0, position_offset]", range=">= 0")
    answer_at_once: bool = setting(False, "answers at once (Fan et al.): the answer's tokens reach the input as "
                                   "blank slots, so every answer token is predicted from the prompt alone, in "
                                   "training and when scored (one forward, no token-by-token decoding)")
    options: Mapping[str, Any] = field(default_factory=dict)  # variant-specific settings

    def __post_init__(self) -> None:
        check_settings(self)
        if self.d_model % self.n_head:
            raise LooplabError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise LooplabError(f"n_head {self.n_head} is not divisible by n_kv_head {self.n_kv_head}")
        if (self.d_model // self.n_head) % 2:
            raise LooplabError("head dimension d_model / n_head must be even for rotary embeddings")
        if self.position_ids == "coupled" and self.pos_encoding == "random":
            raise LooplabError("position_ids coupled supplies the positions that random positions would draw; "
                               "use pos_encoding rope or absolute")
        if self.position_offset >= self.max_seq_len // 4:
            raise LooplabError(f"position_offset {self.position_offset} must be below max_seq_len / 4 "
                               f"({self.max_seq_len // 4}): offset digit ids index the model's position tables")

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
PACKING = ("auto", "packed", "single", "isolated")  # how the algorithmic stream lays examples into rows (data.packing)
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
NONFINITE = ("stop", "skip")
SCHEDULES = ("cosine", "wsd")  # learning-rate schedules (train.optim.lr_at)
PARALLEL = ("auto", "ddp", "fsdp")  # under torchrun; auto: fsdp from train.parallel.FSDP_FROM_PARAMS up, else ddp


@dataclass(frozen=True, kw_only=True)
class LaunchConfig:
    """What a training run builds before it trains: the model, its tokenizer and what happens to an
    output directory that already holds a run. Each field is also the `train.py` flag of that name."""

    variant: str = setting("baseline", "model variant")
    model_size: str = setting("tiny", "size preset", choices=tuple(SIZES))
    options: Mapping[str, Any] = setting({}, "override a model field or variant option (repeatable)",
                                         flag="model_opt", metavar="KEY=VALUE")
    tokenizer: str = setting("", "bytes (default), a .model, tokenizer.json, directory or hub name")
    base: str = setting("", "rlf: the frozen base, a looplab checkpoint or a Hugging Face model directory (its "
                        "tokenizer is used)")
    overwrite: bool = setting(False, "replace a run already in --output_dir")
    resume: bool = setting(False, "continue the run in --output_dir from last_model.pt (exactly: the same weights "
                           "as a run never stopped)")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Every training setting; each field is also the `train.py` flag of the same name. `per_run`: set by the
    ladder for each run (a preset may not fix it); `resume_free`: --resume may change it without changing
    the trajectory (evaluation draws from a copy of the generators, Trainer.no_draws, so its settings are free)."""

    output_dir: str = setting("runs/default", "where every artefact of the run goes", per_run=True, resume_free=True)
    arm: str = setting("", "the run's name in reports, tables and plots (a ladder's arm: a named variant "
                       "configuration); empty: the variant's name", per_run=True, resume_free=True)
    alg_tokens: int = setting(200_000, "algorithmic tokens (phase 1)")
    total_tokens: int = setting(200_000, "all training tokens; beyond alg_tokens is language (phase 2) "
                                "(default: alg_tokens)", same_as="alg_tokens")
    alg_tasks: tuple[str, ...] = setting((), "algorithmic tasks (default: all ten; 'none': --task_file tasks only)")
    answer_format: str = setting("msd", "numbers of addition, multiplication and successor written most-significant "
                                 "digit first, or reversed (trains <task>_rev)", choices=ANSWER_FORMATS)
    seq_len: int = setting(256, "training sequence length")
    batch_size: int = setting(32, "sequences per optimiser step (the global batch)")
    lr: float = setting(1e-3, "peak learning rate (3e-3 learned copy far slower on tiny; docs/RESULTS.md)")
    min_lr_ratio: float = setting(0.1, "the schedule decays to lr * min_lr_ratio (its floor)")
    schedule: str = setting("cosine", "cosine: warm-up, then cosine decay over the budget (a competence stop ends "
                            "the run mid-schedule); wsd: warm-up, flat, then a linear decay to the floor over the last "
                            "decay_fraction of the budget, or, when the run becomes competent first, over "
                            "decay_fraction of the tokens trained so far, after which it stops", choices=SCHEDULES)
    decay_fraction: float = setting(0.2, "wsd: the decay's share of the budget (or of the tokens to competence)",
                                    range="(0, 1)")
    warmup_tokens: int = setting(20_000, "linear warm-up length in tokens")
    weight_decay: float = setting(0.1, "AdamW decay on matrices (not on norms, biases, embeddings)")
    beta1: float = setting(0.9, "AdamW beta1")
    beta2: float = setting(0.95, "AdamW beta2")
    grad_clip: float = setting(1.0, "global gradient norm clip; 0 disables")
    loss_on: str = setting("answer", "which tokens of an algorithmic example carry loss", choices=LOSS_ON)
    packing: str = setting("auto", "auto: isolated where the variant can, else single; packed: examples back to "
                           "back in a row (later ones see earlier ones); single: one example per row; isolated: "
                           "packed, but attention and positions confined to each example", choices=PACKING)
    seed: int = setting(0, "seeds model init, data stream and evaluation sampling", per_run=True)
    device: str = setting("auto", "auto picks cuda when available", choices=DEVICES, resume_free=True)
    dtype: str = setting("auto", "auto: bf16 autocast on a GPU, fp32 on the CPU", choices=DTYPES)
    compile: bool = setting(False, "torch.compile the training step (CPU, cpu preset shapes: 1.1-1.6x faster steps "
                            "after a first compile of 4-60 s; pays off within 0.5-1.6M tokens; a ladder's runs share "
                            "one compile cache)")
    threads: int = setting(0, "CPU threads (0: all cores)", per_run=True, resume_free=True)
    eval_every_tokens: int = setting(50_000, "tokens between periodic evaluations (each writes last_model.pt)",
                                     resume_free=True)
    eval_samples: int = setting(100, "examples per in-distribution (task, length) cell at each periodic evaluation "
                                "(with screen_samples: at the check that confirms competence)", resume_free=True)
    screen_samples: int = setting(0, "examples per IID cell at periodic evaluations, a cheap screen: only when every "
                                  "cell passes --competence on it is competence confirmed on eval_samples (0: every "
                                  "evaluation uses eval_samples)", range=">= 0", resume_free=True)
    competence: float = setting(0.0, "stop once every in-distribution (task, length) cell's answer accuracy reaches "
                                "this at a periodic evaluation, e.g. 0.95 (wsd: after the decay that follows); that "
                                "checkpoint is best_model.pt (0: train the whole budget)")
    eval_max_new_tokens: int = setting(32, "generation cap: evaluation can never hang", resume_free=True)
    log_every: int = setting(10, "optimiser steps between logged metrics rows", resume_free=True)
    log_to: str = setting("none", "also send the metrics to a tracker (wandb runs offline unless WANDB_MODE is set)",
                          resume_free=True)
    max_minutes: float = setting(0.0, "safety stop after this wall time, evaluation excluded (0: no limit); a run "
                                 "it stops is flagged stopped_by time_cap in summary.json", resume_free=True)
    progress: bool = setting(True, "show the progress bar", negate="no_progress", per_run=True, resume_free=True)
    lang_data: str = setting("", "language data for phase 2: .txt/.jsonl/.parquet, a directory, or hf:NAME "
                             "(with --allow_network)")
    text_field: str = setting("text", "text field of .jsonl/.parquet/hf records")
    lang_val_fraction: float = setting(0.05, "share of documents held out for validation loss (never trained on)")
    lang_cache_dir: str = setting("", "token cache (default: $LOOPLAB_CACHE or ~/.cache/looplab)", resume_free=True)
    allow_network: bool = setting(False, "allow downloading a hub tokenizer or hf: dataset", resume_free=True)
    alg_replay: float = setting(0.0, "share of language-phase steps replaying algorithmic data (measures "
                                "forgetting)", metavar="FRACTION")
    task_files: tuple[str, ...] = setting((), "JSONL tasks {task, length, prompt, target} to train on as well "
                                          "(repeatable)", flag="task_file", append=True, metavar="PATH")
    use_task_curriculum: bool = setting(False, "per-task difficulty from measured competence")
    task_curriculum_strategy: str = setting("linear", "linear (all tasks), dag (unlock along prerequisites) or "
                                            "schedule (the maximum length rises every curriculum_schedule_steps)")
    curriculum_every: int = setting(10, "optimiser steps between competence probes")
    curriculum_schedule_steps: int = setting(500, "schedule strategy: optimiser steps per +1 of the maximum "
                                             "training length (Fan et al.: 500 for parity)", range=">= 1")
    curriculum_samples: int = setting(32, "examples per task per competence probe")
    curriculum_cooldown: int = setting(20, "steps between two difficulty changes of a task")
    curriculum_min_task_evals: int = setting(2, "probes at a difficulty before it may change")
    curriculum_jitter: float = setting(0.1, "probability of an easier sample than the current difficulty")
    save_every_steps: int = setting(0, "also write last_model.pt every N steps (0: at evaluations only)",
                                    resume_free=True)
    on_nonfinite: str = setting("stop", "a NaN/inf loss stops the run (naming the step and the last good "
                                "checkpoint) or skips that step's update", choices=NONFINITE)
    max_skipped_steps: int = setting(10, "with --on_nonfinite skip: stop after this many consecutive skipped steps",
                                     resume_free=True)
    grad_accum: int = setting(1, "micro-batches per step and process; --batch_size stays the global batch",
                              resume_free=True)
    parallel: str = setting("auto", "under torchrun: ddp, fsdp (FSDP2) or auto (fsdp from 250M parameters)",
                            choices=PARALLEL, resume_free=True)

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
        _choice(self.loss_on, LOSS_ON, "loss_on")
        _choice(self.packing, PACKING, "packing")
        _choice(self.answer_format, ANSWER_FORMATS, "answer_format")
        _choice(self.device, DEVICES, "device")
        _choice(self.dtype, DTYPES, "dtype")
        if not 0 <= self.competence <= 1:
            raise LooplabError(f"--competence must be in [0, 1] (0: train the whole budget), got {self.competence}")
        if self.lr <= 0:
            raise LooplabError(f"--lr must be positive, got {self.lr}")
        _choice(self.on_nonfinite, NONFINITE, "on_nonfinite")
        _choice(self.schedule, SCHEDULES, "schedule")
        if not 0 < self.decay_fraction < 1 or self.screen_samples < 0:
            raise LooplabError(f"--decay_fraction must be in (0, 1) and --screen_samples >= 0, got "
                               f"{self.decay_fraction}, {self.screen_samples}")
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
    """Every evaluation setting; each field is also the `eval_hub.py` flag of the same name."""

    checkpoint: str = setting("", "a .pt file written by train.py", required=True)
    suite: str = setting("algorithmic", "which suite to run")
    tasks: tuple[str, ...] = setting((), "tasks to evaluate (default: the trained ones)")
    answer_format: str = setting("msd", "with --tasks: arithmetic tasks in this digit order (reversed: <task>_rev)",
                                 choices=ANSWER_FORMATS)
    samples: int = setting(100, "test problems per in-distribution (task, length) cell (balanced cells: rounded up to "
                           "a multiple of their answers)", aliases=("eval_samples",))
    ood_samples: int = setting(0, "test problems per out-of-distribution cell (0: as many as --samples)", range=">= 0")
    test_sets: str = setting("", "directory of fixed test sets (<task>_<length>.jsonl and DIGESTS.json, as a ladder "
                             "writes them); empty: the same sets generated in memory")
    max_new_tokens: int = setting(32, "generation cap per example", aliases=("eval_max_new_tokens",))
    batch_size: int = setting(64, "prompts decoded together")
    seed: int = setting(1234, "sampling seed of longctx and selftest (the algorithmic grid scores the fixed test "
                        "sets, data.testsets)")
    use_cache: bool = setting(True, "decode by full recomputation (slow reference)", negate="no_cache")
    exits: tuple[str, ...] = setting((), "looped variants: also score with each example's loop count chosen by these "
                                     "exit criteria (convergence, confidence)", choices=EXIT_CRITERIA)
    exit_threshold: float = setting(1e-3, "convergence exit: stop once KL(loop k || loop k-1) of the next token is below this")
    n_loops: tuple[int, ...] = setting((), "also evaluate looped variants at these loop counts, e.g. 1,2,4,8,16 "
                                       "(others: ignored)", metavar="N")
    loop_samples: int = setting(0, "problems per cell for the --n_loops sweep and the --exits grids: the first N of "
                                "each cell's test set (0: all of them); the main grid always scores every problem",
                                range=">= 0")
    data: tuple[str, ...] = setting((), "task file (JSONL) for --suite custom (repeatable)", append=True,
                                    metavar="PATH")
    needle_lengths: tuple[int, ...] = setting((1024, 2048, 4096), "longctx haystack sizes in tokens", metavar="N")
    needle_depths: tuple[float, ...] = setting((0.0, 0.5, 1.0), "longctx needle depths as fractions 0..1 "
                                               "(finer: 0,0.25,0.5,0.75,1)", metavar="F")
    needle_trials: int = setting(20, "longctx prompts per length and depth")
    lang_data: str = setting("", "ppl validation text (default: ../shared/data/tinystories/valid_sample.txt "
                             "when present)")
    ppl_tokens: int = setting(32768, "ppl token cap (whole documents until the cap)")

    def __post_init__(self) -> None:
        for name in self.exits:
            _choice(name, EXIT_CRITERIA, "exit criterion")
        if self.exit_threshold <= 0:
            raise LooplabError(f"--exit_threshold must be positive, got {self.exit_threshold}")
        _choice(self.answer_format, ANSWER_FORMATS, "answer_format")
        if self.samples < 1 or self.ood_samples < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise LooplabError("eval samples, max_new_tokens and batch_size must be >= 1, ood_samples >= 0")
        if self.loop_samples < 0:
            raise LooplabError(f"--loop_samples must be >= 0 (0: every problem), got {self.loop_samples}")
        if any(n < 1 for n in self.n_loops):
            raise LooplabError(f"--n_loops expects positive integers such as 1,2,4,8,16, got "
                               f"{','.join(map(str, self.n_loops))}")
        if self.needle_trials < 1 or self.ppl_tokens < 2:
            raise LooplabError(f"--needle_trials must be >= 1 and --ppl_tokens >= 2, got {self.needle_trials}, "
                               f"{self.ppl_tokens}")
        if not self.needle_lengths or min(self.needle_lengths) < 64:
            raise LooplabError(f"--needle_lengths must be token counts >= 64, got {list(self.needle_lengths)}")
        if not self.needle_depths or not all(0.0 <= d <= 1.0 for d in self.needle_depths):
            raise LooplabError(f"--needle_depths must be fractions in [0, 1], got {list(self.needle_depths)}")

    @property
    def ood_count(self) -> int:
        """Test problems per out-of-distribution cell."""
        return self.ood_samples or self.samples
