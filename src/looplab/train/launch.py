"""One training run from its two configs: what `train.py` and every ladder run call.

`launch` checks the names (variant, tasks, tracker, curriculum) before anything is written, builds
the tokenizer (rlf: its base's) and the model config, and trains; the run's `arm` (its name in
reports) is its variant's name unless the caller (a ladder) named it. `packing_for` says which
packing a run would train with, from the registry alone, so a ladder can check its runs agree
before it builds or writes anything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from looplab.config import LaunchConfig, TrainConfig, model_config
from looplab.data.curriculum import CURRICULA
from looplab.data.tasks import NO_TASKS, training_tasks
from looplab.data.tokenizer import load_tokenizer
from looplab.errors import LooplabError
from looplab.models import MODELS, get_spec, variant_options
from looplab.train.trackers import TRACKERS
from looplab.train.trainer import resolve_packing, train


def check_names(lc: LaunchConfig, cfg: TrainConfig) -> None:
    """Every name the run will look up in a registry, checked before anything is written."""
    spec = get_spec(lc.variant)
    for value, registry, what in ((cfg.log_to, TRACKERS, "log_to"),
                                  (cfg.task_curriculum_strategy, CURRICULA, "task_curriculum_strategy")):
        if value not in registry:
            raise LooplabError(f"unknown {what} '{value}'; allowed: {', '.join(registry)}")
    own_data = spec.train_data is not None  # a variant with its own stream (rlf) needs no tasks
    if not training_tasks(cfg.alg_tasks, cfg.answer_format) and not cfg.task_files and not own_data:
        raise LooplabError(f"--alg_tasks {NO_TASKS} needs at least one --task_file to train on")
    if lc.base and spec.prepare_base is None:
        based = [v for v, s in MODELS.items() if s.prepare_base is not None]
        raise LooplabError(f"--base applies to --variant {', '.join(based)} only, not '{lc.variant}'")


def launch(lc: LaunchConfig, cfg: TrainConfig) -> dict[str, Any]:
    """Train the run `lc` describes with `cfg`; returns its summary."""
    check_names(lc, cfg)
    cfg = dataclasses.replace(cfg, arm=cfg.arm or lc.variant)
    options, prepare_base = dict(lc.options), get_spec(lc.variant).prepare_base
    if prepare_base is not None:
        tokenizer, base_options = prepare_base(lc.base, lc.tokenizer or None)
        options.update(base_options)
    else:
        tokenizer = load_tokenizer(lc.tokenizer or None, allow_network=cfg.allow_network)
    mcfg = model_config(lc.model_size, tokenizer.vocab_size, lc.variant, **options)
    variant_options(mcfg)
    return train(mcfg, cfg, tokenizer, overwrite=lc.overwrite, resume=lc.resume)



def packing_for(variant: str, packing: str) -> str | None:
    """The packing a run of `variant` would train with under `--packing packing`, from the registry alone
    (the trainer's `resolve_packing`). A variant with its own stream (rlf) trains on its own rows: None."""
    if get_spec(variant).train_data is not None:
        return None
    return resolve_packing(variant, packing)
