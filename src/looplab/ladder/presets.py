"""Ladder presets: one frozen dataclass per preset, kept as data in `PRESETS`.

A preset fixes everything the variants must share (size, tasks, token budget, sequence length,
batch, schedule, evaluation settings), so that the only difference between two runs of one seed is
the variant. A preset is a partial config: `train` holds the TrainConfig fields every run shares
and `evaluation` the EvalConfig fields every finished run is scored with; the ladder adds what
differs per run (output directory, seed, learning rate, threads). `INPUTS` says how a variant that
needs more than a config gets it: a LaunchConfig field filled with the best checkpoint of another
variant trained with the same seed (rlf's `base`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from looplab.config import EvalConfig, TrainConfig
from looplab.errors import LooplabError

TINYSTORIES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "tinystories"
# variant -> {LaunchConfig field: variant whose best checkpoint (same seed) fills it}. The ladder trains
# the source first and adds it when it is not asked for; a variant named here is not shape-matched.
INPUTS: dict[str, dict[str, str]] = {"rlf": {"base": "baseline"}}


# set by the ladder for each run (lr: train["lr"] is the default)
PER_RUN = tuple(f.name for f in fields(TrainConfig) if f.metadata.get("per_run"))
PER_VARIANT = ("n_loops",)  # evaluation settings the ladder sets per variant (looped ones only)


@dataclass(frozen=True, kw_only=True)
class LadderPreset:
    name: str  # the preset's name in PRESETS
    note: str  # one line for the report: what the preset is for and what it leaves out
    size: str  # model size preset every variant starts from (see config.SIZES)
    train: Mapping[str, Any]  # TrainConfig fields every run shares (tokens, tasks, batch, schedule, lr, ...)
    evaluation: Mapping[str, Any] = field(default_factory=dict)  # EvalConfig fields each finished run is scored with
    n_loops: tuple[int, ...] = (1, 2, 4, 8, 16)  # loop sweep for looped variants (MODELS[v].looped)
    lrs: Mapping[str, float] = field(default_factory=dict)  # variant -> peak lr without a sweep (else train["lr"])
    lr_grid: tuple[float, ...] = ()  # peak learning rates swept per variant, ascending; () means no sweep
    sweep_tokens: int = 0  # training tokens of each sweep run
    sweep_seeds: int = 2  # seeds 0..sweep_seeds-1 trained at each rate of the sweep
    sweep_steps: int = 2  # most rates a variant's sweep adds beyond an edge of lr_grid that won (ladder.sweep)
    threads: int = 0  # CPU threads per run; 0 means all cores shared among the lanes
    jobs: int = 1  # runs at once (lanes) unless --jobs says otherwise
    seeds: int = 1  # seeds 0..seeds-1 per variant unless --seeds says otherwise
    match: str = "flops"  # how runs are shaped unless --match says otherwise (ladder.match.MATCH_MODES)
    variants: tuple[str, ...] = ()  # variants run by default; () means every generic one
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # variant -> model options
    # arm -> (variant, model options): a named configuration of a variant that the ladder runs like a
    # variant of its own (its runs are `runs/<arm>_s<seed>/`), so one ladder crosses a variant with
    # settings such as the position encoding; its options come on top of the variant's `options`
    arms: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    # the arm the report's verdicts, FLOP and time ratios are taken against (shapes still match baseline)
    reference: str = "baseline"

    def __post_init__(self) -> None:
        for given, cls, fixed in ((self.train, TrainConfig, PER_RUN), (self.evaluation, EvalConfig, PER_VARIANT)):
            allowed = {f.name for f in fields(cls)} - set(fixed)
            unknown = sorted(set(given) - allowed)
            if unknown:
                raise LooplabError(f"preset {self.name}: unknown {cls.__name__} field(s) {', '.join(unknown)}; "
                                   f"allowed: {', '.join(sorted(allowed))}")
        from looplab.models import MODELS

        for arm, (variant, _) in self.arms.items():
            if arm in MODELS or variant not in MODELS:
                raise LooplabError(f"preset {self.name}: arm '{arm}' must not be a variant's name and must name a "
                                   f"variant; allowed variants: {', '.join(MODELS)}")
        if self.reference != "baseline" and self.variants and self.reference not in self.variants:
            raise LooplabError(f"preset {self.name}: reference arm '{self.reference}' is not among its variants; "
                               f"allowed: {', '.join(self.variants)}")
        base = self.base  # validates the shared settings
        if self.lr_grid and (len(self.lr_grid) < 2 or self.sweep_tokens < base.tokens_per_step):
            raise LooplabError(f"preset {self.name}: an lr_grid needs >= 2 values and sweep_tokens of at least "
                               "one batch")
        if list(self.lr_grid) != sorted(set(self.lr_grid)) or any(lr <= 0 for lr in self.lr_grid):
            raise LooplabError(f"preset {self.name}: lr_grid must be positive, distinct and ascending, got "
                               f"{self.lr_grid}")
        if self.sweep_seeds < 1 or self.sweep_steps < 0:
            raise LooplabError(f"preset {self.name}: sweep_seeds must be >= 1 and sweep_steps >= 0, got "
                               f"{self.sweep_seeds} and {self.sweep_steps}")
        if base.eval_every_tokens < base.tokens_per_step:
            raise LooplabError(f"preset {self.name}: eval_every_tokens is smaller than one batch")

    @property
    def base(self) -> TrainConfig:
        """The training settings every run shares."""
        return TrainConfig(**self.train)

    @property
    def suite(self) -> str:
        return self.evaluation.get("suite", EvalConfig().suite)

    def variant_of(self, name: str) -> str:
        """The registered variant a ladder entry (a variant or an arm) builds."""
        return self.arms[name][0] if name in self.arms else name

    def options_of(self, name: str) -> dict[str, Any]:
        """The model options of a ladder entry: its variant's, then the arm's own."""
        variant = self.variant_of(name)
        return {**self.options.get(variant, {}), **(self.arms[name][1] if name in self.arms else {})}

    def train_config(self, **per_run: Any) -> TrainConfig:
        return TrainConfig(**{**self.train, **per_run})

    def eval_config(self, looped: bool) -> EvalConfig:
        return EvalConfig(**self.evaluation, n_loops=self.n_loops if looped else ())


CPU_TASKS = ("parity", "addition_rev", "copy", "successor")
# Model options shared by the CPU presets. Defaults elsewhere, except prc: its default (2, 4, 2) core
# at r = 4 is 20 blocks deep, which FLOP matching at `tiny` could only pay for with a 40-wide model;
# one block each for prelude, core and coda at a mean of 3 recurrences keeps it 80 wide.
CPU_OPTIONS = {"prc": {"prelude": 1, "recur": 1, "coda": 1, "train_recur_mean": 3.0}}
# The learning rates the `cpu` preset's sweep chose (docs/results/cpu/REPORT.md, its "Learning-rate sweep":
# five rates a factor 2 apart, 2 seeds, 625k tokens, on isolated 48-token rows); the axes and halting
# presets reuse them.
CPU_SWEPT_LRS = {"baseline": 5e-4, "shared_loop": 1e-3, "latent": 5e-4, "act": 1e-3, "absolute": 2.5e-4, "ssm": 1e-3,
                 "ssm_mem": 1e-3, "prc": 2e-3}
# The rates of the first `cpu` sweep (16 x 24 single rows, 2026-12-03; docs/RESULTS.md "Earlier protocol"): the
# demo (verified with them) and the calibration presets (run with them) keep them.
FIRST_CPU_LRS = {"baseline": 5e-4, "shared_loop": 2e-3, "latent": 2e-3, "act": 2e-3, "absolute": 5e-4, "ssm": 1e-3,
                 "ssm_mem": 1e-3, "prc": 2e-3}

# How the answer presets (cpu, axes, parity_ssm) end a run: the token budget under warmup-stable-decay,
# or competence (every IID cell at 95% on 500 examples, screened on 50 first) followed by a decay of
# a fifth of the tokens so far, so the model scored is annealed; the time cap is a safety stop only
# (a run it ends is flagged time_cap and kept out of verdicts).
# The rows of the CPU answer presets: examples packed back to back and kept apart (every generic variant
# isolates them), 48-token rows, 8 per batch (the 384 tokens per step of the earlier 16 x 24 single rows,
# with 21% of the tokens supervised instead of 16%), steps compiled (a ladder's runs share one compile
# cache, so a variant compiles once; docs/PERFORMANCE.md).
CPU_ROWS = dict(seq_len=48, batch_size=8, packing="isolated", compile=True)
ANSWER_BUDGET = dict(schedule="wsd", decay_fraction=0.2, eval_samples=500, screen_samples=50)
# Test set sizes of the presets that give answers: at 500 problems a cell's 95% interval is at most
# +-4.4 points, at 1,000 +-3.1 (the OOD cells carry the length-generalisation claims).
ANSWER_SETS = {"samples": 500, "ood_samples": 1000}

AXES_TASKS = ("parity", "addition_rev", "copy")
ONE_BLOCK = {"preset": "custom", "n_unique": 1, "n_loops": 3}  # one shared block; 3 loops cost the baseline's 3 blocks
BY_LENGTH = {"loops_per_length": 1.0, "loops_cap": 64}  # n loops for n bits, digits or letters (Fan et al.)
# The shape of a block looped once per unit of length in the axes preset: its 48-token rows run 8 loops in
# every calibration batch, and the matching walk (d_model in steps of 2 x n_head, then d_ff a few steps
# of 32 either way) comes no closer than 1.05x the baseline's realised FLOPs per token; this one is
# 0.997x (measured with ladder.match.measure).
LENGTH_SHAPE = {"d_model": 64, "d_ff": 224}
AXES_ARMS = {
    "baseline_nope": ("baseline", {"pos_encoding": "nope"}),
    "baseline_random": ("baseline", {"pos_encoding": "random", "pos_range": 256}),
    "loop_fixed_nope": ("shared_loop", {**ONE_BLOCK, "pos_encoding": "nope"}),
    "loop_len_nope": ("shared_loop", {**ONE_BLOCK, **BY_LENGTH, **LENGTH_SHAPE, "pos_encoding": "nope"}),
    "loop_len_rope": ("shared_loop", {**ONE_BLOCK, **BY_LENGTH, **LENGTH_SHAPE}),
    "ssm_neg": ("ssm", {"negative_eigenvalues": True}),
}

GRAZZI_SHAPE = {"n_layer": 2, "d_model": 128}  # Grazzi et al.'s parity models: 2 layers, width 128

SLOTS_NOPE = {"pos_encoding": "nope", "answer_at_once": True}  # Fan et al.'s positions and answer format
FAN_ARMS = {
    "loop_fan": ("shared_loop", {**ONE_BLOCK, **BY_LENGTH, **SLOTS_NOPE, "reinject": True}),
    "baseline_slots": ("baseline", SLOTS_NOPE),
}

AXES_FAN = ("shared_loop", {**FAN_ARMS["loop_fan"][1], **LENGTH_SHAPE})

# Cho et al.'s ids read by a learned absolute table, as theirs, with random offsets in training. (Read by
# rotary, where digits sit half the position range away from the plain tokens, a coupled baseline's first
# answer digit came out right only for some pairs of number length and offset: 2 digits at offset 0,
# 3 at 8, 4 at 4 and 16, about 15% otherwise; 1 seed, 1.5M tokens, 2026-12-05.)
COUPLED = {"position_ids": "coupled", "position_offset": 16, "pos_encoding": "absolute"}
# McLeish et al.'s digit embedding with random offsets, over no other positions (NoPE, their main setting): on
# rotary positions an abacus baseline learned 1-4 digits perfectly and scored 0% at 5 (1 seed, 3M tokens,
# 2026-12-05), the distances between digits of equal significance growing past those trained.
ABACUS = {"position_ids": "abacus", "position_offset": 16, "pos_encoding": "nope"}
# The learning rates the `repro_coupling` sweep chose for its arms (docs/results/repro/coupling/REPORT.md).
COUPLING_LRS = {"baseline_coupled": 2e-3, "baseline_abacus": 2e-3, "loop_coupled": 1e-3, "loop_abacus": 1e-3}
COUPLING_ARMS = {
    "baseline_coupled": ("baseline", COUPLED),
    "baseline_abacus": ("baseline", ABACUS),
    "loop_coupled": ("shared_loop", {**ONE_BLOCK, **COUPLED}),
    "loop_abacus": ("shared_loop", {**ONE_BLOCK, **ABACUS}),
}

ACT_CAP = {"n_loops": 8}  # act's loop cap in the halting preset (its default ponder weight, 0.001)
# The guards, each alone, with the values of the first halting ladder (one seed, 3 minutes, a ponder weight
# of 0.01), in which every act arm halted at loop 1 (docs/results/earlier/halting).
HALTING_ARMS = {
    "act_cap8": ("act", ACT_CAP),
    "act_bias3": ("act", {**ACT_CAP, "halt_init": 0.047}),  # initial halting probability 0.047: logit about -3
    "act_warmup": ("act", {**ACT_CAP, "ponder_warmup": 1000}),
    "act_explore": ("act", {**ACT_CAP, "min_steps_explore": 0.1}),
}

PRESETS: dict[str, LadderPreset] = {
    # `make demo`: every generic variant, one seed, on successor written both ways (the answer-format
    # axis), each run stopping once it reaches 95% IID exact match. Learning rates: those the `cpu`
    # preset's sweep chose. Copy is left out: at this size the SSM does not learn 8-letter copies.
    "smoke": LadderPreset(
        name="smoke", size="tiny",
        note="CPU demo: tiny models, successor with numbers in both digit orders, one seed, each run stops at "
             "95% IID answer accuracy on every cell",
        train=dict(alg_tasks=("successor", "successor_rev"), alg_tokens=2_000_000, total_tokens=2_000_000, seq_len=24,
                   batch_size=16, packing="isolated", warmup_tokens=20_000, eval_every_tokens=100_000,
                   competence=0.95, eval_samples=50, max_minutes=3.0),
        evaluation=dict(suite="algorithmic", samples=50), n_loops=(1, 2, 4, 8),
        lrs=FIRST_CPU_LRS, threads=1, jobs=2, options=CPU_OPTIONS,
    ),
    # The answer on this CPU: every generic variant at matched realised training FLOPs, 5 seeds, a
    # learning rate per variant from a sweep (five rates a factor 2 apart, 2 seeds, a quarter of the
    # budget each, chosen on IID answer accuracy and extended past a winning edge), each run trained
    # until 95% IID answer accuracy on every (task, length) cell and then annealed (wsd), or for 2.5M
    # tokens, then scored in and out of distribution. Two single-thread lanes. The budget was meant to keep
    # the whole ladder (80 sweep runs of 625k tokens, 40 runs, evaluation) within 120 minutes on 2 cores;
    # it took 170, 44% of its main runs' time in evaluation, most of it the looped variants' loop sweep
    # over every problem (docs/RESULTS.md, "The answer on this CPU"). The 45-minute cap is a
    # safety stop (about 8x the slowest variant's budget): the 6-minute cap of the first run stopped six
    # of eight variants mid-cosine.
    "cpu": LadderPreset(
        name="cpu", size="tiny",
        note="CPU answer: tiny models, parity, addition (numbers reversed), copy, successor; examples packed "
             "and kept apart in 48-token rows; 5 seeds; lr swept per variant (2.5e-4 to 4e-3, factor 2, 2 seeds, 625k tokens); each "
             "run to 95% on every IID cell (500 examples) then a wsd decay, or 2.5M tokens",
        train=dict(alg_tasks=CPU_TASKS, alg_tokens=2_500_000, total_tokens=2_500_000, **CPU_ROWS,
                   warmup_tokens=20_000, eval_every_tokens=250_000, competence=0.95,
                   max_minutes=45.0, **ANSWER_BUDGET),
        evaluation=dict(suite="algorithmic", **ANSWER_SETS), n_loops=(1, 2, 4, 8),
        lr_grid=(2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3), sweep_tokens=625_000, threads=1, jobs=2, seeds=5,
        options=CPU_OPTIONS,
    ),
    # The length-generalisation axes on this CPU: position encoding (rope, nope, random) on the baseline,
    # one shared block looped 3 times (nope) or once per unit of input length (nope, rope), the SSM with
    # and without negative eigenvalues, and the calibrated recipes (docs/RESULTS.md "Calibration"): Fan
    # et al.'s looped block (positions off, input injection, answers at once from slots) beside the
    # baseline with the same positions and slots, and coupled and abacus digit ids for the baseline and
    # for the 3-loop block. Trained on short inputs (parity <= 8 bits, reversed addition <= 4 digits,
    # copy <= 8 letters), scored up to 8x longer; the looped arms also at 1, 4 and 16 loops and with
    # each example's loop count chosen by an exit criterion, both on the first 100 problems of each cell
    # (the main grid scores all 500 / 1,000). Examples are packed into rows for every arm, so a looped
    # arm whose count follows the length runs each row at its longest example's count (repro_fan trains
    # one example per row instead). Random positions decode by recomputation, which at 64 loops
    # is too slow for this CPU, so the looped arms leave them out. 5 seeds; learning rates: the `cpu`
    # sweep's per variant, the coupled and abacus arms' from the `repro_coupling` sweep (reversed
    # addition). 2M tokens and the 100-problem loop sweeps aimed at 120 minutes for the 70 runs on 2 cores;
    # measured (2026-12-05, docs/results/axes): 169 minutes, of which 144 lane-minutes were evaluation,
    # 102 of them baseline_random (recomputation, about 10 min a run) and loop_len_nope and loop_len_rope
    # (up to 64 loops, 5-6 min a run). Without successor in the mix, reversed addition is learned late or
    # not at all at this budget: 1 of the 70 runs was competent (docs/RESULTS.md, "Addition is learned
    # late without successor").
    "axes": LadderPreset(
        name="axes", size="tiny",
        note="length-generalisation axes: position encoding x loop policy (fixed 3, one per unit of length) for "
             "baseline and one looped block, SSM with and without negative eigenvalues, Fan et al.'s looped block "
             "and its baseline (no positions, answer slots), coupled and abacus digit ids for the baseline and the "
             "looped block; parity, addition (reversed), copy; examples packed and kept apart; 5 seeds; each run "
             "to 95% on every IID cell then a wsd decay, or 2M tokens; loop sweeps and exits on 100 problems per cell",
        train=dict(alg_tasks=AXES_TASKS, alg_tokens=2_000_000, total_tokens=2_000_000, **CPU_ROWS,
                   warmup_tokens=20_000, eval_every_tokens=250_000, competence=0.95,
                   max_minutes=45.0, **ANSWER_BUDGET),
        evaluation=dict(suite="algorithmic", exits=("convergence", "confidence"), loop_samples=100, **ANSWER_SETS),
        n_loops=(1, 4, 16), lrs={**CPU_SWEPT_LRS, **COUPLING_LRS}, threads=1, jobs=2, seeds=5,
        arms={**AXES_ARMS, **FAN_ARMS, "loop_fan": AXES_FAN, **COUPLING_ARMS},
        variants=("baseline", "baseline_nope", "baseline_random", "loop_fixed_nope", "loop_len_nope",
                  "loop_len_rope", "ssm", "ssm_neg", *FAN_ARMS, *COUPLING_ARMS),
    ),
    # Does adaptive K help more than a fixed K? act with the lab's default ponder weight and a cap of 8
    # loops, alone and with each published guard against halting collapse (a deep start: initial
    # halting logit about -3; a ponder warm-up over the first 1,000 steps; 10% of steps run a random
    # minimum number of loops), beside latent (the same thought stream, a fixed K), at the `cpu`
    # preset's rows, budget, stopping rule and test sets, on parity and reversed addition; 5 seeds. The
    # report's halting table gives each seed's halting depth against input length.
    "halting": LadderPreset(
        name="halting", size="tiny",
        note="act halting: the default ponder weight alone and with a deep start (halting logit about -3), a "
             "ponder warm-up or 10% minimum-step exploration, beside latent (fixed K); parity and reversed "
             "addition; examples packed and kept apart; 5 seeds; each run to 95% on every IID cell then a wsd "
             "decay, or 2.5M tokens",
        train=dict(alg_tasks=("parity", "addition_rev"), alg_tokens=2_500_000, total_tokens=2_500_000, **CPU_ROWS,
                   warmup_tokens=20_000, eval_every_tokens=250_000, competence=0.95, max_minutes=45.0,
                   **ANSWER_BUDGET),
        evaluation=dict(suite="algorithmic", **ANSWER_SETS), n_loops=(),
        lrs=CPU_SWEPT_LRS, threads=1, jobs=2, seeds=5, arms=HALTING_ARMS,
        variants=(*HALTING_ARMS, "latent"), reference="latent",
    ),
    # Parity alone for the SSM with and without negative eigenvalues (Grazzi et al.): 5 seeds, 1M tokens each,
    # trained on 1-8 bits and scored up to 64.
    "parity_ssm": LadderPreset(
        name="parity_ssm", size="tiny",
        note="parity alone, ssm with and without negative eigenvalues; examples packed and kept apart; 5 seeds; 1M tokens each "
             "(wsd)",
        train=dict(alg_tasks=("parity",), alg_tokens=1_000_000, total_tokens=1_000_000, **CPU_ROWS,
                   warmup_tokens=20_000, eval_every_tokens=250_000, max_minutes=45.0,
                   **ANSWER_BUDGET),
        evaluation=dict(suite="algorithmic", **ANSWER_SETS), n_loops=(),
        lrs=CPU_SWEPT_LRS, threads=1, jobs=2, seeds=5, arms={"ssm_neg": AXES_ARMS["ssm_neg"]},
        variants=("ssm", "ssm_neg"),
    ),
    # Calibration (docs/RESULTS.md "Calibration"): Grazzi et al. 2024 (arXiv 2411.12537), Table 3, on this CPU.
    # Their setting: parity trained on 3-40 bits, tested on 40-256, scaled accuracy; Mamba with eigenvalues
    # in [0, 1] 0.000 and in [-1, 1] 1.000, a Transformer 0.022 (best of 3 seeds); 2 layers, width 128; the
    # public config trains 20k steps of 256 sequences at lr 1e-3. Here: the same lengths, tasks and metric,
    # the same shape for all three arms (no FLOP matching), 5 seeds, 4M tokens (about 150k sequences, 3% of
    # theirs), the learning rates of the `cpu` sweep, examples packed and kept apart, and a length
    # curriculum on competence: the maximum training length starts at 3 bits and rises by one once the
    # model answers 90% of probes at it (the `linear` strategy). Without a curriculum (2.5M tokens), and
    # with a fixed schedule of +1 bit every 20 or 60 steps, no arm left chance even on the training
    # lengths (validation loss ln 2 / 2 throughout; docs/RESULTS.md "Calibration"); on competence,
    # ssm_neg at this shape learned 3 bits by step 180 and 11 by step 500 (one diagnostic run).
    "repro_grazzi": LadderPreset(
        name="repro_grazzi", size="tiny",
        note="reproduction of Grazzi et al. 2024 Table 3: parity trained on 3-40 bits (the maximum raised from 3 "
             "on competence), tested to 256 bits; ssm (2 layers, width 128) with eigenvalues in [0, 1] and in "
             "[-1, 1], and the baseline at that shape; 5 seeds; 4M tokens each (wsd)",
        train=dict(alg_tasks=("parity_long",), alg_tokens=4_000_000, total_tokens=4_000_000, seq_len=96,
                   batch_size=16, packing="isolated", compile=True, warmup_tokens=20_000,
                   eval_every_tokens=1_000_000, max_minutes=20.0, use_task_curriculum=True, curriculum_every=20,
                   curriculum_samples=32, **ANSWER_BUDGET),
        evaluation=dict(suite="algorithmic", **ANSWER_SETS), n_loops=(),
        lrs=FIRST_CPU_LRS, threads=1, jobs=2, seeds=5, match="config",
        options={"baseline": GRAZZI_SHAPE, "ssm": GRAZZI_SHAPE}, arms={"ssm_neg": AXES_ARMS["ssm_neg"]},
        variants=("ssm", "ssm_neg", "baseline"),
    ),
    # Calibration: Fan et al. 2024 (arXiv 2409.15647) on this CPU. Their recipe: one shared block without
    # positions, the input embedding added back before every loop, loops = input length, the whole answer
    # predicted at once from answer slots with the loss only there, the maximum training length raised
    # on a schedule, and the loop count picked at test by maximum confidence. Here: that recipe (FAN_LOOP),
    # the baseline given the same positions and answer slots, and the lab's default baseline, on parity,
    # copy and binary addition trained up to 8 (their ~20) and scored up to 4-8x that; 5 seeds, 2M tokens
    # each (about 3,100 steps of 16 against their ~100k steps of 64), the maximum length +1 every 250
    # steps (theirs: 500 for parity, over a 30x longer run), the learning rates of the `cpu` sweep,
    # FLOP-matched widths. One example per row, so every example runs exactly as many loops as its
    # length (a packed row runs its longest example's count). Eager steps: the loop count changes with
    # every batch, which would recompile a compiled step each time.
    "repro_fan": LadderPreset(
        name="repro_fan", size="tiny",
        note="reproduction of Fan et al. 2024: one shared block looped once per unit of input length without "
             "positions, input injection, answers at once from slots, a length schedule; against the baseline "
             "with the same positions and answer slots and the default baseline; parity, copy, binary addition "
             "trained up to 8, scored to 32-64; 5 seeds; 2M tokens each (wsd)",
        train=dict(alg_tasks=("parity", "copy", "addition_bin"), alg_tokens=2_000_000, total_tokens=2_000_000,
                   seq_len=40, batch_size=16, packing="single", warmup_tokens=20_000, eval_every_tokens=500_000,
                   use_task_curriculum=True, task_curriculum_strategy="schedule", curriculum_schedule_steps=250,
                   curriculum_every=50, curriculum_samples=16, max_minutes=20.0, **ANSWER_BUDGET),
        evaluation=dict(suite="algorithmic", exits=("confidence",), samples=200, ood_samples=200), n_loops=(),
        lrs=FIRST_CPU_LRS, threads=1, jobs=2,
        seeds=5, arms=FAN_ARMS, variants=("loop_fan", "baseline_slots", "baseline"),
    ),
    # Calibration: position coupling (Cho et al. 2024, arXiv 2405.20671) and Abacus embeddings (McLeish et
    # al. 2024, arXiv 2405.17399) on this CPU: the baseline and one shared block looped 3 times, each with
    # coupled positions (a learned absolute table) and with abacus digit ids (without other positions),
    # random offsets up to 16 in training, on reversed addition trained on 1-4 digits and scored to 8;
    # 5 seeds; 2M tokens each; a learning rate per arm from the `cpu` preset's sweep procedure (five rates
    # a factor 2 apart, 2 seeds, a quarter of the budget: at the `cpu` sweep's 5e-4 a coupled baseline
    # was still at 1% after 1M tokens, at 2e-3 at 69%); FLOP-matched widths. Their settings: coupling
    # trained on 1-30 digits, tested to 200 (the authors' script: 6 layers, 50k steps of 1,000 at lr
    # 1e-4); Abacus trained on 20 digits, 99% at 100.
    "repro_coupling": LadderPreset(
        name="repro_coupling", size="tiny",
        note="reproduction of position coupling (Cho et al.) and Abacus (McLeish et al.): the baseline and one "
             "block looped 3 times, each with coupled and with abacus digit ids; reversed addition trained on "
             "1-4 digits, scored to 8; 5 seeds; lr swept per arm (2.5e-4 to 4e-3, factor 2, 2 seeds, 500k tokens); "
             "2M tokens each (wsd)",
        train=dict(alg_tasks=("addition_rev",), alg_tokens=2_000_000, total_tokens=2_000_000, **CPU_ROWS,
                   warmup_tokens=20_000, eval_every_tokens=500_000, max_minutes=20.0, **ANSWER_BUDGET),
        evaluation=dict(suite="algorithmic", **ANSWER_SETS), n_loops=(),
        lr_grid=(2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3), sweep_tokens=500_000, threads=1, jobs=2, seeds=5,
        arms=COUPLING_ARMS, variants=tuple(COUPLING_ARMS),
    ),
    # The seed README's nano ladder for one GPU: 10M algorithmic then 10M TinyStories tokens per variant,
    # algorithmic examples packed and kept apart for every variant (one example per 512-token row would be
    # mostly padding).
    "nano": LadderPreset(
        name="nano", size="nano", note="seed nano ladder: 10M algorithmic + 10M TinyStories tokens, full eval",
        train=dict(alg_tokens=10_000_000, total_tokens=20_000_000, lang_data=str(TINYSTORIES / "train_sample.txt"),
                   seq_len=512, batch_size=32, packing="isolated", warmup_tokens=500_000, eval_every_tokens=2_000_000),
        evaluation=dict(suite="all"),
    ),
}

# The axes preset with successor added to its mix, all else equal. Without successor, reversed addition
# is rarely learned at 2M tokens (1 of the 70 axes runs was competent); with it, the axes baseline
# learned addition in 5 of 5 seeds (docs/RESULTS.md, "Addition is learned late without successor",
# the controlled test). Its arms, budget, test-set sizes, loop sweeps and exits are the axes preset's.
# Measured (2026-12-05, docs/results/axes_succ): 162 minutes for the 70 runs on 2 cores (163 lane-minutes of
# training, 157 of evaluation); 3 of 70 runs competent, 8-bit parity the weak cell.
PRESETS["axes_succ"] = replace(
    PRESETS["axes"], name="axes_succ",
    note=PRESETS["axes"].note.replace("parity, addition (reversed), copy;", "parity, addition (reversed), copy, successor;"),
    train={**PRESETS["axes"].train, "alg_tasks": (*AXES_TASKS, "successor")})


def on_gpu(cpu: LadderPreset, why: str, *, size: str | None = None, **train: Any) -> LadderPreset:
    """The GPU version of a CPU reproduction preset: `train` on top of its settings (the paper's budget),
    a sweep (if any) at the same share of the budget, one lane with every core, no time cap; `why` (its
    deviations) is added to the note."""
    settings = {**cpu.train, **train, "max_minutes": 0.0}
    scale = settings["total_tokens"] / cpu.base.total_tokens
    return replace(cpu, name=f"{cpu.name}_gpu", note=f"{cpu.note}. GPU version: {why}", size=size or cpu.size,
                   train=settings, sweep_tokens=int(cpu.sweep_tokens * scale), threads=0, jobs=1)


# The reproductions at the papers' budgets, for a GPU (not run here: no GPU was lent to this project's
# sessions so far). Each keeps its CPU preset's arms, seeds, lengths and evaluation.
GPU_REPROS = (
    # Grazzi et al.: their 20k steps of 256 sequences is about 150M tokens of 3-40-bit parity; 16 rows of 512
    # tokens hold about 256 of their sequences, so about 18k steps. Without the curriculum, as the paper.
    on_gpu(PRESETS["repro_grazzi"], "150M tokens in 512-token rows (about the paper's 20k steps of 256 sequences), "
           "no curriculum (as the paper)", alg_tokens=150_000_000, total_tokens=150_000_000, seq_len=512,
           batch_size=16, use_task_curriculum=False, eval_every_tokens=10_000_000),
    # Fan et al.: 100k steps of 64, parity up to 20 bits (`parity_fan`), +1 length every 500 steps, width 256
    # (`micro`); copy and binary addition keep the lab's lengths.
    on_gpu(PRESETS["repro_fan"], "micro (width 256), parity up to 20 bits, 100k steps of 64 rows, +1 length every "
           "500 steps; copy and binary addition at the CPU lengths", size="micro",
           alg_tasks=("parity_fan", "copy", "addition_bin"), alg_tokens=100_000 * 64 * 64,
           total_tokens=100_000 * 64 * 64, seq_len=64, batch_size=64, curriculum_schedule_steps=500,
           eval_every_tokens=20_000_000),
    # Cho et al. / McLeish et al.: micro width, 100M tokens; still 1-4 digits trained and 8 tested (the lab's
    # addition generator holds numbers in int64, 18 digits at most, short of their 30- and 100-digit numbers).
    on_gpu(PRESETS["repro_coupling"], "micro (width 256), 100M tokens in 64 rows a step; still 1-4 digits "
           "trained, 8 tested", size="micro", alg_tokens=100_000_000, total_tokens=100_000_000, batch_size=64,
           eval_every_tokens=10_000_000),
)
PRESETS |= {p.name: p for p in GPU_REPROS}


def get_preset(name: str) -> LadderPreset:
    if name not in PRESETS:
        raise LooplabError(f"unknown ladder preset '{name}'; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]
