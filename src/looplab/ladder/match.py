"""Shape matching: how big each variant is built so that the ladder compares like with like.

`config`  every variant at the preset's size with its default options (what the seed README does);
`params`  non-embedding parameters within TOLERANCES["params"] of baseline's at that size;
`flops`   realised training FLOPs per token within TOLERANCES["flops"] (5%) of baseline's.

Realised, not nominal: a looped variant's FLOPs are those of the loops it executes in training, which
for a length policy is each batch's largest count (about 7.7 loops for a policy costed at 3 on the
`axes` tasks), for prc the sampled recurrence count, for act every loop (halting only weights them).
`calibrate` reads them off the first CALIBRATION_BATCHES batches of the run's own training stream
(forwards in training mode, seeded as the run), and each candidate shape is costed as the mean of
`cost(seq_len)` at those counts. Without a training config (`train=None`) the nominal `cost` is matched.

A variant already within tolerance keeps the preset's shape. Otherwise the knob is the width, the
one shape field every variant has: `d_model` moves in steps of
2 * n_head (so heads stay whole and even) from the preset's width towards the target, and the
nearest width wins; when that is still outside TOLERANCE, the MLP width `d_ff` moves in steps of 32
around its default. Depth, heads and the variant's own options (loop counts) stay as configured, so
a looped variant keeps its loops and pays for them in width. Candidates are built on the meta
device: nothing is allocated, and a shape a variant refuses (latent's thought width) is skipped.
A variant no candidate brings within tolerance is an error: its comparison would not be matched.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from looplab.config import TrainConfig, model_config
from looplab.errors import LooplabError

MATCH_MODES = {
    "config": "same size preset for every variant",
    "params": "non-embedding parameters matched to baseline's (width d_model, then d_ff)",
    "flops": "training FLOPs per token matched to baseline's (width d_model, then d_ff)",
}
TOLERANCES = {"params": 0.10, "flops": 0.05}  # largest relative gap to the target that counts as matched
KEYS = {"params": "params_non_embedding", "flops": "flops_per_token"}
FF_STEPS = 8  # d_ff candidates on each side of the default
CALIBRATION_BATCHES = 4  # training batches whose executed loop counts give a looped variant's realised FLOPs


@dataclass(frozen=True)
class Shape:
    overrides: dict[str, int] = field(default_factory=dict)  # ModelConfig fields to set (d_model, d_ff)
    value: float | None = None  # the matched figure of this variant
    target: float | None = None  # baseline's figure
    note: str = ""  # why the shape was not matched (config mode, a variant built from a base)
    loops: tuple[int, ...] = ()  # loops executed on the calibration batches (realised FLOPs); () nominal cost

    @property
    def ratio(self) -> float | None:
        return self.value / self.target if self.value and self.target else None


def check_mode(mode: str) -> None:
    if mode not in MATCH_MODES:
        raise LooplabError(f"unknown --match '{mode}'; allowed: {', '.join(MATCH_MODES)}")


def measure(variant: str, size: str, vocab_size: int, seq_len: int, key: str, options: Mapping[str, Any],
            loops: Sequence[int] = (), **shape: int) -> float | None:
    """cost()[key] of the variant built at this shape on the meta device, averaged over the executed loop
    counts `loops` where given (realised FLOPs); None when it refuses the shape."""
    from looplab.models import build_model

    try:
        cfg = model_config(size, vocab_size, variant, **{**options, **shape})
        with torch.device("meta"):
            model = build_model(cfg)
            if not loops:
                return float(model.cost(seq_len)[key])
            values = []
            for n in loops:
                with model.with_loops(n):
                    values.append(float(model.cost(seq_len)[key]))
            return sum(values) / len(values)
    except (LooplabError, ValueError, RuntimeError, AssertionError):  # an impossible shape is just not a candidate
        return None


def calibrate(variant: str, size: str, vocab_size: int, options: Mapping[str, Any], train: TrainConfig
              ) -> tuple[int, ...]:
    """The loop counts a looped variant executes (aux `loops_run`) on the first CALIBRATION_BATCHES batches
    of the training stream `train` describes, in training mode and seeded as the run; () for a variant
    that reports none."""
    from looplab.data.task_file import load_task_files
    from looplab.data.tasks import training_tasks
    from looplab.data.tokenizer import ByteTokenizer
    from looplab.models import build_model
    from looplab.models.base import LoopedModel
    from looplab.runtime import seed_everything
    from looplab.train.data import make_train_data
    from looplab.train.trainer import resolve_packing

    seed_everything(train.seed)
    model = build_model(model_config(size, vocab_size, variant, **options))
    if not isinstance(model, LoopedModel):
        return ()
    tokenizer = ByteTokenizer()
    tasks = [*training_tasks(train.alg_tasks, train.answer_format), *load_task_files(train.task_files)]
    train = dataclasses.replace(train, packing=resolve_packing(variant, train.packing))
    data = make_train_data(model, tokenizer, tasks, train)
    model.train()
    with torch.no_grad(), torch.random.fork_rng():
        loops = [model(data.next_batch()).aux.get("loops_run") for _ in range(CALIBRATION_BATCHES)]
    return () if None in loops else tuple(int(n) for n in loops)


def _gap(value: float | None, target: float) -> float:
    return math.inf if value is None else abs(math.log(value / target))


def match_shape(variant: str, mode: str, *, size: str, vocab_size: int, seq_len: int,
                options: Mapping[str, Any] | None = None, base_options: Mapping[str, Any] | None = None,
                train: TrainConfig | None = None) -> Shape:
    """The overrides that bring `variant` to baseline's figure under `mode` (empty for config and baseline);
    with `train` and mode flops, realised FLOPs on that training stream's calibration batches."""
    check_mode(mode)
    if mode == "config":
        return Shape(note="config: preset size")
    options, key, tol = dict(options or {}), KEYS[mode], math.log1p(TOLERANCES[mode])
    loops = calibrate(variant, size, vocab_size, options, train) if mode == "flops" and train is not None else ()

    def figure(name: str, opts: Mapping[str, Any], **shape: int) -> float | None:  # baseline runs no loops
        return measure(name, size, vocab_size, seq_len, key, opts, () if name == "baseline" else loops, **shape)

    target = figure("baseline", base_options or {})
    own = figure(variant, options)
    if target is None or own is None:
        raise LooplabError(f"--match {mode}: cannot build {variant} or baseline at size {size}")
    if variant == "baseline" or _gap(own, target) <= tol:
        return Shape(value=own, target=target, loops=loops)
    cfg = model_config(size, vocab_size, variant, **options)
    step, width = 2 * cfg.n_head, cfg.d_model
    direction = -step if own > target else step
    best, best_value = width, own
    d = width + direction
    while step <= d <= 4 * width:  # walk towards the target until it is crossed
        value = figure(variant, options, d_model=d)
        if _gap(value, target) < _gap(best_value, target):
            best, best_value = d, value
        if value is not None and (value > target) != (own > target):
            break
        d += direction
    overrides = {"d_model": best}
    if _gap(best_value, target) > tol:  # refine with the MLP width
        ff = model_config(size, vocab_size, variant, **{**options, "d_model": best}).ff_dim  # options may set d_model
        for f in (ff + 32 * k for k in range(-FF_STEPS, FF_STEPS + 1) if k and ff + 32 * k > 0):
            value = figure(variant, options, d_model=best, d_ff=f)
            if _gap(value, target) < _gap(best_value, target):
                overrides, best_value = {"d_model": best, "d_ff": f}, value
    if _gap(best_value, target) > tol:
        raise LooplabError(f"--match {mode}: {variant} comes no closer than {best_value / target:.3f}x baseline's "
                           f"{key} at size {size} (allowed: within {TOLERANCES[mode]:.0%}); give it other options "
                           "or use --match config")
    if overrides["d_model"] == width:
        del overrides["d_model"]
    return Shape(overrides=overrides, value=best_value, target=target, loops=loops)
