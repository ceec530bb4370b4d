"""Learned absolute-position control (`absolute`, the model `nano_baseline.py` trains).

The baseline's blocks, but positions enter once, as a learned table added to the token embedding
(as in GPT-2 and the learned variant of arXiv 1706.03762), and attention is not rotated. It tests
the seed's hypothesis that absolute positions fail to generalise to inputs longer than the trained
ones, against RoPE (arXiv 2104.09864) in `baseline`.

The table has max_seq_len rows, so every evaluation length fits, but only the rows of positions
seen in training (< the training seq_len, and in practice < the longest packed example) ever
receive a gradient: the others keep their N(0, 0.02) initialisation. That is the control's point,
not a bug. A position past max_seq_len is an error rather than a silent wrap-around.

Letters: B batch, T tokens, C d_model, V vocabulary, D head dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from looplab.config import ModelConfig
from looplab.errors import LooplabError
from looplab.models.base import ModelOutput
from looplab.models.layers import KVCache
from looplab.models.transformer import Transformer


@dataclass(frozen=True, kw_only=True)
class AbsoluteOptions:
    """The absolute-position control has no options of its own."""


class Unrotated(nn.Module):
    """Rotary tables of angle zero (cos 1, sin 0): attention sees no position, and the shared
    blocks of layers.py run unchanged."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.half = head_dim // 2
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # follows the model's device

    def forward(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = self.anchor.new_zeros(length, self.half)  # (T, D/2)
        return zeros + 1, zeros


class Absolute(Transformer):
    def __init__(self, cfg: ModelConfig, opts: AbsoluteOptions | None = None) -> None:
        super().__init__(cfg)
        self.rotary = Unrotated(cfg.head_dim)
        self.pos_embed = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        nn.init.normal_(self.pos_embed.weight, 0.0, 0.02)  # as init_weights initialises embeddings

    @property
    def embedding_params(self) -> int:
        return super().embedding_params + self.pos_embed.weight.numel()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                state: KVCache | None = None) -> ModelOutput:
        start, T = (state.pos if state is not None else 0), idx.shape[1]
        if start + T > self.cfg.max_seq_len:
            raise LooplabError(f"position {start + T - 1} is past the absolute-position table "
                               f"(max_seq_len {self.cfg.max_seq_len}); build the model with a larger max_seq_len")
        positions = torch.arange(start, start + T, device=idx.device)
        x = self.embed(idx) + self.pos_embed(positions)  # (B, T, C)
        rope = self.rotary(start, T)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, state, slot=i)
        if state is not None:
            state.pos += T
        logits = self.head(self.norm(x))  # (B, T, V)
        return self.output(logits, targets)
