"""Shape matching: how big each variant is built so that the ladder compares like with like.

`config`  every variant at the preset's size with its default options (what the seed README does);
`params`  non-embedding parameters within TOLERANCE of baseline's at that size;
`flops`   training FLOPs per token (`model.cost(seq_len)`) within TOLERANCE of baseline's.

A variant already within TOLERANCE keeps the preset's shape. Otherwise the knob is the width, the
one shape field every variant has: `d_model` moves in steps of
2 * n_head (so heads stay whole and even) from the preset's width towards the target, and the
nearest width wins; when that is still outside TOLERANCE, the MLP width `d_ff` moves in steps of 32
around its default. Depth, heads and the variant's own options (loop counts) stay as configured, so
a looped variant keeps its loops and pays for them in width. Candidates are built on the meta
device: nothing is allocated, and a shape a variant refuses (latent's thought width) is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from looplab.config import model_config
from looplab.errors import LooplabError

MATCH_MODES = {
    "config": "same size preset for every variant",
    "params": "non-embedding parameters matched to baseline's (width d_model, then d_ff)",
    "flops": "training FLOPs per token matched to baseline's (width d_model, then d_ff)",
}
TOLERANCE = 0.10  # largest relative gap to the target that counts as matched
KEYS = {"params": "params_non_embedding", "flops": "flops_per_token"}
FF_STEPS = 8  # d_ff candidates on each side of the default


@dataclass(frozen=True)
class Shape:
    overrides: dict[str, int] = field(default_factory=dict)  # ModelConfig fields to set (d_model, d_ff)
    value: float | None = None  # the matched figure of this variant
    target: float | None = None  # baseline's figure
    note: str = ""  # why the shape was not matched (config mode, a variant built from a base)

    @property
    def ratio(self) -> float | None:
        return self.value / self.target if self.value and self.target else None


def check_mode(mode: str) -> None:
    if mode not in MATCH_MODES:
        raise LooplabError(f"unknown --match '{mode}'; allowed: {', '.join(MATCH_MODES)}")


def measure(variant: str, size: str, vocab_size: int, seq_len: int, key: str, options: Mapping[str, Any],
            **shape: int) -> float | None:
    """cost()[key] of the variant built at this shape on the meta device; None when it refuses the shape."""
    from looplab.models import build_model

    try:
        cfg = model_config(size, vocab_size, variant, **{**options, **shape})
        with torch.device("meta"):
            return float(build_model(cfg).cost(seq_len)[key])
    except (LooplabError, ValueError, RuntimeError, AssertionError):  # an impossible shape is just not a candidate
        return None


def _gap(value: float | None, target: float) -> float:
    return math.inf if value is None else abs(math.log(value / target))


def match_shape(variant: str, mode: str, *, size: str, vocab_size: int, seq_len: int,
                options: Mapping[str, Any] | None = None, base_options: Mapping[str, Any] | None = None) -> Shape:
    """The overrides that bring `variant` to baseline's figure under `mode` (empty for config and baseline)."""
    check_mode(mode)
    if mode == "config":
        return Shape(note="config: preset size")
    options, key = dict(options or {}), KEYS[mode]
    target = measure("baseline", size, vocab_size, seq_len, key, base_options or {})
    own = measure(variant, size, vocab_size, seq_len, key, options)
    if target is None or own is None:
        raise LooplabError(f"--match {mode}: cannot build {variant} or baseline at size {size}")
    if variant == "baseline" or _gap(own, target) <= math.log1p(TOLERANCE):
        return Shape(value=own, target=target)
    cfg = model_config(size, vocab_size, variant, **options)
    step, width = 2 * cfg.n_head, cfg.d_model
    direction = -step if own > target else step
    best, best_value = width, own
    d = width + direction
    while step <= d <= 4 * width:  # walk towards the target until it is crossed
        value = measure(variant, size, vocab_size, seq_len, key, options, d_model=d)
        if _gap(value, target) < _gap(best_value, target):
            best, best_value = d, value
        if value is not None and (value > target) != (own > target):
            break
        d += direction
    overrides = {"d_model": best}
    if _gap(best_value, target) > math.log1p(TOLERANCE):  # refine with the MLP width
        ff = model_config(size, vocab_size, variant, **options, d_model=best).ff_dim
        for f in (ff + 32 * k for k in range(-FF_STEPS, FF_STEPS + 1) if k and ff + 32 * k > 0):
            value = measure(variant, size, vocab_size, seq_len, key, options, d_model=best, d_ff=f)
            if _gap(value, target) < _gap(best_value, target):
                overrides, best_value = {"d_model": best, "d_ff": f}, value
    if overrides["d_model"] == width:
        del overrides["d_model"]
    return Shape(overrides=overrides, value=best_value, target=target)
