"""Learned absolute-position control (`absolute`, the model `nano_baseline.py` trains).

The baseline with `pos_encoding=absolute` (models.positions): positions enter once, as a learned
table added to the token embedding (as in GPT-2 and the learned variant of arXiv 1706.03762), and
attention is not rotated. It tests the seed's hypothesis that absolute positions fail to generalise
to inputs longer than the trained ones, against RoPE in `baseline`. The name stays a variant so that
the ladder, `nano_baseline.py` and earlier checkpoints keep working; `--variant baseline
--model_opt pos_encoding=absolute` builds the same model.

The table has max_seq_len rows, so every evaluation length fits, but only the rows of positions
seen in training ever receive a gradient: the others keep their N(0, 0.02) initialisation. That is
the control's point, not a bug. A position past max_seq_len is an error rather than a silent
wrap-around.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from looplab.config import ModelConfig
from looplab.errors import LooplabError
from looplab.models.transformer import Transformer


@dataclass(frozen=True, kw_only=True)
class AbsoluteOptions:
    """The absolute-position control has no options of its own."""


def build_absolute(cfg: ModelConfig, opts: AbsoluteOptions | None = None) -> Transformer:
    if cfg.pos_encoding not in ("rope", "absolute"):  # rope: the field's default, i.e. not chosen
        raise LooplabError(f"variant 'absolute' always uses pos_encoding absolute, got {cfg.pos_encoding}; "
                           "use --variant baseline for other position encodings")
    return Transformer(dataclasses.replace(cfg, pos_encoding="absolute"))
