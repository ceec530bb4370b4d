"""AdamW parameter groups and the learning-rate schedules: warm-up plus cosine, or warmup-stable-decay.

Warmup-stable-decay (wsd; Hu et al., MiniCPM, arXiv 2404.06395; Hägele et al., arXiv 2405.18392)
holds the peak after the warm-up and anneals only at the end, so a run may end early and still be
annealed: when it becomes competent, the trainer starts the decay there (`decay_window`) instead of
stopping on a learning rate still near its peak, as a cosine run stopped at competence does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from looplab.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on matrices only; embeddings, norms, gates and biases are not decayed."""
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)


def decay_window(cfg: TrainConfig, competent_step: int | None = None) -> tuple[int, int]:
    """wsd's decay as steps [start, end): the last decay_fraction of the budget; or, for a run that became
    competent after `competent_step` steps, before the budget's own decay began, decay_fraction of the
    steps trained so far (at least one), after which the run ends."""
    total = cfg.total_steps
    start = total - max(1, round(cfg.decay_fraction * total))
    if competent_step is None or competent_step >= start:
        return start, total
    return competent_step, min(total, competent_step + max(1, round(cfg.decay_fraction * competent_step)))


def lr_at(step: int, cfg: TrainConfig, window: tuple[int, int] | None = None) -> float:
    """The learning rate of the optimiser step with 0-based index `step`. Linear warm-up over warmup_tokens;
    then cosine to lr * min_lr_ratio at the last step, or (wsd) the peak until the decay window (default:
    `decay_window(cfg)`) and a linear decay that reaches the floor at its last step."""
    warmup = max(1, cfg.warmup_tokens // cfg.tokens_per_step)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        start, end = window or decay_window(cfg)
        if step >= start:
            return cfg.lr - (cfg.lr - floor) * min(1.0, (step + 1 - start) / (end - start))
        return cfg.lr * min(1.0, (step + 1) / warmup)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, cfg.total_steps - warmup))
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))
